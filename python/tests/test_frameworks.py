"""stoker.torch.Loader and stoker.keras.Dataset: tensors over the buffers, and Keras'
model.fit over the loader."""

from __future__ import annotations

import os

import numpy as np
import pytest

import stoker
from conftest import PHOTOS

torch = pytest.importorskip("torch")


def test_torch_tensors_share_the_numpy_loader_s_bits_in_every_dtype():
    import stoker.torch as st

    kw = dict(batch_size=8, shuffle=True, seed=4, augment="default", normalize="imagenet")
    for dtype, tdtype in [
        ("float32", torch.float32),
        (torch.float16, torch.float16),
        ("bfloat16", torch.bfloat16),
        ("uint8", torch.uint8),
    ]:
        kw2 = dict(kw, normalize=None) if dtype == "uint8" else kw
        t_loader = st.Loader(PHOTOS, dtype=dtype, **kw2)
        n_loader = stoker.Loader(PHOTOS, dtype="float32" if dtype == "bfloat16" else dtype, **kw2)
        for (x, y), (a, b) in zip(t_loader, n_loader):
            assert x.dtype == tdtype and y.dtype == torch.int64
            assert x.device.type == "cpu" and not x.is_pinned()
            want = torch.from_numpy(a.copy())
            if dtype == "bfloat16":
                want = want.to(torch.bfloat16)
            assert torch.equal(x, want)
            assert torch.equal(y, torch.from_numpy(b.copy()))


def test_torch_gpu_modes_are_reserved():
    import stoker.torch as st

    with pytest.raises(NotImplementedError, match="pin_memory"):
        st.Loader(PHOTOS, pin_memory=True)
    with pytest.raises(NotImplementedError, match="device"):
        st.Loader(PHOTOS, device="cuda")
    st.Loader(PHOTOS, device="cpu")


def test_torch_training_step_on_a_batch():
    import stoker.torch as st

    loader = st.Loader(PHOTOS, batch_size=8, size=(36, 64), normalize="imagenet")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 36 * 64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)


def test_keras_fit_takes_the_dataset_with_len_and_epochs():
    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    import stoker.keras as sk

    ds = sk.Dataset(PHOTOS, batch_size=8, size=(36, 64), shuffle=True, seed=1,
                    augment="default", normalize="imagenet")
    assert len(ds) == 4
    images, labels = ds[0]
    assert images.shape == (8, 36, 64, 3) and labels.shape == (8,)
    # An index out of order restarts the epoch there; in order comes from the stream.
    again, _ = ds[0]
    np.testing.assert_array_equal(again, images)
    model = keras.Sequential([
        keras.Input((36, 64, 3)),
        keras.layers.Flatten(),
        keras.layers.Dense(4),
    ])
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert all(np.isfinite(history.history["loss"]))
    # Each epoch was the loader's next: three epochs after the first peek (epoch 0).
    assert ds.loader.state_dict()["epoch"] >= 3


def _rank_indices(rank: int, world: int, port: int, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        loader = stoker.Loader(PHOTOS, batch_size=4, shuffle=True, seed=8)
        out.put((rank, loader.rank, loader.world_size,
                 [i for b in loader.batches() for i in b.indices]))
    finally:
        dist.destroy_process_group()


def test_rank_and_world_size_come_from_torch_distributed_when_initialised():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_indices, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [(r, lr, w) for r, lr, w, _ in results] == [(0, 0, 2), (1, 1, 2)]
    assert sorted(results[0][3] + results[1][3]) == list(range(32))


def test_rank_and_world_size_come_from_the_environment_last(monkeypatch):
    from conftest import run_python

    code = (
        "import stoker; l = stoker.Loader('fixtures/photos-256x144', batch_size=4);"
        "print(l.rank, l.world_size, len(l))"
    )
    out = run_python(code, env={**os.environ, "RANK": "1", "WORLD_SIZE": "4"})
    assert out.stdout.split() == ["1", "4", "2"], out.stderr
    explicit = run_python(code.replace("batch_size=4", "batch_size=4, rank=0, world_size=2"),
                          env={**os.environ, "RANK": "1", "WORLD_SIZE": "4"})
    assert explicit.stdout.split() == ["0", "2", "4"], explicit.stderr
