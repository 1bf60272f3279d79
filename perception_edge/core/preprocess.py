"""Frames -> one normalized NCHW batch tensor, written into reused buffers."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import cv2
import numpy as np

from perception_edge.core.errors import InputError
from perception_edge.core.transform import PAD_VALUE, Transform, make_transform

BGR = "bgr"


class Preprocessor:
    """Letterbox (or stretch) + scale to [0, 1] + HWC->CHW + channel order to RGB, per frame.

    Per frame: one cv2.resize and one cv2.split into reused buffers, then one uint8 -> float
    division per channel straight into the batch tensor (cheaper than a strided copy followed by an
    in-place scale). Padding is written only when a slot's geometry changes, since frames of one
    camera keep the same size.

    Memory is bounded by design: one batch tensor (the largest batch seen; smaller batches are
    views of it) and the resize buffers of at most `cache_size` source geometries, least recently
    used first out (a camera that changes its resolution now and then costs nothing lasting).
    """

    def __init__(self, input_hw: tuple[int, int], dtype=np.float32, mode: str = "letterbox",
                 pad_value: int = PAD_VALUE, cache_size: int = 8):
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.dtype = np.dtype(dtype)
        self.mode = mode
        self.pad = np.float32(pad_value / 255.0)
        self._scale = self.dtype.type(255.0)
        self.cache_size = max(1, int(cache_size))
        self._blob = np.empty((0, 3) + self.input_hw, self.dtype)
        self._slot_geometry: dict[int, Transform] = {}
        # per resized size (h, w), least recently used first: the resized HWC image and its planes
        self._buffers: OrderedDict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = OrderedDict()

    def _batch_blob(self, batch: int) -> np.ndarray:
        if batch > len(self._blob):
            self._blob = np.full((batch, 3) + self.input_hw, self.pad, self.dtype)
            self._slot_geometry.clear()
        return self._blob[:batch]

    def __call__(self, images: Sequence[tuple[np.ndarray, str]], batch: int = 0) -> tuple[np.ndarray, list[Transform]]:
        """images: (H x W x 3 uint8, "rgb"|"bgr") pairs. batch > len(images) pads with empty slots.

        The returned tensor is a buffer owned by this object: valid until the next call.
        """
        n = len(images)
        batch = max(batch, n)
        if n == 0:
            raise InputError("no images to preprocess")
        blob = self._batch_blob(batch)
        transforms = []
        for i, (pixels, order) in enumerate(images):
            if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
                raise InputError(f"expected an H x W x 3 uint8 image, got {pixels.shape} {pixels.dtype}")
            t = make_transform(pixels.shape[:2], self.input_hw, self.mode)
            self._write(blob, i, pixels, order, t)
            transforms.append(t)
        for i in range(n, batch):  # empty slots of a fixed-batch model: padding only
            if self._slot_geometry.pop(i, None) is not None:
                blob[i] = self.pad
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
