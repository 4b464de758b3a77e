#!/usr/bin/env python3
"""Make the JPEGs and PNGs of fixtures/decode/ that real data sets hold and that once stopped
stoker, and record what Pillow makes of each, so that the Rust tests need no Python.

Run by hand from the repository root (not by CI, which uses the committed files):

    pip install pillow numpy
    python3 tools/make-decode-fixtures.py [--out fixtures/decode]

Every image is made from fixtures/photos-256x144/class-a/photo-00.jpg, resized to 50x30:
  cmyk.jpg                 a CMYK JPEG as Pillow (libjpeg) writes it: Adobe APP14, transform 0,
                           the samples stored inverted, with a real black channel
  ycck.jpg                 the same picture as YCCK (Adobe transform 2), as Photoshop writes it:
                           the stored components are the YCbCr of the inverted C, M, Y, and K
  junk-between-segments.jpg  an RGB JPEG with 13 junk bytes between its APP0 and DQT segments
  app14-cut.jpg            the RGB JPEG with an Adobe APP14 whose length field says 9, not 14
  app13-short.jpg          the RGB JPEG with a Photoshop APP13 whose length field was made 12
                           smaller than its data
  bomb-65000.jpg           a 16x16 gray JPEG whose frame header claims 65000x65000
  bomb-65000.png           a PNG whose IHDR claims 65000x65000 (one empty IDAT)
and, beside each file Pillow decodes, NAME.pillow.npy: Pillow's pixels after .convert("RGB"),
uint8, shape (1, height, width, 3). pillow.json records, per file, Pillow's mode, size and
Adobe transform, or the error Image.open/load raised. Rerunning gives the same bytes with the
same Pillow (the versions are in pillow.json).
"""

import argparse
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "fixtures", "photos-256x144", "class-a", "photo-00.jpg")
SIZE = (50, 30)
QUALITY = 90


def jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=QUALITY, **kw)
    return bytearray(b.getvalue())


def segments(data):
    """(offset, marker, length) of each marker segment before the first scan."""
    out, i = [], 2
    while True:
        assert data[i] == 0xFF, f"a marker at {i}"
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        out.append((i, marker, length))
        if marker == 0xDA:
            return out
        i += 2 + length


def after(data, marker):
    """The offset just past the first segment with `marker`."""
    for i, m, length in segments(data):
        if m == marker:
            return i + 2 + length
    raise ValueError(f"no marker {marker:#x}")


def insert(data, at, extra):
    return bytes(data[:at]) + bytes(extra) + bytes(data[at:])


def cmyk_of(rgb):
    """CMYK with grey component replacement: K = 255 - max(R, G, B)."""
    rgb = rgb.astype(np.int64)
    k = 255 - rgb.max(axis=2)
    den = np.maximum(255 - k, 1)[..., None]
    cmy = ((255 - rgb - k[..., None]) * 255 + den // 2) // den
    return np.dstack([cmy, k]).clip(0, 255)


def ycck_values(cmyk):
    """The 'CMYK' image Pillow must be given so that it stores YCCK components: Pillow writes
    CMYK inverted, and libjpeg's YCCK decode gives back 255 - RGB(YCC) as the inverted C, M, Y."""
    c, m, y, k = (cmyk[..., i].astype(np.float64) for i in range(4))
    # libjpeg's RGB -> YCbCr (jccolor.c), with R, G, B = the true (not inverted) C, M, Y.
    luma = 0.299 * c + 0.587 * m + 0.114 * y
    cb = -0.168735892 * c - 0.331264108 * m + 0.5 * y + 128
    cr = 0.5 * c - 0.418687589 * m - 0.081312411 * y + 128
    stored = np.dstack([luma, cb, cr]).round().clip(0, 255)
    return np.dstack([255 - stored, k]).astype(np.uint8)


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make(out):
    with Image.open(SOURCE) as im:
        small = im.convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
    rgb = np.asarray(small)
    cmyk = cmyk_of(rgb)
    files = {}

    files["cmyk.jpg"] = jpeg(Image.fromarray(cmyk.astype(np.uint8), "CMYK"))
    ycck = jpeg(Image.fromarray(ycck_values(cmyk), "CMYK"), subsampling=0)
    app14 = after(ycck, 0xEE) - 16  # the APP14 marker
    assert ycck[app14 + 4 : app14 + 9] == b"Adobe" and ycck[app14 + 15] == 0
    ycck[app14 + 15] = 2  # transform: YCCK
    files["ycck.jpg"] = ycck

    base = jpeg(small)
    app0 = after(base, 0xE0)
    files["junk-between-segments.jpg"] = insert(base, app0, b"\x00\x11junk bytes\x7f")
    # Adobe APP14 (version 100, no flags, transform 1 = YCbCr), its length field cut to 9.
    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 1)
    files["app14-cut.jpg"] = insert(base, app0, b"\xff\xee" + struct.pack(">H", 9) + adobe)
    # Photoshop APP13: an IPTC resource (8BIM 0x0404) holding a caption, 12 bytes cut off its length.
    caption = b"a caption, cut short by a careless tool"
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    irb = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    app13 = b"Photoshop 3.0\x00" + irb
    assert b"\xff" not in app13
    files["app13-short.jpg"] = insert(
        base, app0, b"\xff\xed" + struct.pack(">H", 2 + len(app13) - 12) + app13
    )

    bomb = jpeg(Image.new("L", (16, 16), 128))
    sof = [i for i, m, _ in segments(bomb) if m == 0xC0][0]
    bomb[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    files["bomb-65000.jpg"] = bomb
    ihdr = struct.pack(">IIBBBBB", 65000, 65000, 8, 0, 0, 0, 0)
    files["bomb-65000.png"] = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"", 9))
        + png_chunk(b"IEND", b"")
    )

    os.makedirs(out, exist_ok=True)
    report = {
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "files": {},
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        entry = {}
        try:
            with Image.open(io.BytesIO(bytes(data))) as im:
                im.load()
                entry.update(mode=im.mode, size=list(im.size))
                if "adobe_transform" in im.info:
                    entry["adobe_transform"] = im.info["adobe_transform"]
                pixels = np.asarray(im.convert("RGB"))[None]
            np.save(os.path.join(out, name.rsplit(".", 1)[0] + ".pillow.npy"), pixels)
        except Exception as e:  # noqa: BLE001 - what Pillow refuses is recorded, not fatal
            entry["error"] = f"{type(e).__name__}: {e}"
        report["files"][name] = entry
    with open(os.path.join(out, "pillow.json"), "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "fixtures", "decode"))
    a = ap.parse_args()
    report = make(a.out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
