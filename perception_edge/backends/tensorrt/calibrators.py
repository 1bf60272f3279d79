"""INT8 calibration for engine builds: the plan (which frames, how many, which calibrator), the
calibration-cache file with the digest of the input it came from, and the TensorRT calibrator that
feeds CalibrationBatches to the builder. Plan and cache are plain Python, tested without a GPU."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from perception_edge.core.calibration import CalibrationBatches
from perception_edge.core.files import atomic_write, digest_path, sha256_bytes


class CalibrationCache:
    """TensorRT's calibration cache file plus <cache>.json naming the calibration input it came from.

    read() returns the cache only when it was made from the expected input (expected_digest), so a
    cache left over from other frames or another model size is recalibrated, not silently reused.
    expected_digest=None (a cache given without frames) takes the file as it is.
    """

    def __init__(self, path: str, expected_digest: str | None = None):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.expected_digest = expected_digest
        self.note = ""  # why an existing cache was not used

    def read(self) -> bytes | None:
        if not self.path.is_file():
            return None
        if self.expected_digest is not None:
            try:
                meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            if meta.get("calibration_sha256") != self.expected_digest:
                self.note = (f"calibration cache {self.path} was made from other frames or settings; "
                             "recalibrating")
                return None
        data = self.path.read_bytes()
        return data or None

    def write(self, data: bytes) -> None:
        data = bytes(data)
        atomic_write(self.path, data)
        meta = {"calibration_sha256": self.expected_digest, "cache_sha256": sha256_bytes(data),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(self.meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class CalibrationPlan:
    source: str  # folder / video / rosbag, or "" when only a cache is given
    topic: str
    frames: int
    batch_size: int
    calibrator: str
    cache_path: str
    mode: str  # the runtime resize mode: letterbox | stretch
    input_hw: tuple[int, int]
    digest: str  # what the engine's calibration depends on: part of the cache key
    stride: int = 1

    @property
    def expected_cache_digest(self) -> str | None:
        return self.digest if self.source else None

    def record(self) -> dict[str, Any]:
        return {"source": str(Path(self.source).resolve()) if self.source else "", "topic": self.topic,
                "frames": self.frames, "batch_size": self.batch_size, "stride": self.stride,
                "cache": self.cache_path, "resize_mode": self.mode}


def calibration_digest(source: str, topic: str, frames: int, batch_size: int, mode: str,
                       input_hw: tuple[int, int], stride: int = 1) -> str:
    payload = {"source": digest_path(source), "topic": topic or "", "frames": frames, "batch": batch_size,
               "mode": mode, "input_hw": list(input_hw), "stride": stride}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_calibrator(trt, kind: str, batches: CalibrationBatches | None, cache: CalibrationCache, cuda,
                    batch_size: int, log: Callable[[str], None] = print):
    """An IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator that feeds `batches` and keeps `cache`."""
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self._batches = iter(batches) if batches is not None else iter(())
            self._alloc, self._ptr = None, 0
            self.error: BaseException | None = None  # exceptions cannot cross TensorRT: kept here
            self.count, self._last_log = 0, 0.0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names, *_):
            try:
                batch = next(self._batches)
                if self._alloc is None:
                    self._alloc, self._ptr = cuda.malloc(batch.nbytes)
                cuda.h2d(self._ptr, batch)
            except StopIteration:
                return None
            except Exception as e:
                self.error = e
                return None
            self.count += 1
            now = time.monotonic()
            if now - self._last_log >= 5.0 or self.count == 1:
                self._last_log = now
                log(f"  calibration batch {self.count} ({self.count * batch_size} frames)")
            return [self._ptr for _ in names]

        def read_calibration_cache(self):
            data = cache.read()
            if cache.note:
                log("  " + cache.note)
            if data:
                log(f"  using calibration cache {cache.path}")
            return data

        def write_calibration_cache(self, data):
            try:
                cache.write(bytes(data))
                log(f"  wrote calibration cache {cache.path}")
            except Exception as e:
                self.error = e

        def free(self):
            if self._alloc is not None:
                cuda.free(self._alloc)
                self._alloc = None

    return Calibrator()


__all__ = ["CalibrationCache", "CalibrationPlan", "calibration_digest", "make_calibrator"]
