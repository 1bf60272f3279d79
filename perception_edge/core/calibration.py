"""Calibration batches for INT8 quantization (TensorRT engines and ONNX Runtime QDQ models alike):
frames -> fixed-size NCHW batches through the runtime Preprocessor. numpy/OpenCV only."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from perception_edge.core.errors import ConfigError
from perception_edge.core.preprocess import Preprocessor


class CalibrationBatches:
    """Frames -> fixed-size NCHW batches through the runtime Preprocessor (same letterbox/stretch,
    scaling and channel order as in service, which is what the INT8 scales must describe).

    frames: (pixels, order, ...) tuples, as perception_edge.data.frame_sources yields them.
    TensorRT takes only full batches. A last partial batch is dropped (last="drop") unless it would be
    the only one, or filled by repeating its own frames (last="repeat"). Each yielded array is the
    preprocessor's buffer: valid until the next one is produced.
    """

    def __init__(self, frames: Iterable[Sequence[Any]], input_hw: tuple[int, int], batch_size: int,
                 max_frames: int | None = None, mode: str = "letterbox", dtype=np.float32,
                 last: str = "drop"):
        if batch_size < 1:
            raise ConfigError(f"calibration batch size must be >= 1, got {batch_size}")
        if last not in ("drop", "repeat"):
            raise ConfigError(f"last must be 'drop' or 'repeat', got {last!r}")
        self.frames = frames
        self.batch_size = int(batch_size)
        self.max_frames = max_frames
        self.last = last
        self.preprocess = Preprocessor(input_hw, dtype, mode=mode)
        self.shape = (self.batch_size, 3) + tuple(self.preprocess.input_hw)
        self.frames_used = 0  # frames that went into yielded batches (repeats counted once)
        self.batches = 0
        self.dropped = 0  # frames of a dropped partial batch
        self.repeated = 0  # slots filled by repeating frames

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.preprocess.dtype.itemsize

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list[tuple[np.ndarray, str]] = []
        seen = 0
        for frame in self.frames:
            if self.max_frames is not None and seen >= self.max_frames:
                break
            pending.append((frame[0], frame[1]))
            seen += 1
            if len(pending) == self.batch_size:
                yield self._batch(pending)
                self.frames_used += len(pending)
                pending = []
        if pending:
            if self.last == "repeat" or self.batches == 0:
                n = len(pending)
                filled = [pending[i % n] for i in range(self.batch_size)]
                self.repeated += self.batch_size - n
                self.frames_used += n
                yield self._batch(filled)
            else:
                self.dropped += len(pending)

    def _batch(self, images: list[tuple[np.ndarray, str]]) -> np.ndarray:
        blob, _ = self.preprocess(images, batch=self.batch_size)
        self.batches += 1
        return blob


__all__ = ["CalibrationBatches"]
