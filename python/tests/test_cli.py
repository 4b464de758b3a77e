"""The `stoker` command that `pip install` puts on PATH, and `stoker.plan`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import stoker
from conftest import PHOTOS, ROOT, cli_json, stoker_cli


def test_the_command_runs_every_tool():
    out = stoker_cli("--help")
    assert out.returncode == 0
    for tool in ["bench", "resize", "convert", "inspect", "plan", "augment-preview"]:
        assert tool in out.stdout
    j = cli_json("inspect", str(PHOTOS))
    assert j["samples"] == 32
    bad = stoker_cli("bench", "--batch-size", "zero")
    assert bad.returncode == 2 and "batch-size" in bad.stderr
    missing = stoker_cli("inspect", "no/such/dir")
    assert missing.returncode == 1 and missing.stderr.startswith("stoker: ")


def test_the_console_script_is_installed_beside_python():
    exe = shutil.which("stoker", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None, "pip install ./python puts `stoker` in the environment's bin"
    out = subprocess.run([exe, "plan", "--preset", "cnn4-gap", "--input", "256x144x3",
                          "--gpu-memory", "12GiB", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "cnn4-gap"


def test_resize_from_python_makes_a_data_set_the_loader_reads(tmp_path):
    out = stoker_cli("resize", str(PHOTOS), str(tmp_path / "small"), "--size", "64x36",
                     "--quiet")
    assert out.returncode == 0, out.stderr
    loader = stoker.Loader(tmp_path / "small", batch_size=8)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 36, 64)


def test_plan_returns_the_cli_report_as_a_dict():
    mine = stoker.plan(preset="resnet18", input=(224, 224, 3), gpu_memory="12GiB",
                       effective_batch=256, samples=50000, step_ms=120)
    theirs = cli_json("plan", "--preset", "resnet18", "--input", "224x224x3",
                      "--gpu-memory", "12GiB", "--effective-batch", "256",
                      "--samples", "50000", "--step-ms", "120")
    assert mine == theirs
    assert mine["batch_size"] > 0
    try:
        stoker.plan(preset="resnet9000", input="224x224x3", gpu_memory="12GiB")
    except stoker.UsageError as e:
        assert "resnet9000" in str(e)
    else:
        raise AssertionError("an unknown preset is a usage error")
