"""stoker's exceptions: every error the engine raises is a ``StokerError`` with the Rust
message as its text and these attributes:

- ``kind``: the Rust ``ErrorKind`` (``"io"``, ``"format"``, ``"decode"``, ``"usage"``,
  ``"skip_limit"``, ``"pool_exhausted"``, ...);
- ``path``: the file it concerns, or ``None``;
- ``index``: the data set index of the sample, or ``None``.
"""

from __future__ import annotations

__all__ = [
    "StokerError",
    "DataError",
    "SkipLimitError",
    "PoolExhaustedError",
    "UsageError",
    "DeviceError",
]


class StokerError(Exception):
    """Base class of stoker's errors (``kind``, ``path``, ``index``)."""

    kind: str = "unknown"
    path: str | None = None
    index: int | None = None


class DataError(StokerError):
    """A sample could not be read or decoded (``kind`` is ``"io"``, ``"format"`` or
    ``"decode"``); ``path`` names the file and ``index`` the sample. Under
    ``on_error="skip"`` such samples are skipped and counted in ``loader.stats()``."""


class SkipLimitError(StokerError):
    """An epoch skipped more samples than ``max_skipped`` allows, or every sample failed;
    the message names the source, the count and the first failure."""

    kind = "skip_limit"


class PoolExhaustedError(StokerError):
    """Every batch buffer is held by your code (``held`` of them): a buffer is reused only
    once every array or tensor over its batch is freed. Keep ``.copy()`` (numpy) or
    ``.clone()`` (torch) of what you keep, or raise ``prefetch``."""

    kind = "pool_exhausted"
    held: int = 0


class UsageError(StokerError, ValueError):
    """A bad argument or setting (also a ``ValueError``)."""

    kind = "usage"


class DeviceError(StokerError):
    """A GPU or driver error."""

    kind = "device"
