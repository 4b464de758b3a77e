"""``stoker.Augment``: Keras-style augmentation settings for the loaders' ``augment=``."""

from __future__ import annotations

from . import _stoker

__all__ = ["Augment", "resolve_augment"]

Augment = _stoker.Augment


def resolve_augment(augment: object) -> _stoker.Augment | None:
    """``augment=`` of a loader: ``"default"`` (Keras-style: rotation 15, shift 0.1, zoom
    0.9-1.1, horizontal flip, noise 0.03), ``"none"`` or ``None``, a spec string such as
    ``"rotation=15,hflip"``, or a ``stoker.Augment``."""
    if augment is None:
        return None
    if isinstance(augment, _stoker.Augment):
        return augment
    if isinstance(augment, str):
        if augment.strip() in ("", "none"):
            return None
        if augment.strip() in ("default", "keras"):
            return _stoker.Augment.default()
        return _stoker.Augment.from_spec(augment)
    raise TypeError(
        f"augment: expected 'default', 'none', a spec string or stoker.Augment, got {augment!r}"
    )
