"""``stoker.torch.Loader``: the same loader, batches as ``torch.Tensor`` through DLPack with
no copy (``images.data_ptr()`` lies inside stoker's batch buffer).

Tensors are CPU tensors in pageable memory: ``pin_memory=True`` and ``device="cuda"`` are not
available yet (they need the buffer fenced against the GPU copy still reading it; see
``docs/python.md``). ``x.cuda()`` (blocking) is safe: the copy ends before it returns.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _stoker
from .loader import _Base

__all__ = ["Loader"]


class Loader(_Base[torch.Tensor]):
    """``stoker.Loader`` with ``torch.Tensor`` batches: images in the loader's dtype
    (``torch.bfloat16`` included), labels ``torch.int64``. Same arguments as
    ``stoker.Loader``; ``pin_memory`` and ``device`` are reserved (only their defaults work
    today)."""

    def __init__(
        self, path: Any, *, pin_memory: bool = False, device: Any = None, **kwargs: Any
    ) -> None:
        if pin_memory:
            raise NotImplementedError(
                "pin_memory=True is not available yet: a pinned batch buffer must not go back "
                "to the pool while a non_blocking copy still reads it (docs/python.md, GPU)"
            )
        if device is not None and torch.device(device).type != "cpu":
            raise NotImplementedError(
                f"device={device!r} is not available yet: batches are CPU tensors; move them "
                "with x.cuda() (docs/python.md, GPU)"
            )
        super().__init__(path, **kwargs)

    def _convert(self, batch: _stoker.Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = torch.from_dlpack(batch.images())
        labels = batch.labels()
        return images, None if labels is None else torch.from_dlpack(labels)
