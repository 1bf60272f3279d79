"""Deprecated alias of perception_edge.cli (importing it warns); `python -m perception_edge.tools.cli`
still runs the command line."""
from __future__ import annotations

import sys

from perception_edge.cli import COMMANDS, main, usage
from perception_edge.tools import deprecated_module

if __name__ != "__main__":  # run with -m it is the command itself, not an import of the old path
    __getattr__ = deprecated_module(__name__, ("perception_edge.cli",))
__all__ = ["COMMANDS", "main", "usage"]

if __name__ == "__main__":
    sys.exit(main())
