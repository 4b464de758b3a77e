"""Trains a small CNN on the CPU with PyTorch, fed by ``stoker.torch.Loader``.

The data is the repository's fixture set (``fixtures/photos-256x144``: 32 photographs in 4
class folders), augmented Keras-style on stoker's threads (rotation, shift, zoom, flip, noise)
and normalised with ImageNet's mean and std. Per epoch it prints the mean training loss, the
training accuracy, images/s (samples over the epoch's wall time, steps included) and the share
of that time the loop waited for input (time blocked in the loader's ``next`` / epoch time).

    python python/examples/train_torch.py                       # 3 epochs, 72x128
    python python/examples/train_torch.py --epochs 10 --size 144x256 --workers 2
    python python/examples/train_torch.py --json                # one JSON object

``--size`` is ``HxW`` here, as the loader's ``size=(height, width)``: the reverse of the
``stoker`` command's ``--size WxH``. With ``--seed`` the run is deterministic: the model's
initial weights come from ``torch.manual_seed`` and every batch from the loader's seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import stoker.torch

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "photos-256x144"


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` as ``(height, width)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 72x128") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return h, w


def model(classes: int) -> nn.Module:
    """Three 3x3 convolutions with max pooling, global average pooling, one linear layer."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=FIXTURES, help="an image folder (one folder per class)"
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="stoker's worker threads")
    ap.add_argument("--size", type=parse_size, default=(72, 128), help="HxW (default 72x128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    loader = stoker.torch.Loader(
        args.data,
        batch_size=args.batch_size,
        size=args.size,
        shuffle=True,
        seed=args.seed,
        num_workers=args.workers,
        augment="default",
        normalize="imagenet",
        dtype="float32",
        layout="NCHW",
    )
    classes = len([p for p in Path(args.data).iterdir() if p.is_dir()])
    net = model(classes)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    if not args.json:
        print(loader)

    epochs = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        net.train()
        loss_sum, correct, seen, waited = 0.0, 0, 0, 0.0
        start = time.perf_counter()
        batches = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            waited += time.perf_counter() - t
            logits = net(images)
            loss = loss_fn(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n = labels.shape[0]
            loss_sum += loss.item() * n
            correct += int((logits.argmax(1) == labels).sum())
            seen += n
            # The tensors lie in stoker's batch buffer: dropping them gives it back to the pool.
            del images, labels, logits, loss
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "accuracy": correct / seen,
            "images": seen,
            "seconds": seconds,
            "images_per_s": seen / seconds,
            "wait_share": waited / seconds,
        }
        epochs.append(row)
        if not args.json:
            print(
                f"epoch {epoch}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f}, "
                f"{row['images_per_s']:.0f} images/s, waited for input "
                f"{100 * row['wait_share']:.1f}% of the time"
            )

    if args.json:
        report = {
            "framework": "torch",
            "seed": args.seed,
            "batch_size": args.batch_size,
            "workers": loader.num_workers,
            "size": list(args.size),
            "epochs": epochs,
        }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
