"""Errors are typed exceptions with the Rust message and `kind`, `path`, `index`; bad
arguments are `TypeError` / `ValueError` naming the argument; skips are counted."""

from __future__ import annotations

import shutil

import pytest

import stoker
from conftest import PHOTOS, ROOT


@pytest.fixture
def folder_with_a_bad_file(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k, src in enumerate(sorted((PHOTOS / f"class-{cls}").glob("*.jpg"))[:4]):
            shutil.copy(src, root / cls / f"{k}.jpg")
    bad = root / "b" / "2.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])  # cut inside the scan: truncated
    return root, bad


def test_a_bad_file_is_a_data_error_naming_the_file_and_the_sample(folder_with_a_bad_file):
    root, bad = folder_with_a_bad_file
    loader = stoker.Loader(root, batch_size=4)
    with pytest.raises(stoker.DataError) as info:
        for _ in loader:
            pass
    e = info.value
    assert isinstance(e, stoker.StokerError)
    assert e.kind == "decode"
    assert e.path is not None and e.path.endswith("b/2.jpg")
    assert e.index == 6  # a/0..3, then b/0, b/1, b/2
    assert "premature end" in str(e) and str(bad) in str(e)


def test_under_skip_a_bad_file_is_counted_and_the_epoch_goes_on(folder_with_a_bad_file):
    root, _ = folder_with_a_bad_file
    loader = stoker.Loader(root, batch_size=4, on_error="skip", max_skipped=1)
    seen = [i for b in loader.batches() for i in b.indices]
    assert 6 not in seen and len(seen) == 7
    st = loader.stats()
    assert st["skipped"] == 1 and st["skipped_by_kind"] == {"decode": 1}
    index, kind, message = st["skipped_samples"][0]
    assert (index, kind) == (6, "decode") and "2.jpg" in message
    strict = stoker.Loader(root, batch_size=4, on_error="skip", max_skipped=0)
    with pytest.raises(stoker.SkipLimitError) as info:
        list(strict)
    assert info.value.kind == "skip_limit"


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        stoker.Loader(PHOTOS, batchsize=4)
    with pytest.raises(TypeError, match="size"):
        stoker.Loader(PHOTOS, size=144)
    with pytest.raises(TypeError, match="batch_size"):
        stoker.Loader(PHOTOS, batch_size="four")
    for kw, word in [
        (dict(dtype="int3"), "dtype"),
        (dict(layout="HWC"), "layout"),
        (dict(on_error="ignore"), "on_error"),
        (dict(normalize="cifar"), "normalize"),
        (dict(partition="wrap"), "partition"),
        (dict(rank=1), "rank and world_size"),
        (dict(rank=4, world_size=4), "rank 4"),
        (dict(batch_size=0), "batch"),
        (dict(augment="rotation=x"), "rotation"),
        (dict(max_image_pixels=-1), "max_image_pixels -1"),
        (dict(num_workers=-2), "num_workers -2"),
        (dict(seed=-1), "seed -1"),
        (dict(rank=-1, world_size=2), "rank -1"),
    ]:
        with pytest.raises(stoker.UsageError, match=word) as info:
            stoker.Loader(PHOTOS, **kw)
        assert isinstance(info.value, ValueError) and info.value.kind == "usage"
    with pytest.raises(TypeError, match="shear_range"):
        stoker.Augment(shear_range=0.2)
    with pytest.raises(ValueError, match="rotation"):
        stoker.Augment(rotation_range=-5)
    with pytest.raises(TypeError, match="augment"):
        stoker.Loader(PHOTOS, augment=3)


def test_a_missing_path_is_an_io_error():
    with pytest.raises(stoker.DataError) as info:
        stoker.Loader("no/such/folder")
    assert info.value.kind == "io" and info.value.path == "no/such/folder"


def test_an_hdf5_file_in_a_build_without_hdf5_says_how_to_rebuild(tmp_path):
    if stoker.has_hdf5():
        pytest.skip("this build reads HDF5")
    h5 = tmp_path / "data.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(512))
    with pytest.raises(stoker.UsageError) as info:
        stoker.Loader(h5)
    assert "MATURIN_PEP517_ARGS" in str(info.value) and info.value.path == str(h5)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    # A 333-byte JPEG whose frame header claims 65000x65000 pixels, among two photos.
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    for k, src in enumerate(sorted((PHOTOS / "class-a").glob("*.jpg"))[:2]):
        shutil.copy(src, root / "a" / f"{2 * k}.jpg")
    shutil.copy(ROOT / "fixtures" / "decode" / "bomb-65000.jpg", root / "a" / "1.jpg")
    loader = stoker.Loader(root, batch_size=3, size=(36, 64))
    with pytest.raises(stoker.DataError) as info:
        list(loader)
    e = info.value
    assert e.kind == "decode"
    assert e.path is not None and e.path.endswith("a/1.jpg")
    assert e.index == 1
    assert "65000x65000" in str(e) and "max_image_pixels (178956970)" in str(e)
    # Skipped and counted under on_error="skip".
    loader = stoker.Loader(root, batch_size=3, size=(36, 64), on_error="skip", max_skipped=1)
    seen = [i for b in loader.batches() for i in b.indices]
    assert seen == [0, 2]
    st = loader.stats()
    assert st["skipped"] == 1 and st["skipped_by_kind"] == {"decode": 1}
    index, kind, message = st["skipped_samples"][0]
    assert (index, kind) == (1, "decode") and "1.jpg" in message
    # The limit is the caller's: just below the photos' 256x144 they are refused too.
    loader = stoker.Loader(root, batch_size=3, size=(36, 64), max_image_pixels=256 * 144 - 1)
    with pytest.raises(stoker.DataError, match=r"256x144 .* max_image_pixels \(36863\)") as info:
        list(loader)
    assert info.value.index == 0
    loader = stoker.Loader(root, batch_size=3, size=(36, 64), max_image_pixels=256 * 144)
    with pytest.raises(stoker.DataError, match="65000x65000") as info:
        list(loader)
    assert info.value.index == 1
