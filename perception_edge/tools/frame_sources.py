"""Deprecated alias: frame sources moved to perception_edge.data.frame_sources (the tuple type is now
SourceFrame there; Frame is perception_edge.core.sync.Frame). Importing this module warns."""
from __future__ import annotations

import warnings

from perception_edge.data.frame_sources import (
    BAG_SUFFIXES, IMAGE_SUFFIXES, IMAGE_TYPES, VIDEO_SUFFIXES, SourceFrame, image_files, image_topic, iter_frames,
    list_image_topics, source_kind)

Frame = SourceFrame

warnings.warn("perception_edge.tools.frame_sources is deprecated: import from perception_edge.data.frame_sources",
              DeprecationWarning, stacklevel=2)

__all__ = ["Frame", "SourceFrame", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "BAG_SUFFIXES", "IMAGE_TYPES", "source_kind",
           "iter_frames", "image_files", "list_image_topics", "image_topic"]
