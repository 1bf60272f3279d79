"""Frames -> one normalized NCHW batch tensor, written into reused buffers."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import cv2
import numpy as np

from perception_edge.core.errors import InputError
from perception_edge.core.transform import PAD_VALUE, Transform, make_transform, rect_transform

BGR = "bgr"


class Preprocessor:
    """Letterbox (or stretch) + scale to [0, 1] + HWC->CHW + channel order to RGB, per frame.

    Per frame: one cv2.resize and one cv2.split into reused buffers, then one uint8 -> float
    division per channel straight into the batch tensor (cheaper than a strided copy followed by an
    in-place scale). Padding is written only when a slot's geometry changes, since frames of one
    camera keep the same size.

    With rect_stride > 0 (letterbox only, models with dynamic H/W) each batch gets the smallest
    rect_stride-aligned rectangle holding its frames at the scale input_hw gives them, as the
    official detect.py does (1280x720 at 640 -> 640x384).

    Memory is bounded by design: one tensor buffer (the largest batch and shape seen; each batch is
    a view of it) and the resize buffers of at most `cache_size` source geometries, least recently
    used first out (a camera that changes its resolution now and then costs nothing lasting).
    """

    def __init__(self, input_hw: tuple[int, int], dtype=np.float32, mode: str = "letterbox",
                 pad_value: int = PAD_VALUE, cache_size: int = 8, rect_stride: int = 0):
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.rect_stride = int(rect_stride) if mode == "letterbox" else 0
        self.dtype = np.dtype(dtype)
        self.mode = mode
        self.pad = np.float32(pad_value / 255.0)
        self._scale = self.dtype.type(255.0)
        self.cache_size = max(1, int(cache_size))
        self._flat = np.empty(0, self.dtype)  # the batch tensor's memory
        self._blob_hw = self.input_hw  # the spatial shape the buffer is laid out for now
        self._slot_geometry: dict[int, Transform | None] = {}  # what each slot holds (None: padding)
        # per resized size (h, w), least recently used first: the resized HWC image and its planes
        self._buffers: OrderedDict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = OrderedDict()

    def _batch_blob(self, batch: int, hw: tuple[int, int]) -> np.ndarray:
        need = batch * 3 * hw[0] * hw[1]
        if need > self._flat.size:
            self._flat = np.empty(need, self.dtype)
            self._slot_geometry.clear()  # every slot is repainted
        if hw != self._blob_hw:
            self._blob_hw = hw
            self._slot_geometry.clear()
        return self._flat[:need].reshape((batch, 3) + hw)

    def _rect_transforms(self, images: Sequence[tuple[np.ndarray, str]]) -> list[Transform]:
        ts = [rect_transform(px.shape[:2], self.input_hw, self.rect_stride) for px, _ in images]
        h, w = max(t.dst_h for t in ts), max(t.dst_w for t in ts)
        if any((t.dst_h, t.dst_w) != (h, w) for t in ts):  # cameras of different aspect: one common shape
            ts = [rect_transform(px.shape[:2], self.input_hw, self.rect_stride, (h, w)) for px, _ in images]
        return ts

    def __call__(self, images: Sequence[tuple[np.ndarray, str]], batch: int = 0) -> tuple[np.ndarray, list[Transform]]:
        """images: (H x W x 3 uint8, "rgb"|"bgr") pairs. batch > len(images) pads with empty slots.

        The returned tensor is a buffer owned by this object: valid until the next call.
        """
        n = len(images)
        batch = max(batch, n)
        if n == 0:
            raise InputError("no images to preprocess")
        for pixels, _ in images:
            if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
                raise InputError(f"expected an H x W x 3 uint8 image, got {pixels.shape} {pixels.dtype}")
        rect = self._rect_transforms(images) if self.rect_stride else None
        blob = self._batch_blob(batch, (rect[0].dst_h, rect[0].dst_w) if rect else self.input_hw)
        transforms = []
        for i, (pixels, order) in enumerate(images):
            t = rect[i] if rect else make_transform(pixels.shape[:2], self.input_hw, self.mode)
            self._write(blob, i, pixels, order, t)
            transforms.append(t)
        for i in range(n, batch):  # empty slots of a fixed-batch model: padding only
            if self._slot_geometry.get(i, "unknown") is not None:
                blob[i] = self.pad
                self._slot_geometry[i] = None
        return blob, transforms

    def _resize_buffers(self, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
        buffers = self._buffers.get((h, w))
        if buffers is None:
            buffers = (np.empty((h, w, 3), np.uint8), [np.empty((h, w), np.uint8) for _ in range(3)])
            self._buffers[(h, w)] = buffers
            while len(self._buffers) > self.cache_size:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end((h, w))
        return buffers

    def _write(self, blob: np.ndarray, i: int, pixels: np.ndarray, order: str, t: Transform) -> None:
        if self._slot_geometry.get(i) != t:
            blob[i] = self.pad  # geometry changed: repaint this slot's padding
            self._slot_geometry[i] = t
        resized, planes = self._resize_buffers(t.new_h, t.new_w)
        if (t.new_w, t.new_h) == (t.src_w, t.src_h):
            np.copyto(resized, pixels)
        else:
            cv2.resize(pixels, (t.new_w, t.new_h), dst=resized, interpolation=cv2.INTER_LINEAR)
        cv2.split(resized, planes)  # contiguous planes: the division below reads them linearly
        content = blob[i, :, t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w]
        rgb_channels = (2, 1, 0) if order == BGR else (0, 1, 2)
        for c, src in enumerate(rgb_channels):
            # uint8 -> float and / 255 in one pass (division, as the official code: bit-identical)
            np.divide(planes[src], self._scale, out=content[c], dtype=self.dtype, casting="unsafe")
