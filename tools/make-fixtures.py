#!/usr/bin/env python3
"""Make stoker's committed default data set in fixtures/ from the 1920x1080 photographs.

Run by hand from the repository root (not by CI):

    pip install pillow numpy
    python3 tools/make-fixtures.py [--src ../shared/fixtures/photos-1080p] [--out fixtures]

Writes, for each photo-NN.jpg (class = NN mod 4 -> class-a .. class-d):
  photos-256x144/<class>/photo-NN.jpg       the whole frame, resized to 256x144
  photos-256x144/<class>/photo-NN-crop.jpg  the 1440x810 centre crop, mirrored, resized
(RGB JPEG, quality 90, Lanczos resampling), then, in torchvision ImageFolder order
(classes sorted, files sorted by path within a class), decoded back from the written JPEGs:
  npy/images-000.npy, npy/images-001.npy   uint8 (16, 144, 256, 3)
  npy/labels-000.npy, npy/labels-001.npy   int64 (16,)
  manifest.csv                              path,label (paths relative to fixtures/)
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

SIZE = (256, 144)
CROP = (1440, 810)
QUALITY = 90
CLASSES = ["class-a", "class-b", "class-c", "class-d"]
SHARD = 16


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(root, "..", "shared", "fixtures", "photos-1080p"))
    ap.add_argument("--out", default=os.path.join(root, "fixtures"))
    args = ap.parse_args()

    photos = sorted(f for f in os.listdir(args.src) if f.startswith("photo-") and f.endswith(".jpg"))
    if len(photos) != 16:
        sys.exit(f"expected 16 photo-NN.jpg in {args.src}, found {len(photos)}")

    folder = os.path.join(args.out, "photos-256x144")
    for c in CLASSES:
        os.makedirs(os.path.join(folder, c), exist_ok=True)
    for name in photos:
        number = int(name[len("photo-") : -len(".jpg")])
        cls = CLASSES[number % 4]
        with Image.open(os.path.join(args.src, name)) as im:
            im = im.convert("RGB")
            if im.size != (1920, 1080):
                sys.exit(f"{name}: expected 1920x1080, got {im.size}")
            whole = im.resize(SIZE, Image.Resampling.LANCZOS)
            left = (im.width - CROP[0]) // 2
            top = (im.height - CROP[1]) // 2
            crop = im.crop((left, top, left + CROP[0], top + CROP[1]))
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize(SIZE, Image.Resampling.LANCZOS)
        stem = name[: -len(".jpg")]
        whole.save(os.path.join(folder, cls, f"{stem}.jpg"), quality=QUALITY)
        crop.save(os.path.join(folder, cls, f"{stem}-crop.jpg"), quality=QUALITY)

    # torchvision ImageFolder order: classes sorted, then file names sorted within a class.
    samples = []
    for label, c in enumerate(sorted(CLASSES)):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            if f.endswith(".jpg"):
                samples.append((f"photos-256x144/{c}/{f}", label))

    with open(os.path.join(args.out, "manifest.csv"), "w", newline="\n") as m:
        m.write("path,label\n")
        for path, label in samples:
            m.write(f"{path},{label}\n")

    npy = os.path.join(args.out, "npy")
    os.makedirs(npy, exist_ok=True)
    for shard, start in enumerate(range(0, len(samples), SHARD)):
        part = samples[start : start + SHARD]
        images = np.stack(
            [np.asarray(Image.open(os.path.join(args.out, p)).convert("RGB"), dtype=np.uint8) for p, _ in part]
        )
        labels = np.array([label for _, label in part], dtype=np.int64)
        assert images.shape == (len(part), SIZE[1], SIZE[0], 3), images.shape
        np.save(os.path.join(npy, f"images-{shard:03d}.npy"), images)
        np.save(os.path.join(npy, f"labels-{shard:03d}.npy"), labels)
    print(f"wrote {len(samples)} samples to {args.out}")


if __name__ == "__main__":
    main()
