"""The ``stoker`` command installed by ``pip install``: the same command line as the Rust
binary (``resize``, ``convert``, ``bench``, ``plan``, ``inspect``, ``augment-preview``)."""

from __future__ import annotations

import sys

from . import _stoker


def main() -> None:
    """Runs ``stoker ARGS`` and exits with its status."""
    argv = ["stoker", *sys.argv[1:]]
    sys.exit(_stoker.cli(argv))


if __name__ == "__main__":
    main()
