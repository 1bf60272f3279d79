"""Deprecated alias of perception_edge.cli.train_det and perception_edge.training.detection (importing it warns)."""
from __future__ import annotations

from perception_edge.tools import deprecated_module

__getattr__ = deprecated_module(__name__, ("perception_edge.cli.train_det", "perception_edge.training.detection"))
