"""Deprecated alias of perception_edge.cli.quantize and perception_edge.models.quantize (importing it warns)."""
from __future__ import annotations

from perception_edge.tools import deprecated_module

__getattr__ = deprecated_module(__name__, ("perception_edge.cli.quantize", "perception_edge.models.quantize"))
