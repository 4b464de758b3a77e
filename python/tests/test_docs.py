"""Every ```python block of the README and of every chapter of the guide (docs/*.md) runs as it
is: each in a fresh interpreter, from a folder whose `data/train` is 320 copies of the fixture
photographs (4 classes), so a batch of 256 fits. A block whose first line is `# needs: gpu` or
`# needs: cluster` is skipped: no GPU or cluster is available to the tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PHOTOS, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = re.compile(r"#\s*needs:\s*(\w+)")
# Generous: torch's import alone takes seconds on a busy 2-core machine.
TIMEOUT = 600
COPIES = 10


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file: (line of the opening fence, code)."""
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```python\s*$", lines[i])
        if fence:
            indent, start, body = len(fence.group(1)), i + 1, []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:])
                i += 1
            blocks.append((start, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = [(doc, line, code) for doc in DOCS for line, code in python_blocks(doc)]


def test_the_chapter_has_its_blocks():
    chapter = [b for b in BLOCKS if b[0].name == "python.md"]
    assert len(chapter) >= 10, len(chapter)
    # The README's loop and the getting-started chapter's are run too.
    for name in ("README.md", "getting-started.md"):
        assert any(b[0].name == name for b in BLOCKS), name
    for doc, line, code in BLOCKS:
        first = code.splitlines()[0]
        m = NEEDS.match(first)
        assert m is None or m.group(1) in ("gpu", "cluster"), (doc.name, line, first)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """`data/train`: every fixture photograph COPIES times, in its class folder."""
    root = tmp_path_factory.mktemp("docs")
    for photo in sorted(PHOTOS.glob("*/*.jpg")):
        dest = root / "data" / "train" / photo.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for k in range(COPIES):
            shutil.copyfile(photo, dest / f"{photo.stem}-{k}.jpg")
    return root


@pytest.mark.parametrize(
    "doc,line,code", BLOCKS, ids=[f"{d.name}:{line}" for d, line, _ in BLOCKS]
)
def test_the_block_runs(doc, line, code, workdir):
    m = NEEDS.match(code.splitlines()[0])
    if m:
        pytest.skip(f"{doc.name}:{line} needs a {m.group(1)}")
    # The blocks set what they need themselves (KERAS_BACKEND included).
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert out.returncode == 0, f"{doc.name}:{line}\n{code}\n{out.stdout}\n{out.stderr}"
