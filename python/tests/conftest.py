"""Shared helpers of the Python tests: the fixtures' paths and the `stoker` command."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "fixtures" / "photos-256x144"
NPY = ROOT / "fixtures" / "npy"
PHOTOS_1080P = ROOT.parent / "shared" / "fixtures" / "photos-1080p"


def stoker_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs the `stoker` command that `pip install` put beside this Python, from the
    repository root."""
    return subprocess.run(
        [sys.executable, "-m", "stoker._cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_json(*args: str) -> dict:
    out = stoker_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def run_python(code: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    os.environ.setdefault("KERAS_BACKEND", "torch")
