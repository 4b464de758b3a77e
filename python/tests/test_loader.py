"""stoker.Loader as a training loop uses it: shapes and dtypes, epochs, checkpoints, ranks,
and the same batches as the Rust loader (the CLI's digest)."""

from __future__ import annotations

import numpy as np
import pytest

import stoker
from conftest import NPY, PHOTOS, cli_json


def digest_of(loader: stoker.Loader) -> str:
    d = stoker.Digest()
    for b in loader.batches():
        d.update(b.raw)
    return d.hexdigest()


def test_shapes_dtypes_and_layouts():
    for dtype, np_dtype in [
        ("float32", np.float32),
        ("float16", np.float16),
        ("uint8", np.uint8),
        (np.float16, np.float16),
    ]:
        for layout, shape in [("NCHW", (8, 3, 72, 128)), ("NHWC", (8, 72, 128, 3))]:
            loader = stoker.Loader(
                PHOTOS, batch_size=8, size=(72, 128), dtype=dtype, layout=layout
            )
            images, labels = next(iter(loader))
            assert images.shape == shape and images.dtype == np_dtype
            assert labels.dtype == np.int64 and labels.shape == (8,)
            assert set(labels.tolist()) <= {0, 1, 2, 3}
    assert len(stoker.Loader(PHOTOS, batch_size=10)) == 4
    assert len(stoker.Loader(PHOTOS, batch_size=10, drop_last=True)) == 3


def test_bfloat16_in_numpy_through_ml_dtypes_equals_float32_rounded():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    kw = dict(batch_size=8, normalize="imagenet", augment="default", seed=3)
    bf = next(iter(stoker.Loader(PHOTOS, dtype="bfloat16", **kw)))[0]
    f32 = next(iter(stoker.Loader(PHOTOS, dtype="float32", **kw)))[0]
    assert bf.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(bf, f32.astype(ml_dtypes.bfloat16))


def test_each_iteration_is_the_next_epoch_and_set_epoch_picks_one():
    loader = stoker.Loader(PHOTOS, batch_size=8, shuffle=True, seed=5)
    epochs = [[b.indices for b in loader.batches()] for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    for e in epochs:
        assert sorted(i for b in e for i in b) == list(range(32))
    loader.set_epoch(1)
    assert [b.indices for b in loader.batches()] == epochs[1]
    assert [b.epoch for b in loader.batches()] == [2] * 4


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_the_same_bits_as_the_rust_loader(workers):
    loader = stoker.Loader(
        PHOTOS,
        batch_size=6,
        shuffle=True,
        seed=3,
        dtype="float16",
        num_workers=workers,
        augment="default",
        normalize="imagenet",
    )
    mine = stoker.Digest()
    for epoch in range(2):
        for b in loader.batches():
            assert b.epoch == epoch
            mine.update(b.raw)
    rust = cli_json(
        "bench", str(PHOTOS), "--digest", "--epochs", "2", "--batch-size", "6",
        "--seed", "3", "--dtype", "f16", "--augment", "default",
        "--normalize", "imagenet", "--workers", "2",
    )
    assert mine.hexdigest() == rust["digest"]


def test_arrays_hold_the_batch_bytes():
    loader = stoker.Loader(PHOTOS, batch_size=8, dtype="uint8", layout="NHWC")
    for b in loader.batches():
        images = b.images
        tensor = b.raw.images()
        assert images.__array_interface__["data"][0] == tensor.data_ptr
        # The decoded fixtures: 256x144 RGB, as the NPY shards hold them.
        assert images.shape[1:] == (144, 256, 3)
    shards = [np.load(p) for p in sorted(NPY.glob("images-*.npy"))]
    pixels = np.concatenate(shards)
    for b in stoker.Loader(PHOTOS, batch_size=8, dtype="uint8", layout="NHWC").batches():
        np.testing.assert_array_equal(b.images, pixels[b.indices])


def test_a_checkpoint_mid_epoch_resumes_with_exactly_the_following_batches():
    kw = dict(batch_size=5, shuffle=True, seed=9, augment="default", dtype="float16")
    whole = [(b.indices, b.images.tobytes()) for b in stoker.Loader(PHOTOS, **kw).batches()]
    loader = stoker.Loader(PHOTOS, **kw)
    head = []
    for b in loader.batches():
        head.append((b.indices, b.images.tobytes()))
        if len(head) == 3:
            state = loader.state_dict()
            break
    assert state["epoch"] == 0 and state["position"] == 15
    fresh = stoker.Loader(PHOTOS, **kw)
    fresh.load_state_dict(state)
    tail = [(b.indices, b.images.tobytes()) for b in fresh.batches()]
    assert head + tail == whole
    # Between epochs the checkpoint is the next epoch's start.
    assert fresh.state_dict()["epoch"] == 1 and fresh.state_dict()["position"] == 0
    other = stoker.Loader(PHOTOS, batch_size=5, seed=10)
    with pytest.raises(stoker.UsageError, match="seed 9"):
        other.load_state_dict(state)


@pytest.mark.parametrize("partition", ["pad", "drop"])
def test_four_ranks_cover_one_epoch_once(partition):
    seen = []
    for rank in range(4):
        loader = stoker.Loader(
            PHOTOS, batch_size=3, shuffle=True, seed=2, rank=rank, world_size=4,
            partition=partition,
        )
        assert (loader.rank, loader.world_size) == (rank, 4)
        seen.append([i for b in loader.batches() for i in b.indices])
    assert len({len(s) for s in seen}) == 1
    flat = [i for s in seen for i in s]
    assert sorted(flat) == list(range(32))  # 32 samples split 8 each: no pad, no drop
    for s in seen:
        assert len(s) == 8


def test_ranks_pad_or_drop_an_uneven_epoch():
    for partition, per_rank in [("pad", 11), ("drop", 10)]:
        seen = []
        for rank in range(3):
            loader = stoker.Loader(
                PHOTOS, batch_size=4, shuffle=True, seed=2, rank=rank, world_size=3,
                partition=partition,
            )
            seen.append([i for b in loader.batches() for i in b.indices])
        assert all(len(s) == per_rank for s in seen), partition
        flat = [i for s in seen for i in s]
        if partition == "pad":
            assert set(flat) == set(range(32))
        else:
            assert len(set(flat)) == 30


def test_augment_spec_object_and_keras_names():
    a = stoker.Augment(
        rotation_range=20, width_shift_range=0.1, height_shift_range=8, zoom_range=0.2,
        horizontal_flip=True, fill_mode="reflect", brightness_range=(0.9, 1.1), noise_std=0.02,
    )
    assert a.spec().startswith("rotation=20,")
    assert "zoom=0.8:1.2" in a.spec() and "fill=reflect" in a.spec()
    x = next(iter(stoker.Loader(PHOTOS, batch_size=4, augment=a, seed=1)))[0]
    y = next(iter(stoker.Loader(PHOTOS, batch_size=4, augment=a.spec(), seed=1)))[0]
    np.testing.assert_array_equal(x, y)
    z = next(iter(stoker.Loader(PHOTOS, batch_size=4, augment="none", seed=1)))[0]
    assert not np.array_equal(x, z)
    assert stoker.Augment.default().spec() == stoker.Augment.from_spec("default").spec()


def _consume(loader, batches):
    """The samples of the first ``batches`` batches, and the state_dict after them (taken
    inside the loop: breaking out cancels the epoch)."""
    seen, state = [], loader.state_dict()
    for b in loader.batches():
        seen.extend(b.indices)
        state = loader.state_dict()
        batches -= 1
        if batches == 0:
            break
    return seen, state


@pytest.mark.parametrize("partition", ["pad", "drop"])
@pytest.mark.parametrize("n,m", [(1, 3), (3, 1), (4, 3), (3, 5), (2, 2)])
def test_state_dicts_of_n_ranks_resume_at_m_ranks(partition, n, m):
    kw = dict(batch_size=3, shuffle=True, seed=6, size=(9, 16), partition=partition)
    before, states = [], []
    for rank in range(n):
        loader = stoker.Loader(PHOTOS, rank=rank, world_size=n, **kw)
        seen, state = _consume(loader, 1 + rank % 2)  # ranks at different positions
        before += seen
        states.append(state)
    merged = stoker.merge_state_dicts(states)
    after = []
    for rank in range(m):
        loader = stoker.Loader(PHOTOS, rank=rank, world_size=m, **kw)
        # Either every rank's state_dict, or their merge.
        loader.load_state_dict(states if rank % 2 else merged)
        after += [i for b in loader.batches() for i in b.indices]
        # The next epoch is whole again.
        assert loader.state_dict()["epoch"] == 1
    assert len(set(before)) == len(before)
    k = 32 - len(before)
    if partition == "drop":
        assert len(set(before + after)) == len(before + after)  # no sample twice
        assert 32 - len(before + after) == k % m  # the last k % m of the rest not seen
    else:
        assert set(before + after) == set(range(32))  # every sample
        assert len(after) == -(-k // m) * m  # padded to a multiple of m


def test_an_elastic_resume_checks_the_loader_and_the_ranks():
    kw = dict(batch_size=4, shuffle=True, seed=6, size=(9, 16))
    states = []
    for rank in range(2):
        loader = stoker.Loader(PHOTOS, rank=rank, world_size=2, **kw)
        states.append(_consume(loader, 1)[1])
    other = stoker.Loader(PHOTOS, rank=0, world_size=3, order="shards:2", **kw)
    with pytest.raises(stoker.UsageError, match="order global"):
        other.load_state_dict(states)
    three = stoker.Loader(PHOTOS, rank=0, world_size=3, **kw)
    with pytest.raises(stoker.UsageError, match="no checkpoint part of rank 1"):
        three.load_state_dict([states[0]])
    with pytest.raises(stoker.UsageError, match="pass every rank's state_dict"):
        three.load_state_dict(states[0])
    with pytest.raises(stoker.UsageError, match="order"):
        stoker.Loader(PHOTOS, order="window", **kw)


def test_the_shard_aware_order_covers_the_epoch():
    seen = [
        i
        for b in stoker.Loader(NPY, batch_size=5, shuffle=True, seed=3, order="shards:1").batches()
        for i in b.indices
    ]
    assert sorted(seen) == list(range(32))
    # Two shards of 16, a window of one shard: the first 16 samples come from one shard.
    assert len({i // 16 for i in seen[:16]}) == 1
    assert seen != sorted(seen)
