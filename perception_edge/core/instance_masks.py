"""Instance masks of YOLOv5 v7.0 segmentation models, at source size, only for kept detections.

The official decoding (utils/segment/general.py ``process_mask_native``): per detection
``sigmoid(coefficients @ prototypes)`` at prototype resolution (H/4 x W/4 of the model input),
the letterbox padding removed, bilinear (align_corners=False) up to the source size, cropped to the
detection's box (pixel columns x1 <= c < x2, rows y1 <= r < y2), then > 0.5.

Here the same arithmetic runs only inside each box: the prototype rows/columns a box needs are
combined with the coefficients, and the bilinear weights of each source pixel come from the exact
letterbox geometry (Transform.source_to_output_matrix), as separable row and column blends. No
full-frame mask is ever made, so the cost follows the boxes' area, not the number of detections
times the frame size.

The result is one uint16 image: value i + 1 where detection i's mask is set, 0 elsewhere; where
masks overlap, the detection listed first (the higher score: NMS order) keeps the pixel.
"""
from __future__ import annotations

import math

import numpy as np

from perception_edge.core.errors import ModelError
from perception_edge.core.transform import Transform

MASK_THRESHOLD = 0.5
MAX_INSTANCES = 65535  # mono16


def _blend_axis(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """align_corners=False bilinear sampling positions -> (lower index, upper index, weight)."""
    u = np.clip(coords, 0.0, size - 1)
    i0 = np.minimum(np.floor(u).astype(np.int64), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, (u - i0).astype(np.float32)


def instance_mask(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, transform: Transform,
                  threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """protos [nm, mh, mw] of one image, coefficients [n, nm], boxes [n, 4] xyxy in source pixels
    (clipped) -> (src_h, src_w) uint16 instance image (see the module docstring)."""
    protos = np.asarray(protos, np.float32)
    coefficients = np.asarray(coefficients, np.float32)
    if protos.ndim != 3 or coefficients.ndim != 2 or coefficients.shape[1] != protos.shape[0]:
        raise ModelError(f"instance masks need prototypes [nm, H, W] and [n, nm] coefficients, got "
                         f"{list(protos.shape)} and {list(coefficients.shape)}")
    out = np.zeros((transform.src_h, transform.src_w), np.uint16)
    n = min(len(coefficients), MAX_INSTANCES)
    if n == 0:
        return out
    nm, mh, mw = protos.shape
    m = transform.source_to_output_matrix(mw, mh)  # source pixel index -> prototype pixel coordinate
    ax, bx, ay, by = m[0, 0], m[0, 2], m[1, 1], m[1, 2]
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        c0, c1 = max(0, math.ceil(x1)), min(transform.src_w, math.ceil(x2))  # c >= x1 and c < x2
        r0, r1 = max(0, math.ceil(y1)), min(transform.src_h, math.ceil(y2))
        if c1 <= c0 or r1 <= r0:
            continue
        xi0, xi1, wx = _blend_axis(np.arange(c0, c1) * ax + bx, mw)
        yi0, yi1, wy = _blend_axis(np.arange(r0, r1) * ay + by, mh)
        pc0, pc1 = int(xi0[0]), int(xi1[-1]) + 1  # the prototype window this box samples
        pr0, pr1 = int(yi0[0]), int(yi1[-1]) + 1
        window = protos[:, pr0:pr1, pc0:pc1].reshape(nm, -1)
        logits = (coefficients[i] @ window).reshape(pr1 - pr0, pc1 - pc0)
        prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))  # clipped: no float32 overflow
        rows = prob[yi0 - pr0] * (1 - wy)[:, None] + prob[yi1 - pr0] * wy[:, None]
        mask = rows[:, xi0 - pc0] * (1 - wx) + rows[:, xi1 - pc0] * wx
        region = out[r0:r1, c0:c1]
        region[(mask > threshold) & (region == 0)] = i + 1
    return out
