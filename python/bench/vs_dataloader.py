"""stoker's torch loader against ``torch.utils.data.DataLoader`` with torchvision v2, and
against ``stoker bench`` (the command line, the same engine without Python).

Three loaders read the same JPEG folder, with the same batch size, worker count and float32
NCHW output, and the same augmentation:

- rotation ±15°, shift ±10%, zoom 0.9-1.1 (one factor for both axes), bilinear, fill 0;
- /255, then gaussian noise of σ 0.03 (torchvision clips the result to [0, 1]; stoker does not
  clip a float output);
- ImageNet normalisation.

A. ``stoker.torch.Loader(DIR, augment=stoker.Augment(...), normalize="imagenet")``;
B. ``DataLoader(ImageFolder(DIR, loader=decode, transform=v2.Compose([...])),
   num_workers=W, persistent_workers=True)``, decoding with ``torchvision.io.decode_jpeg``
   (``--decoder pil`` for Pillow, ImageFolder's default);
C. ``stoker bench DIR --augment SPEC ...`` with the same settings (``--no-cli`` leaves it out).

Each loader is built, then timed over ``--epochs`` epochs, from the first batch asked for to
the last one received (each epoch's start included); images/s is the samples over that time.
Rounds alternate the order (A B C, then C B A, ...), and each ratio is taken within a round:
A / B (stoker against DataLoader) and A / C (stoker through Python against the command line:
Python's overhead). The medians over the rounds are the figures; the CPU model is printed with
them.

    # 2,000 JPEGs of 256x144 cut from the 1080p photographs (Pillow), once:
    python python/bench/vs_dataloader.py --make-data /tmp/photos-2000
    python python/bench/vs_dataloader.py /tmp/photos-2000 --rounds 5 --workers 2 --batch-size 256
    python python/bench/vs_dataloader.py /tmp/photos-2000 --json      # one JSON object

Needs torch and torchvision (and Pillow for ``--make-data`` and ``--decoder pil``). The data
stays out of git: write it anywhere outside the repository, or under ``target/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHOTOS_1080P = ROOT.parent / "shared" / "fixtures" / "photos-1080p"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The augmentation, in stoker.Augment's keyword names (the loaders below use it three ways).
AUGMENT = dict(
    rotation_range=15.0,
    width_shift_range=0.1,
    height_shift_range=0.1,
    zoom_range=(0.9, 1.1),
    isotropic_zoom=True,
    fill_mode="constant",
    cval=0.0,
    noise_std=0.03,
    interpolation="bilinear",
)


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- the data ------------------------------------------------------------------------------


def make_data(out: Path, src: Path, count: int, size: tuple[int, int], seed: int) -> None:
    """``count`` JPEGs of ``size`` (width, height), quality 90, in 4 class folders: random
    crops (35-100% of the frame, the output's aspect ratio), half of them mirrored, of the
    photographs in ``src``, resized with Lanczos. Photo k goes to class k mod 4, as in the
    repository's fixtures. Deterministic for a seed."""
    from PIL import Image

    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        sys.exit(f"no JPEGs in {src}")
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty: give a new folder")
    w, h = size
    rng = random.Random(seed)
    # Halve the 1080p frames once: every crop is still at least twice the output size.
    frames = []
    for p in photos:
        with Image.open(p) as im:
            im = im.convert("RGB")
            frames.append(im.reduce(2) if im.width >= 4 * w else im)
    classes = [f"class-{c}" for c in "abcd"]
    for c in classes:
        (out / c).mkdir(parents=True)
    start = time.perf_counter()
    for i in range(count):
        k = i % len(frames)
        frame = frames[k]
        scale = rng.uniform(0.35, 1.0) ** 0.5
        cw = min(frame.width, round(frame.width * scale))
        ch = min(frame.height, round(cw * h / w))
        x = rng.randint(0, frame.width - cw)
        y = rng.randint(0, frame.height - ch)
        crop = frame.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = crop.resize((w, h), Image.Resampling.LANCZOS)
        img.save(out / classes[k % 4] / f"img-{i:05d}.jpg", quality=90)
    print(
        f"{count} JPEGs of {w}x{h} from {len(photos)} photographs in {out} "
        f"({time.perf_counter() - start:.1f} s)"
    )


# --- the three loaders ---------------------------------------------------------------------


def decode_torchvision(path: str):
    import torch  # noqa: F401  (decode_jpeg returns a torch.Tensor)
    from torchvision.io import decode_jpeg, read_file

    return decode_jpeg(read_file(path))


def decode_pil(path: str):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def dataloader(data: Path, args: argparse.Namespace):
    """B: torchvision's ImageFolder and v2 transforms in a DataLoader."""
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomAffine(
                degrees=AUGMENT["rotation_range"],
                translate=(AUGMENT["width_shift_range"], AUGMENT["height_shift_range"]),
                scale=AUGMENT["zoom_range"],
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0,
            ),
            v2.GaussianNoise(sigma=AUGMENT["noise_std"], clip=True),
            v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
    decode = decode_pil if args.decoder == "pil" else decode_torchvision
    dataset = datasets.ImageFolder(str(data), loader=decode, transform=transform)
    g = torch.Generator()
    g.manual_seed(args.seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        generator=g,
        num_workers=args.workers,
        prefetch_factor=args.prefetch_factor if args.workers > 0 else None,
        persistent_workers=args.workers > 0,
        drop_last=False,
    )


def stoker_loader(data: Path, args: argparse.Namespace):
    """A: stoker's torch loader, the same augmentation."""
    import stoker
    import stoker.torch

    return stoker.torch.Loader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        num_workers=args.workers,
        prefetch=args.prefetch,
        augment=stoker.Augment(**AUGMENT),
        dtype="float32",
        layout="NCHW",
        normalize="imagenet",
    )


def time_epochs(loader, epochs: int) -> tuple[float, tuple[int, ...]]:
    """Images/s over ``epochs`` epochs of ``loader``, which yields ``(images, labels)``, and
    the shape of its first batch's images."""
    import torch

    samples, shape = 0, ()
    start = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            if samples == 0:
                assert images.dtype == torch.float32 and labels.dtype == torch.int64
                shape = tuple(images.shape)
            samples += labels.shape[0]
            del images, labels
    return samples / (time.perf_counter() - start), shape


def stoker_command(args: argparse.Namespace) -> list[str]:
    """The ``stoker`` command: ``--stoker-bin``, else the one pip installed beside this
    Python, else the one on PATH."""
    if args.stoker_bin:
        return [args.stoker_bin]
    beside = Path(sys.executable).parent / "stoker"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("stoker")
    if found:
        return [found]
    return [sys.executable, "-m", "stoker._cli"]


def cli_bench(data: Path, args: argparse.Namespace) -> float:
    """C: ``stoker bench`` with the same settings; its images/s."""
    import stoker

    spec = stoker.Augment(**AUGMENT).spec()
    cmd = stoker_command(args) + [
        "bench",
        str(data),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--prefetch",
        str(args.prefetch),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--dtype",
        "f32",
        "--layout",
        "nchw",
        "--normalize",
        "imagenet",
        "--augment",
        spec,
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return float(json.loads(out.stdout)["images_per_s"])


# --- the rounds ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    import torch
    import torchvision

    import stoker

    data = args.data
    if not data.is_dir():
        sys.exit(f"{data} is not a folder: make one with --make-data {data}")
    # The main process only receives batches in both set-ups; DataLoader's workers run one
    # thread each, as stoker's do.
    torch.set_num_threads(1)
    samples = stoker.Loader(data, batch_size=1).num_samples
    shapes: set[tuple[int, ...]] = set()
    names = {"A": "stoker_torch", "B": "dataloader", "C": "stoker_bench"}
    order = ["A", "B"] + ([] if args.no_cli else ["C"])
    rounds = []
    for r in range(args.rounds):
        this = order if r % 2 == 0 else order[::-1]
        ips: dict[str, float] = {}
        for key in this:
            if key in ("A", "B"):
                loader = stoker_loader(data, args) if key == "A" else dataloader(data, args)
                ips[names[key]], shape = time_epochs(loader, args.epochs)
                shapes.add(shape)
                del loader
            else:
                ips[names[key]] = cli_bench(data, args)
        row = {"round": r, "order": [names[k] for k in this], "images_per_s": ips}
        row["stoker_vs_dataloader"] = ips["stoker_torch"] / ips["dataloader"]
        if not args.no_cli:
            row["python_vs_cli"] = ips["stoker_torch"] / ips["stoker_bench"]
        rounds.append(row)
        # The same batches' shape from both (N, C, H, W): the same work.
        assert len(shapes) == 1, shapes
        if not args.json:
            line = ", ".join(f"{k} {v:,.0f}" for k, v in ips.items())
            ratios = f"stoker / DataLoader {row['stoker_vs_dataloader']:.2f}"
            if not args.no_cli:
                ratios += f", Python / stoker bench {row['python_vs_cli']:.3f}"
            print(f"round {r} ({' '.join(this)}): images/s {line}; {ratios}", flush=True)

    def median(key: str) -> float | None:
        values = [row[key] for row in rounds if key in row]
        return statistics.median(values) if values else None

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "data": str(data),
        "samples": samples,
        "batch_shape": list(shapes.pop()),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "epochs": args.epochs,
        "prefetch": args.prefetch,
        "prefetch_factor": args.prefetch_factor,
        "decoder": args.decoder,
        "augment": stoker.Augment(**AUGMENT).spec(),
        "versions": {
            "python": platform.python_version(),
            "stoker": stoker.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
        "rounds": rounds,
        "median": {
            "stoker_vs_dataloader": median("stoker_vs_dataloader"),
            "python_vs_cli": median("python_vs_cli"),
            **{
                name: statistics.median(row["images_per_s"][name] for row in rounds)
                for name in rounds[0]["images_per_s"]
            },
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("data", type=Path, nargs="?", help="a JPEG folder (one folder per class)")
    ap.add_argument("--make-data", type=Path, metavar="DIR", help="make the data set in DIR")
    ap.add_argument("--src", type=Path, default=PHOTOS_1080P, help="photographs for --make-data")
    ap.add_argument("--count", type=int, default=2000, help="images --make-data makes")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per loader and round")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--prefetch", type=int, default=2, help="stoker: batches in flight in all")
    ap.add_argument("--prefetch-factor", type=int, default=2, help="DataLoader: per worker")
    ap.add_argument("--decoder", choices=["torchvision", "pil"], default="torchvision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cli", action="store_true", help="leave out stoker bench (C)")
    ap.add_argument("--stoker-bin", help="the stoker command to time as C")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    if args.make_data:
        make_data(args.make_data, args.src, args.count, (256, 144), args.seed)
        if args.data is None:
            return
    if args.data is None:
        ap.error("give a data folder (or --make-data DIR)")
    # torchvision 0.29 deprecates its image decoders in favour of TorchCodec: still there.
    warnings.filterwarnings("ignore", message=".*image decoding and encoding.*")
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return
    m = report["median"]
    print(f"cpu: {report['cpu']} ({report['cores']} cores)")
    line = f"median of {args.rounds} rounds: stoker / DataLoader {m['stoker_vs_dataloader']:.2f}"
    if not args.no_cli:
        line += f", stoker through Python / stoker bench {m['python_vs_cli']:.3f}"
    print(line)


if __name__ == "__main__":
    main()
