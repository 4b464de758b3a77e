"""``stoker.Loader``: batches of numpy arrays over the engine's batch buffers, with no copy.

One Rust loader does everything (reading, decoding, augmenting, normalising, writing each
sample into its slot of a pooled batch buffer, on its own threads); this class turns its
arguments into that loader's settings and its batches into numpy arrays. ``stoker.torch``
and ``stoker.keras`` do the same for torch tensors and Keras' ``model.fit``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from . import _stoker
from .augment import Augment, resolve_augment
from .errors import UsageError

__all__ = ["Loader", "Batch", "merge_state_dicts"]

T = TypeVar("T")

_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "f32": "float32",
    "float16": "float16",
    "half": "float16",
    "f16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "uint8": "uint8",
    "u8": "uint8",
}


def _dtype_name(dtype: Any) -> str:
    """The engine's name of ``dtype``: a string, a numpy dtype, a torch dtype or
    ``ml_dtypes.bfloat16``."""
    if isinstance(dtype, str):
        name = dtype.lower()
    else:
        name = str(dtype)
        if name.startswith("torch."):
            name = name[len("torch.") :]
        else:
            try:
                name = np.dtype(dtype).name
            except TypeError as e:
                raise TypeError(f"dtype: {dtype!r} is not a dtype") from e
    if name not in _DTYPES:
        raise UsageError(f"dtype {dtype!r}: expected float32, float16, bfloat16 or uint8")
    return _DTYPES[name]


def _distributed(rank: int | None, world_size: int | None) -> tuple[int | None, int | None]:
    """Rank and world size: the arguments, else ``torch.distributed`` when it is initialised,
    else ``(None, None)``, which lets the engine read the launcher's environment."""
    if rank is not None or world_size is not None:
        return rank, world_size
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return None, None


class Batch(Generic[T]):
    """One batch with where it lies in its epoch: ``images`` and ``labels`` (arrays or
    tensors over the batch buffer), ``indices`` (data set index of each sample), ``epoch``,
    ``first_position`` and ``next_position`` (where a checkpoint taken after this batch
    resumes)."""

    __slots__ = ("images", "labels", "raw")

    def __init__(self, images: T, labels: T | None, raw: _stoker.Batch) -> None:
        self.images = images
        self.labels = labels
        self.raw = raw

    @property
    def indices(self) -> list[int]:
        return self.raw.indices

    @property
    def epoch(self) -> int:
        return self.raw.epoch

    @property
    def first_position(self) -> int:
        return self.raw.first_position

    @property
    def next_position(self) -> int:
        return self.raw.next_position

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[T | None]:
        return iter((self.images, self.labels))


class _Base(Generic[T]):
    """What the numpy and torch loaders share: the engine, the epoch cursor, checkpoints."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 64,
        size: tuple[int, int] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int | None = None,
        prefetch: int = 2,
        augment: str | Augment | None = "none",
        dtype: Any = "float32",
        layout: str = "NCHW",
        normalize: str | tuple[Sequence[float], Sequence[float]] | None = None,
        on_error: str = "raise",
        max_skipped: int | float | str | None = None,
        drop_last: bool = False,
        partition: str = "pad",
        order: str = "global",
        rank: int | None = None,
        world_size: int | None = None,
        labels: str | os.PathLike[str] | None = None,
        images_key: str | None = None,
        channels: int | None = None,
        decode_policy: str = "tolerant",
        max_image_pixels: int | None = None,
        num_classes: int | None = None,
        ignore_label: int | None = None,
        prefetch_next_epoch: bool = True,
    ) -> None:
        if size is not None:
            if (
                not isinstance(size, (tuple, list))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            ):
                raise TypeError(f"size: expected (height, width) as two ints, got {size!r}")
            size = (int(size[0]), int(size[1]))
        if not isinstance(layout, str):
            raise TypeError(f"layout: expected 'NCHW' or 'NHWC', got {layout!r}")
        if not isinstance(on_error, str):
            raise TypeError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        # The engine takes these as unsigned: a negative one is a usage error naming it, not
        # the OverflowError the conversion would raise.
        for name, value in (
            ("batch_size", batch_size),
            ("seed", seed),
            ("num_workers", num_workers),
            ("prefetch", prefetch),
            ("channels", channels),
            ("max_image_pixels", max_image_pixels),
            ("num_classes", num_classes),
            ("rank", rank),
            ("world_size", world_size),
        ):
            if isinstance(value, int) and value < 0:
                raise UsageError(f"{name} {value}: expected 0 or more")
        rank, world_size = _distributed(rank, world_size)
        self._dtype = _dtype_name(dtype)
        self._check_dtype(self._dtype)
        self._core = _stoker.Core(
            os.fspath(path),
            labels=None if labels is None else os.fspath(labels),
            images_key=images_key,
            batch_size=batch_size,
            size=size,
            channels=channels,
            shuffle=shuffle,
            seed=seed,
            num_workers=num_workers,
            prefetch=prefetch,
            prefetch_next_epoch=prefetch_next_epoch,
            augment=resolve_augment(augment),
            dtype=self._dtype,
            layout=layout,
            normalize=normalize,
            on_error=on_error,
            max_skipped=max_skipped,
            decode_policy=decode_policy,
            max_image_pixels=max_image_pixels,
            drop_last=drop_last,
            num_classes=num_classes,
            ignore_label=ignore_label,
            rank=rank,
            world_size=world_size,
            partition=partition,
            order=order,
        )

    def _check_dtype(self, dtype: str) -> None:
        """Raises when this loader cannot give ``dtype`` (before any work)."""

    def _convert(self, batch: _stoker.Batch) -> tuple[T, T | None]:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return len(self._core)

    def __iter__(self) -> Iterator[tuple[T, T | None]]:
        """The next epoch's batches as ``(images, labels)``: each iteration is the next epoch
        (``set_epoch`` picks one). Breaking out cancels the rest of the epoch."""
        for b in self.batches():
            yield b.images, b.labels

    def batches(self) -> Iterator[Batch[T]]:
        """The next epoch, as ``Batch`` objects (with indices and positions)."""
        core = self._core
        core.begin()
        try:
            while (raw := core.next()) is not None:
                images, labels = self._convert(raw)
                yield Batch(images, labels, raw)
        finally:
            core.end()

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration yields, from its first batch (as
        ``DistributedSampler.set_epoch``)."""
        self._core.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint: ``{"epoch", "position", ...}`` (the epoch in progress and the samples
        consumed so far, or the next epoch between epochs), with ``"checkpoint"``, this rank's
        part of the epoch's consumed positions in global terms (for an elastic resume)."""
        return self._core.state_dict()

    def load_state_dict(self, state: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        """Resume. A ``state_dict`` of this rank at this world size resumes exactly: the next
        iteration yields the batches that would have followed. To resume at another world
        size, pass the ``state_dict`` of every rank (a list, as ``all_gather_object`` gathers
        it) or their ``merge_state_dicts``: the next iteration yields this rank's share of the
        samples of the epoch that no rank consumed; every such sample is seen once across the
        new ranks (see docs/scaling.md, "Elastic resume")."""
        if not isinstance(state, dict):
            state = merge_state_dicts(state)
        if state.get("merged"):
            self._core.load_checkpoint(state["checkpoint"])
            return
        if (state.get("rank"), state.get("world_size")) != (self.rank, self.world_size):
            if state.get("world_size") == 1 and "checkpoint" in state:
                self._core.load_checkpoint(merge_state_dicts([state])["checkpoint"])
                return
            raise UsageError(
                f"this state_dict is of rank {state.get('rank')} of {state.get('world_size')} "
                f"(this loader: rank {self.rank} of {self.world_size}): to resume at another "
                "world size, pass every rank's state_dict (a list) or their merge_state_dicts"
            )
        self._core.load_state_dict(state)

    def stats(self) -> dict[str, Any]:
        """What the loader did so far: samples, batches, seconds per stage, the time you
        waited, skipped samples by kind."""
        return self._core.stats()

    @property
    def batch_size(self) -> int:
        return self._core.batch_size

    @property
    def num_workers(self) -> int:
        return self._core.num_workers

    @property
    def prefetch(self) -> int:
        return self._core.prefetch

    @property
    def rank(self) -> int:
        return self._core.rank

    @property
    def world_size(self) -> int:
        return self._core.world_size

    @property
    def num_samples(self) -> int:
        """Samples in the data set (all ranks)."""
        return self._core.samples

    def __repr__(self) -> str:
        (c, h, w), dtype, layout = self._core.spec
        return (
            f"{type(self).__module__}.{type(self).__name__}({self._core.description}; "
            f"batch {self.batch_size}, {dtype} {layout} {c}x{h}x{w}, "
            f"{self.num_workers} workers, rank {self.rank}/{self.world_size})"
        )


class Loader(_Base[np.ndarray]):
    """Batches of numpy arrays over stoker's batch buffers (no copy).

    ``path`` is anything ``stoker::source::open`` reads: an image folder (one folder per
    class), a manifest CSV, ``.npy`` / ``.h5`` / ``.tar`` files or globs, or a ``stoker
    convert`` directory. ``size=(height, width)``, as torchvision's ``Resize`` and Keras'
    ``target_size`` (the reverse of the Rust builder's ``size(w, h)`` and the command line's
    ``--size WxH``). ``prefetch`` is the number of batches in flight in total (not per
    worker); the pool holds ``prefetch + 2`` buffers. ``drop_last`` drops the partial last
    batch; ``partition`` (``"pad"`` or ``"drop"``) is ``DistributedSampler``'s choice for
    ranks. ``dtype="bfloat16"`` needs ``ml_dtypes`` (numpy has no bfloat16). The arrays are
    valid until you drop them: keep ``.copy()`` of what you keep past the next batches.

        loader = stoker.Loader("data/train", batch_size=256, size=(144, 256), shuffle=True,
                               augment="default", dtype="float16", normalize="imagenet")
        for epoch in range(10):
            for images, labels in loader:
                ...
    """

    def _check_dtype(self, dtype: str) -> None:
        if dtype == "bfloat16":
            try:
                import ml_dtypes  # noqa: F401
            except ImportError as e:
                raise UsageError(
                    "dtype bfloat16: numpy has no bfloat16; pip install ml-dtypes (or "
                    "stoker[bfloat16]), or use stoker.torch.Loader, whose tensors are "
                    "torch.bfloat16"
                ) from e

    def _convert(self, batch: _stoker.Batch) -> tuple[np.ndarray, np.ndarray | None]:
        if self._dtype == "bfloat16":
            import ml_dtypes

            images = np.from_dlpack(batch.images(bits16=True)).view(ml_dtypes.bfloat16)
        else:
            images = np.from_dlpack(batch.images())
        labels = batch.labels()
        return images, None if labels is None else np.from_dlpack(labels)


def merge_state_dicts(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One checkpoint from the ``state_dict`` of every rank (gathered, in any order, e.g. with
    ``torch.distributed.all_gather_object``): the global positions of the epoch that the ranks
    consumed, which ``load_state_dict`` resumes at any world size. A usage error when a rank
    is missing or the states are of different loaders (naming the field)."""
    states = list(states)
    if not states:
        raise UsageError("merge_state_dicts: no state_dicts given")
    for s in states:
        if not isinstance(s, dict) or "checkpoint" not in s:
            raise UsageError("merge_state_dicts: expected state_dicts of stoker loaders")
    merged = _stoker.merge_checkpoints([s["checkpoint"] for s in states])
    return {"merged": True, "epoch": states[0]["epoch"], "checkpoint": merged}
