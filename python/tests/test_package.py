"""The installed package: one abi3 extension that needs no system library beyond libc (no
libhdf5, no libpython, no libcuda), type stubs, and help() text."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess

import pytest

import stoker
import stoker._stoker as core


def test_the_extension_is_abi3_and_links_no_hdf5_python_or_cuda():
    path = core.__file__
    assert path.endswith(".abi3.so"), path
    if shutil.which("ldd") is None:
        pytest.skip("no ldd")
    libs = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    for lib in ("hdf5", "libpython", "libcuda", "libnvrtc"):
        assert lib not in libs, libs


def test_stubs_and_docs_ship_with_the_package():
    files = importlib.resources.files("stoker")
    assert (files / "py.typed").is_file()
    stub = (files / "_stoker.pyi").read_text()
    for name in ("class Core", "class Batch", "class Tensor", "class Augment", "def cli"):
        assert name in stub
    assert "size=(height, width)" in stoker.Loader.__doc__
    assert stoker.Augment.__init__.__doc__ or stoker.Augment.__doc__
    for cls in (stoker.StokerError, stoker.DataError, stoker.UsageError):
        assert cls.__doc__
    assert issubclass(stoker.UsageError, ValueError)
    assert issubclass(stoker.SkipLimitError, stoker.StokerError)
