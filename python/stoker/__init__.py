"""stoker keeps a GPU fed: image data sets on disk to augmented, batched arrays, made by a
Rust engine on its own threads and handed to numpy, PyTorch and Keras without a copy.

    import stoker
    loader = stoker.Loader("data/train", batch_size=256, size=(144, 256), shuffle=True,
                           augment="default", dtype="float16", normalize="imagenet")
    for epoch in range(10):
        for images, labels in loader:     # numpy arrays over stoker's batch buffer
            ...

``stoker.torch.Loader`` yields ``torch.Tensor``s, ``stoker.keras.Dataset`` is a Keras
``PyDataset``; ``stoker.plan(...)`` is the GPU memory planner. See ``docs/python.md``.
"""

from __future__ import annotations

from . import _stoker
from .augment import Augment
from .errors import (
    DataError,
    DeviceError,
    PoolExhaustedError,
    SkipLimitError,
    StokerError,
    UsageError,
)
from .loader import Batch, Loader, merge_state_dicts
from .plan import plan

__version__: str = _stoker.__version__

Digest = _stoker.Digest


def has_hdf5() -> bool:
    """Whether this build reads HDF5 files (built with the ``hdf5`` feature)."""
    return _stoker.has_hdf5()


__all__ = [
    "Augment",
    "Batch",
    "DataError",
    "DeviceError",
    "Digest",
    "Loader",
    "PoolExhaustedError",
    "SkipLimitError",
    "StokerError",
    "UsageError",
    "has_hdf5",
    "merge_state_dicts",
    "plan",
]
