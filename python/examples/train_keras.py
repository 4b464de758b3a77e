"""Trains a small CNN with Keras 3 on its torch backend (CPU), fed by ``stoker.keras.Dataset``.

The same data, augmentation and model as ``train_torch.py``, through ``model.fit``. A callback
measures per epoch images/s (samples over the epoch's wall time, steps included) and the share
of that time the loop waited for input: the time stoker's loader spent blocked in ``next``
(its ``consumer_wait_s`` counter) over the epoch's time.

    python python/examples/train_keras.py                       # 3 epochs, 72x128
    python python/examples/train_keras.py --json                # one JSON object

``model.fit`` gets ``shuffle=False``: stoker shuffles the samples itself, and Keras' own
``shuffle`` would only reorder the batches, which makes the data set restart its epoch at
every out-of-order batch.
"""

from __future__ import annotations

import os

# Before keras is imported: Keras 3 picks its backend once, at import.
os.environ["KERAS_BACKEND"] = "torch"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402

import stoker.keras  # noqa: E402

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


def model(size: tuple[int, int], classes: int) -> keras.Model:
    """Three 3x3 convolutions with max pooling, global average pooling, one dense layer
    (channels last: the data set's default layout is NHWC)."""
    layers = [keras.Input((*size, 3))]
    for filters in (16, 32, 64):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]
    return keras.Sequential(layers)


class InputMeter(keras.callbacks.Callback):
    """Per epoch: images/s and the share of the epoch spent waiting for stoker's batches."""

    def __init__(self, dataset: stoker.keras.Dataset, batch_size: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.rows: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._wait0 = self.dataset.loader.stats()["consumer_wait_s"]
        self._steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        stats = self.dataset.loader.stats()
        waited = stats["consumer_wait_s"] - self._wait0
        # Every batch but the last is full (the example keeps the partial last batch).
        images = min(self._steps * self.batch_size, self.dataset.loader.num_samples)
        logs = logs or {}
        self.rows.append(
            {
                "epoch": epoch,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "images": images,
                "seconds": seconds,
                "images_per_s": images / seconds,
                "wait_share": waited / seconds,
            }
        )


class Printer(keras.callbacks.Callback):
    """One line per epoch, from the meter's last row."""

    def __init__(self, meter: InputMeter) -> None:
        super().__init__()
        self.meter = meter

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = self.meter.rows[-1]
        print(
            f"epoch {epoch}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f}, "
            f"{row['images_per_s']:.0f} images/s, waited for input "
            f"{100 * row['wait_share']:.1f}% of the time"
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

    keras.utils.set_random_seed(args.seed)
    dataset = stoker.keras.Dataset(
        args.data,
        batch_size=args.batch_size,
        size=args.size,
        shuffle=True,
        seed=args.seed,
        num_workers=args.workers,
        augment="default",
        normalize="imagenet",
        dtype="float32",
    )
    classes = len([p for p in Path(args.data).iterdir() if p.is_dir()])
    net = model(args.size, classes)
    net.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    meter = InputMeter(dataset, args.batch_size)
    callbacks: list[keras.callbacks.Callback] = [meter]
    if not args.json:
        print(dataset.loader)
        callbacks.append(Printer(meter))
    net.fit(dataset, epochs=args.epochs, shuffle=False, verbose=0, callbacks=callbacks)

    if args.json:
        report = {
            "framework": "keras",
            "backend": keras.backend.backend(),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "workers": dataset.loader.num_workers,
            "size": list(args.size),
            "epochs": meter.rows,
        }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
