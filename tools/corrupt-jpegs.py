#!/usr/bin/env python3
"""Makes a seeded set of lightly corrupted JPEGs and counts how many Pillow decodes.

Each output is a copy of one of the fixtures' JPEGs with 1 to 3 bytes of its entropy-coded
scan data (between the end of the first SOS segment and the final EOI marker) replaced by
random values: the damage a bad sector, a flaky download or a camera's write error leaves.
The set is a pure function of --seed.

    python3 tools/corrupt-jpegs.py --out target/corrupt-jpegs      # 100 files, seed 0
    stoker bench target/corrupt-jpegs --on-error skip --max-skipped 100% --batch-size 10

Prints one JSON object: the file count, how many Pillow decodes (``Image.load()`` with its
defaults, i.e. ``LOAD_TRUNCATED_IMAGES = False``) and the names it rejects, and writes it to
``OUT/pillow.json``. Pillow is needed only for the count (``--no-pillow`` skips it).
"""

import argparse
import json
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def scan_range(data: bytes) -> tuple[int, int]:
    """(first byte of entropy-coded data, offset of the final EOI) of a JPEG."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"no marker at offset {i}")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            start = i + 2 + length
            end = data.rfind(b"\xff\xd9")
            if end <= start:
                raise ValueError("no EOI after the scan")
            return start, end
        i += 2 + length
    raise ValueError("no SOS marker")


def corrupt(data: bytes, rng: random.Random) -> bytes:
    start, end = scan_range(data)
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(start, end)
        out[pos] = (out[pos] + rng.randint(1, 255)) % 256  # always a different value
    return bytes(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixtures", type=pathlib.Path, default=ROOT / "fixtures" / "photos-256x144")
    p.add_argument("--no-pillow", action="store_true", help="write the files, count nothing")
    a = p.parse_args()

    sources = sorted(a.fixtures.rglob("*.jpg"))
    if not sources:
        print(f"no JPEGs under {a.fixtures}", file=sys.stderr)
        return 1
    rng = random.Random(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(a.count):
        src = sources[k % len(sources)]
        name = f"corrupt-{k:03d}.jpg"
        (a.out / name).write_bytes(corrupt(src.read_bytes(), rng))
        names.append(name)
    report = {"files": len(names), "seed": a.seed}
    if not a.no_pillow:
        from PIL import Image, __version__

        rejected = []
        for name in names:
            try:
                with Image.open(a.out / name) as im:
                    im.load()
            except Exception as e:  # noqa: BLE001 - any failure counts as not decoded
                rejected.append({"file": name, "error": str(e)})
        report.update(
            pillow=__version__,
            pillow_decoded=len(names) - len(rejected),
            pillow_rejected=rejected,
        )
        (a.out / "pillow.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
