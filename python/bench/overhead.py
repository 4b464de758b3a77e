"""Where stoker's time goes through Python: the torch loader taken apart, each part against
``stoker bench`` (the same engine without Python) in alternating rounds.

Variants, each timed over ``--epochs`` epochs of a new loader (built outside the timing),
with the settings and augmentation of ``vs_dataloader.py``:

- ``core``: the compiled core's ``next()`` alone, each batch dropped at once (no array);
- ``dlpack``: the same, plus both DLPack exports wrapped by ``torch.from_dlpack``;
- ``loader``: ``stoker.torch.Loader`` as a user iterates it (``for images, labels in loader``);
- ``cli``: ``stoker bench`` with the same settings.

Rounds alternate the order; each variant's ratio to ``cli`` is taken within its round, and
the medians over the rounds are printed with the CPU model.

    python python/bench/overhead.py /tmp/photos-2000 --rounds 7 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_dataloader as bench  # noqa: E402  (the same settings, loaders and CPU model)


def core_only(args: argparse.Namespace, with_tensors: bool) -> float:
    """Images/s of the core's ``next()`` loop; with ``with_tensors``, each batch is also
    wrapped as two torch tensors through DLPack."""
    import torch

    core = bench.stoker_loader(args.data, args)._core
    samples = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        core.begin()
        while (raw := core.next()) is not None:
            if with_tensors:
                images = torch.from_dlpack(raw.images())
                labels = torch.from_dlpack(raw.labels())
                samples += labels.shape[0]
                del images, labels
            else:
                samples += len(raw)
            del raw
        core.end()
    return samples / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a JPEG folder (vs_dataloader.py --make-data)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stoker-bin", help="the stoker command to time as cli")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    variants = {
        "core": lambda: core_only(args, False),
        "dlpack": lambda: core_only(args, True),
        "loader": lambda: bench.time_epochs(bench.stoker_loader(args.data, args), args.epochs)[0],
        "cli": lambda: bench.cli_bench(args.data, args),
    }
    names = list(variants)
    rounds = []
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        ips = {name: 0.0 for name in names}
        for name in order:
            ips[name] = variants[name]()
        rounds.append({"order": order, "images_per_s": ips})
        if not args.json:
            line = ", ".join(f"{k} {v:,.0f}" for k, v in ips.items())
            print(f"round {r}: images/s {line}", flush=True)
    report = {
        "cpu": bench.cpu_model(),
        "epochs": args.epochs,
        "rounds": rounds,
        "median_vs_cli": {
            name: statistics.median(
                row["images_per_s"][name] / row["images_per_s"]["cli"] for row in rounds
            )
            for name in names
            if name != "cli"
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    ratios = ", ".join(f"{k} {v:.3f}" for k, v in report["median_vs_cli"].items())
    print(f"cpu: {report['cpu']}; median ÷ stoker bench over {args.rounds} rounds: {ratios}")


if __name__ == "__main__":
    main()
