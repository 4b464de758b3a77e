#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (small valid inputs,
each a starting point the fuzzer mutates). Needs numpy and Pillow; run from the repository
root: python3 fuzz/make-seeds.py. The files are committed; rerunning gives the same bytes."""
import io
import os
import tarfile

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
PHOTO = "fixtures/photos-256x144/class-a/photo-00.jpg"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def small(size, mode="RGB"):
    return Image.open(PHOTO).convert(mode).resize(size, Image.BILINEAR)


def jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=85, **kw)
    return b.getvalue()


def png(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


rng = np.random.default_rng(0)
# NPY: images u8 NHWC and NHW, f32, labels of several integer types, a v2.0 header.
put("npy", "u8-nhwc.npy", npy_bytes(rng.integers(0, 255, (2, 3, 4, 3), dtype=np.uint8)))
put("npy", "u8-nhw.npy", npy_bytes(rng.integers(0, 255, (2, 3, 4), dtype=np.uint8)))
put("npy", "f32.npy", npy_bytes(rng.random((1, 2, 2, 1), dtype=np.float32)))
put("npy", "labels-i8.npy", npy_bytes(np.array([0, 3, 9], dtype=np.int64)))
put("npy", "labels-u1.npy", npy_bytes(np.array([[1], [2]], dtype=np.uint8)))
b = io.BytesIO()
np.lib.format.write_array(b, np.zeros((1, 1, 1), np.uint8), version=(2, 0))
put("npy", "v2.npy", b.getvalue())

# Tar: WebDataset shards with and without labels, a long name, a PAX header.
def shard(members, fmt=tarfile.USTAR_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


tiny = jpeg(small((8, 6)))
put("tar", "labelled.tar", shard([("a.jpg", tiny), ("a.cls", b"3"), ("b.png", png(small((4, 3)))), ("b.cls", b"0\n")]))
put("tar", "unlabelled.tar", shard([("dir/x.y.jpg", tiny), ("dir/z.jpeg", tiny)]))
put("tar", "gnu-long.tar", shard([("d" * 120 + "/k.jpg", tiny), ("d" * 120 + "/k.cls", b"1")], tarfile.GNU_FORMAT))
put("tar", "pax.tar", shard([("p" * 130 + ".png", png(small((2, 2))))], tarfile.PAX_FORMAT))

# Manifest CSV.
put("manifest", "plain.csv", b"a.jpg,0\nb/c.png,12\n")
put("manifest", "header-quoted.csv", '\ufeffpath,label\n"x, y.jpg",1\n"q""uote.png",-1\n\n'.encode())

# HDF5: what the library returns, as the target reads it (8-byte words: rank and element size,
# the dims, the address, the file length); a word holds its value shifted left by one (an odd
# word is read modulo 4096). The head word: rank = head % 6, f32 when head & 8.
def words(*v):
    return b"".join(int(x).to_bytes(8, "little") for x in v)


put("hdf5", "u8-nhwc", words(4 << 1, 2 << 1, 144 << 1, 256 << 1, 3 << 1, 2048 << 1, (2048 + 2 * 144 * 256 * 3) << 1))
put("hdf5", "f32-nhw", words(15 << 1, 5 << 1, 7 << 1, 9 << 1, 64 << 1, 100000 << 1))
put("hdf5", "overflow", words(4 << 1, (1 << 62), (1 << 62), 3 << 1, 3 << 1, 0, 0))

# Images: baseline and progressive JPEG, gray JPEG, PNGs (RGB, gray, RGBA,
# 16-bit, palette).
put("decode_augment", "baseline.jpg", jpeg(small((24, 16))))
put("decode_augment", "progressive.jpg", jpeg(small((24, 16)), progressive=True))
put("decode_augment", "gray.jpg", jpeg(small((16, 8), "L")))
put("decode_augment", "rgb.png", png(small((12, 8))))
put("decode_augment", "gray.png", png(small((12, 8), "L")))
put("decode_augment", "rgba.png", png(small((6, 4), "RGBA")))
put("decode_augment", "palette.png", png(small((6, 4)).convert("P")))
# CMYK and YCCK JPEGs (Adobe APP14, transform 0 and 2), which decode through CMYK to RGB.
put("decode_augment", "cmyk.jpg", jpeg(small((12, 8), "CMYK")))
ycck = bytearray(jpeg(small((12, 8), "CMYK"), subsampling=0))
ycck[ycck.index(b"Adobe") + 11] = 2  # the transform byte: YCCK
put("decode_augment", "ycck.jpg", bytes(ycck))
put("decode_augment", "gray16.png", png(Image.fromarray(rng.integers(0, 65535, (4, 5), dtype=np.uint16))))
