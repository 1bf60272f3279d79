"""Segmentation decoding (logits -> class map at source size) and mask colouring."""
from __future__ import annotations

import math

import numpy as np

from perception_edge.core.detections import check_finite
from perception_edge.core.errors import ModelError
from perception_edge.core.transform import Transform

# background, lane marking, drivable area, then distinct colours for further classes (RGB)
PALETTE = np.array(
    [[0, 0, 0], [255, 220, 0], [0, 160, 255], [255, 0, 120], [0, 255, 120], [160, 80, 255],
     [255, 120, 0], [120, 255, 255], [255, 255, 255]] + [[(37 * i) % 256, (91 * i) % 256, (151 * i) % 256]
                                                         for i in range(9, 256)],
    np.uint8,
)


def class_map(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[C, h, w] logits of one image -> (h, w) uint8 class ids.

    C == 1 is a binary model: sigmoid(x) > threshold, computed as x > logit(threshold) without the
    sigmoid. C > 1: argmax over classes.
    """
    if logits.ndim != 3:
        raise ModelError(f"segmentation output must be [batch, classes, H, W], got one image of {list(logits.shape)}")
    check_finite("segmentation logits", logits)
    if logits.shape[0] == 1:
        t = min(max(threshold, 1e-6), 1 - 1e-6)
        return (logits[0] > math.log(t / (1 - t))).astype(np.uint8)
    if logits.shape[0] == 2:
        return (logits[1] > logits[0]).astype(np.uint8)
    if logits.shape[0] > 256:
        raise ModelError(f"segmentation output has {logits.shape[0]} classes; at most 256 fit a mono8 mask")
    return logits.argmax(0).astype(np.uint8)


def decode_segmentation(logits: np.ndarray, transforms: list[Transform], threshold: float = 0.5) -> list[np.ndarray]:
    """[B, C, h, w] logits -> per image a class map at source size (letterbox padding removed).

    The class decision is made at the model's output resolution, then each source pixel takes the
    class at its exact position (nearest): cheaper than resizing C logit planes, and exact for
    masks at any output stride.
    """
    if logits.ndim != 4:
        raise ModelError(f"segmentation output must be [batch, classes, H, W], got {list(logits.shape)}")
    return [t.mask_to_source(class_map(logits[i], threshold)) for i, t in enumerate(transforms)]


def colorize(mask: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) RGB colours."""
    return (PALETTE if palette is None else palette)[mask]


def overlay(rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5, palette: np.ndarray | None = None) -> np.ndarray:
    """Blend the colours of non-background classes into an RGB image (a new array)."""
    out = rgb.copy()
    fg = mask > 0
    if fg.any():
        colours = colorize(mask[fg], palette)
        out[fg] = (rgb[fg] * (1 - alpha) + colours * alpha).astype(np.uint8)
    return out
