"""Deprecated alias of perception_edge.cli.train_seg and perception_edge.training.segmentation (importing it warns)."""
from __future__ import annotations

from perception_edge.tools import deprecated_module

__getattr__ = deprecated_module(__name__, ("perception_edge.cli.train_seg", "perception_edge.training.segmentation"))
