"""Debug rendering: boxes with labels, masks blended in. Used by the debug-image topic and the CLI."""
from __future__ import annotations


import cv2
import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.segmentation import overlay


def class_colour(class_id: int):
    # fixed pseudo-random colour per class, distinct enough for neighbouring ids
    return (int((class_id * 67 + 80) % 256), int((class_id * 131 + 160) % 256), int((class_id * 197 + 40) % 256))


def draw(rgb: np.ndarray, detections: Detections | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """A new RGB image with the mask blended in and each detection boxed and labelled."""
    out = overlay(rgb, mask) if mask is not None else rgb.copy()
    if detections is None:
        return out
    thickness = max(1, round(min(out.shape[:2]) / 360))
    scale = 0.4 * thickness
    for box, score, name, cid in zip(detections.boxes, detections.scores, detections.names(), detections.class_ids):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = class_colour(int(cid))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(out, text, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
