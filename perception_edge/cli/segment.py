"""`perception-edge segment`: lane segmentation on image files: <stem>_mask.png and <stem>_overlay.jpg
in --output (flags shared with detect: perception_edge.cli.detect)."""
from __future__ import annotations

from pathlib import Path

import cv2

from perception_edge.cli.detect import each_image
from perception_edge.core.image_conversion import to_rgb

SEGMENT_PARAMS = ["segmentation.threshold", "segmentation.resize_mode", "detection.input_size",
                  "backend", "num_threads"]


def main(argv: list[str] | None = None) -> int:
    from perception_edge.core.segmentation import overlay
    from perception_edge.pipeline import segmenter_from_config

    def write(path: str, bgr, mask, stem: Path) -> None:
        cv2.imwrite(f"{stem}_mask.png", mask)
        cv2.imwrite(f"{stem}_overlay.jpg", cv2.cvtColor(overlay(to_rgb(bgr, "bgr"), mask), cv2.COLOR_RGB2BGR))
        print(f"{path}: {float((mask > 0).mean()):.1%} non-background -> {stem}_mask.png, {stem}_overlay.jpg")

    return each_image("segment", SEGMENT_PARAMS, "lane segmentation on images", "segmentation.model", argv,
                       segmenter_from_config, write)
