"""The source interface: open, read the newest frame with its capture time, close, a status.

A Source is read from one thread (the node's capture thread for that camera). read(timeout) returns
the newest frame that arrived since the last read, or None (nothing new within the timeout, or the
source is down and waiting to reconnect); it never raises for a source that fails at run time: the
failure is in status() (state "error" with a one-line last_error) and the source reconnects with
exponential backoff when it is live. Nothing queues: each implementation keeps at most one frame.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from perception_edge.core.sync import Frame

NowNs = Callable[[], int]  # the clock capture times are given in (wall clock, or the node's ROS clock)


@dataclass
class CapturedFrame:
    pixels: np.ndarray  # H x W x 3 uint8
    order: str  # "bgr" | "rgb"
    stamp_ns: int  # capture time on the NowNs clock
    read_ms: float = 0.0  # capture -> handed out by read() (decode, conversion, buffering)

    def to_frame(self, camera: str, frame_id: str) -> Frame:
        return Frame(self.pixels, self.order, self.stamp_ns, frame_id, camera)


@dataclass
class SourceStatus:
    name: str
    uri: str
    backend: str  # gstreamer | opencv | images
    state: str = "closed"  # closed | opening | running | reconnecting | error | ended
    pipeline: str = ""
    frames: int = 0  # frames handed out by read()
    dropped: int = 0  # frames the source produced that nobody read (replaced by a newer one)
    reconnects: int = 0
    last_error: str = ""
    width: int = 0
    height: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Backoff:
    """Delays between reconnection attempts: first, 2x first, 4x ... up to maximum; reset on success."""

    def __init__(self, first: float = 0.5, maximum: float = 10.0):
        self.first, self.maximum = first, max(first, maximum)
        self.delay = 0.0
        self.next_try = 0.0

    def failed(self, now: float | None = None) -> float:
        self.delay = self.first if self.delay == 0.0 else min(self.maximum, self.delay * 2)
        self.next_try = (time.monotonic() if now is None else now) + self.delay
        return self.delay

    def ready(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.next_try

    def reset(self) -> None:
        self.delay = 0.0
        self.next_try = 0.0


def wall_ns() -> int:
    return time.time_ns()


class Source:
    """Base class: the status bookkeeping and stamps that never go backwards."""

    backend = "?"

    def __init__(self, uri: str, name: str = "", now_ns: NowNs = wall_ns):
        self.uri = uri
        self.name = name or uri
        self.now_ns = now_ns
        self._status = SourceStatus(self.name, uri, self.backend)
        self._lock = threading.Lock()
        self._last_stamp = -1

    # -- the interface ------------------------------------------------------------------------------
    def open(self) -> None:
        """Start capturing. Raises ConfigError (one line) when the source cannot be set up at all (an
        unknown scheme, a missing element or file); a live source that is merely unreachable opens
        and reports the failure in status() while it retries."""
        raise NotImplementedError

    def read(self, timeout: float = 0.5) -> CapturedFrame | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def status(self) -> SourceStatus:
        with self._lock:
            s = self._status
            return SourceStatus(**{**s.__dict__, "extra": dict(s.extra)})

    # -- helpers ------------------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def _count(self, frames: int = 0, dropped: int = 0, reconnects: int = 0) -> None:
        with self._lock:
            self._status.frames += frames
            self._status.dropped += dropped
            self._status.reconnects += reconnects

    def _monotonic_stamp(self, stamp_ns: int) -> int:
        """Stamps strictly increase (a clock step or a looped file never gives an older stamp)."""
        if stamp_ns <= self._last_stamp:
            stamp_ns = self._last_stamp + 1
        self._last_stamp = stamp_ns
        return stamp_ns

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_bgr(data: np.ndarray, width: int, height: int, stride: int, fmt: str) -> tuple[np.ndarray, str]:
    """Packed pixels of a GStreamer/V4L2 buffer (rows `stride` bytes apart) -> H x W x 3 (a view when
    the rows are 3 bytes per pixel; one cv2.cvtColor dropping the padding byte for 4)."""
    channels = 4 if fmt in ("BGRx", "BGRA", "RGBx", "RGBA") else 3
    rows = data[: stride * height].reshape(height, stride)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if channels == 3:
        order = "rgb" if fmt == "RGB" else "bgr"
        return (pixels if stride == width * 3 else np.ascontiguousarray(pixels)), order
    code = cv2.COLOR_BGRA2BGR if fmt.startswith("BGR") else cv2.COLOR_RGBA2RGB
    return cv2.cvtColor(pixels, code), ("bgr" if fmt.startswith("BGR") else "rgb")


__all__ = ["CapturedFrame", "SourceStatus", "Backoff", "Source", "NowNs", "wall_ns", "to_bgr"]
