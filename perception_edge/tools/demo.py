"""Deprecated alias of perception_edge.cli.demo (importing it warns); `python -m perception_edge.tools.demo`
still runs the demo."""
from __future__ import annotations

import sys

from perception_edge.cli.demo import main
from perception_edge.tools import deprecated_module

if __name__ != "__main__":  # run with -m it is the command itself, not an import of the old path
    __getattr__ = deprecated_module(__name__, ("perception_edge.cli.demo",))
__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
