"""Deprecated alias of perception_edge.cli.detect and perception_edge.cli.segment (importing it warns)."""
from __future__ import annotations

from perception_edge.tools import deprecated_module

__getattr__ = deprecated_module(__name__, ("perception_edge.cli.detect", "perception_edge.cli.segment"), {
    "main_detect": "perception_edge.cli.detect:main", "main_segment": "perception_edge.cli.segment:main"})
