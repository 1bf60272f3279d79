"""Fitting a frame to the model input (letterbox or stretch) and the exact way back to source pixels."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception_edge.core.errors import InputError

PAD_VALUE = 114  # YOLOv5's letterbox grey


@dataclass(frozen=True)
class Transform:
    """Source image (src_w x src_h) resized to new_w x new_h and placed at (pad_x, pad_y) in dst."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    def boxes_to_source(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """xyxy boxes in model-input pixels -> source pixels (a new float32 array)."""
        out = np.empty(boxes.shape, np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) * (1.0 / self.scale_x)
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) * (1.0 / self.scale_y)
        if clip:
            np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse of boxes_to_source (source pixels -> model-input pixels)."""
        out = np.empty(boxes.shape, np.float64)
        out[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return out

    def source_to_output_matrix(self, out_w: int, out_h: int) -> np.ndarray:
        """2x3 affine from source pixel centres to pixel coordinates of a model output map whose
        size is proportional to the input (e.g. a mask at 1/8 resolution)."""
        sx = out_w / self.dst_w
        sy = out_h / self.dst_h
        ax = self.scale_x * sx
        ay = self.scale_y * sy
        return np.array(
            [[ax, 0.0, (0.5 * self.scale_x + self.pad_x) * sx - 0.5],
             [0.0, ay, (0.5 * self.scale_y + self.pad_y) * sy - 0.5]],
            np.float64,
        )

    def mask_to_source(self, mask: np.ndarray, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
        """A map over the model input (any proportional resolution) -> source size, padding dropped.

        One warpAffine samples each source pixel centre at its exact place in the map, so there is no
        crop rounding and no second resize.
        """
        h, w = mask.shape[:2]
        m = self.source_to_output_matrix(w, h)
        return cv2.warpAffine(
            mask, m, (self.src_w, self.src_h),
            flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        )


def letterbox_transform(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Transform:
    """YOLOv5's letterbox geometry: aspect kept, centred, padding split like the official code."""
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    dst_h, dst_w = int(dst_hw[0]), int(dst_hw[1])
    if src_h <= 0 or src_w <= 0:
        raise InputError(f"zero-size image ({src_w}x{src_h})")
    r = min(dst_h / src_h, dst_w / src_w)
    new_w = max(1, min(dst_w, int(round(src_w * r))))
    new_h = max(1, min(dst_h, int(round(src_h * r))))
    pad_x = int(round((dst_w - new_w) / 2 - 0.1))
    pad_y = int(round((dst_h - new_h) / 2 - 0.1))
    return Transform(src_w, src_h, dst_w, dst_h, new_w, new_h, pad_x, pad_y)


def rect_shape(src_hw: tuple[int, int], size_hw: tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """The smallest stride-aligned (H, W) holding the source letterboxed at the scale it gets in
    size_hw: the official letterbox(auto=True) of detect.py (1280x720 at 640 -> 384x640)."""
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    if src_h <= 0 or src_w <= 0:
        raise InputError(f"zero-size image ({src_w}x{src_h})")
    r = min(size_hw[0] / src_h, size_hw[1] / src_w)
    new_w, new_h = int(round(src_w * r)), int(round(src_h * r))
    return new_h + (int(size_hw[0]) - new_h) % stride, new_w + (int(size_hw[1]) - new_w) % stride


def rect_transform(src_hw: tuple[int, int], size_hw: tuple[int, int], stride: int = 32,
                   dst_hw: tuple[int, int] | None = None) -> Transform:
    """Letterbox into rect_shape (or a given larger dst_hw, e.g. the common shape of a batch) at
    the scale of size_hw, padding split as the official letterbox: the same resize as the square
    input, only less padding, so boxes map back exactly as before."""
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    dst_h, dst_w = dst_hw if dst_hw is not None else rect_shape(src_hw, size_hw, stride)
    r = min(size_hw[0] / src_h, size_hw[1] / src_w)
    new_w = max(1, min(dst_w, int(round(src_w * r))))
    new_h = max(1, min(dst_h, int(round(src_h * r))))
    pad_x = int(round((dst_w - new_w) / 2 - 0.1))
    pad_y = int(round((dst_h - new_h) / 2 - 0.1))
    return Transform(src_w, src_h, int(dst_w), int(dst_h), new_w, new_h, pad_x, pad_y)


def stretch_transform(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Transform:
    """Plain resize to the model input (aspect not kept; common for segmentation models)."""
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    if src_h <= 0 or src_w <= 0:
        raise InputError(f"zero-size image ({src_w}x{src_h})")
    return Transform(src_w, src_h, int(dst_hw[1]), int(dst_hw[0]), int(dst_hw[1]), int(dst_hw[0]), 0, 0)


def make_transform(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str = "letterbox") -> Transform:
    if mode == "letterbox":
        return letterbox_transform(src_hw, dst_hw)
    if mode == "stretch":
        return stretch_transform(src_hw, dst_hw)
    raise InputError(f"unknown resize mode {mode!r} (letterbox or stretch)")


def letterbox(image: np.ndarray, dst_hw: tuple[int, int], pad_value: int = PAD_VALUE,
              mode: str = "letterbox") -> tuple[np.ndarray, Transform]:
    """A new uint8 image of dst size (for tools and drawing; the pipeline uses Preprocessor)."""
    t = make_transform(image.shape[:2], dst_hw, mode)
    out = np.full((t.dst_h, t.dst_w) + image.shape[2:], pad_value, np.uint8)
    out[t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w] = cv2.resize(
        image, (t.new_w, t.new_h), interpolation=cv2.INTER_LINEAR)
    return out, t
