"""``stoker.plan``: GPU memory of a training step, the largest batch that fits, gradient
accumulation and epoch time, as a dict (the ``stoker plan --json`` report)."""

from __future__ import annotations

import json
from typing import Any

from . import _stoker

__all__ = ["plan"]


def plan(
    *,
    input: str | tuple[int, int, int],
    gpu_memory: str,
    preset: str | None = None,
    model: str | None = None,
    classes: int = 10,
    batch_size: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adam",
    overhead: str | None = None,
    effective_batch: int | None = None,
    samples: int | None = None,
    step_ms: float | None = None,
) -> dict[str, Any]:
    """The planner's report for ``preset`` (``"cnn4-dense512"``, ``"cnn4-gap"``,
    ``"mobilenetv2"``, ``"resnet18"``, ``"resnet50"``) or ``model`` (the text format, e.g.
    ``"conv3x3:32,relu,maxpool2,flatten,dense:10"``), for ``input`` (``"256x144x3"`` or
    ``(width, height, channels)``), on a GPU of ``gpu_memory`` (``"12GiB"``). Same meanings as
    ``stoker plan``'s flags; see ``docs/plan.md``."""
    if not isinstance(input, str):
        w, h, c = input
        input = f"{w}x{h}x{c}"
    args = ["--input", input, "--gpu-memory", gpu_memory, "--classes", str(classes)]
    args += ["--precision", precision, "--optimizer", optimizer]
    for flag, value in [
        ("--preset", preset),
        ("--model", model),
        ("--batch-size", batch_size),
        ("--overhead", overhead),
        ("--effective-batch", effective_batch),
        ("--samples", samples),
        ("--step-ms", step_ms),
    ]:
        if value is not None:
            args += [flag, str(value)]
    return json.loads(_stoker.plan_json(args))
