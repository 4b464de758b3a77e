"""No copy, no allocation per batch, and no deadlock on the pool: arrays and tensors point
into the batch buffers, freed buffers come back, and holding them all raises."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import stoker
from conftest import PHOTOS, run_python


def test_numpy_and_torch_point_into_the_batch_buffer_and_buffers_are_reused():
    torch = pytest.importorskip("torch")
    import stoker.torch as st

    for make, ptr in [
        (stoker.Loader, lambda a: a.__array_interface__["data"][0]),
        (st.Loader, lambda t: t.data_ptr()),
    ]:
        loader = make(PHOTOS, batch_size=4, prefetch=2, augment="default")
        addresses = set()
        for epoch in range(4):
            for b in loader.batches():
                assert ptr(b.images) == b.raw.images().data_ptr
                addresses.add(ptr(b.images))
        # 32 batches over 4 epochs, made in a pool of prefetch + 2 buffers (and as many for
        # the next epoch's start): freed buffers came back, none was allocated per batch.
        assert len(addresses) <= 2 * (loader.prefetch + 2), len(addresses)
    assert torch.from_dlpack is not None


def test_holding_every_buffer_raises_pool_exhausted_and_never_hangs():
    code = """
import stoker
loader = stoker.Loader("fixtures/photos-256x144", batch_size=2, prefetch=1)
kept = []
try:
    for images, labels in loader:
        kept.append(images)
except stoker.PoolExhaustedError as e:
    print("raised", len(kept), e.held, e.kind)
    print(e)
"""
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stderr
    first, message = out.stdout.splitlines()[:2]
    _, kept, held, kind = first.split()
    assert (int(held), kind) == (3, "pool_exhausted")
    assert int(kept) == 3
    assert ".copy()" in message and ".clone()" in message and "prefetch" in message
    # Copies are fine: nothing is held.
    code_copy = code.replace("kept.append(images)", "kept.append(images.copy())")
    out = run_python(code_copy + "\nprint('done', len(kept))", timeout=60)
    assert "done 16" in out.stdout, out.stdout + out.stderr


def test_python_memory_per_batch_is_freed():
    loader = stoker.Loader(PHOTOS, batch_size=8, augment="default")
    for _ in loader:  # warm up: the pool, the next epoch's start, first imports
        pass
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(5):
        for images, labels in loader:
            assert isinstance(images, np.ndarray)
    del images, labels
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 16_384, grown
