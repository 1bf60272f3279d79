"""Multi-camera frame synchronization and the depth-1 handoff to the inference worker (no ROS imports).

FrameSync keeps only the newest unused frame of each camera (depth 1) and forms a Batch as soon as
every live camera has a frame and their header stamps lie within `slop` of each other. When a
frame has waited `stale_timeout` for a live camera that sent nothing, that camera is stale: it
leaves the batches instead of stalling the others (they are no longer held for it), and rejoins
with its next frame. The wait is timed from the waiting frame, not from the silent camera's last
frame, so cameras publishing slower than 1 / stale_timeout (a replay in lockstep, a 1 Hz camera)
still batch together. Nothing queues: a frame that cannot be used
any more (replaced by a newer one, too old to match, or left behind by a stale camera) is counted
as dropped.

LatestSlot hands batches from the subscription side to the worker thread: put() never blocks, a
newer batch replaces an unconsumed one (counted as dropped), get() waits on a condition variable.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

import numpy as np

NS_PER_S = 1_000_000_000


@dataclass
class Frame:
    """One camera image ready for the models.

    stamp is the source header stamp in integer nanoseconds (exact, so the stamp published with the
    results equals the camera's); arrival is the receiving clock's time in seconds (monotonic by
    default), filled in by FrameSync.add when left as None.
    """

    pixels: np.ndarray  # H x W x 3 uint8 (possibly a read-only view over the message buffer)
    order: str  # "rgb" | "bgr"
    stamp: int  # header stamp, ns
    frame_id: str
    camera: str  # the camera's topic
    arrival: float | None = None
    convert_ms: float = 0.0  # time spent turning the message into pixels
    source: Any = None  # the source message, opaque here (the standalone fusion node republishes it)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the source image in pixels."""
        return self.width, self.height

    @property
    def stamp_sec(self) -> float:
        return self.stamp / NS_PER_S


@dataclass
class Batch:
    """Frames of different cameras taken at (about) the same time, in the order cameras were given."""

    frames: list[Frame]
    stale: list[str] = field(default_factory=list)  # cameras left out because they went silent
    created: float = 0.0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def cameras(self) -> list[str]:
        return [f.camera for f in self.frames]

    def images(self) -> list[tuple[np.ndarray, str]]:
        """(pixels, order) pairs: what Detector / Segmenter take."""
        return [(f.pixels, f.order) for f in self.frames]


@dataclass
class CameraStats:
    received: int = 0  # frames given to add()
    dropped: int = 0  # frames that never made it into a batch
    stale: int = 0  # times the camera went silent for longer than stale_timeout
    batched: int = 0  # frames that went into a batch
    is_stale: bool = False
    last_arrival: float | None = None  # None: nothing received yet
    last_stamp: int | None = None

    def copy(self) -> CameraStats:
        return CameraStats(**self.__dict__)


class FrameSync:
    """Approximate-time matching of the newest frame of each camera (thread-safe)."""

    def __init__(self, cameras: Iterable[str], slop: float, stale_timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self.cameras: list[str] = list(cameras)
        if not self.cameras:
            raise ValueError("FrameSync needs at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"duplicate cameras in {self.cameras}")
        if slop < 0 or stale_timeout <= 0:
            raise ValueError("slop must be >= 0 and stale_timeout > 0")
        self.slop_ns = int(round(slop * NS_PER_S))
        self.stale_timeout = float(stale_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Frame | None] = {c: None for c in self.cameras}
        self._stats: dict[str, CameraStats] = {c: CameraStats() for c in self.cameras}
        self._started = clock()
        self._waiting_since: float | None = None  # arrival of the oldest frame waiting for a batch
        self.batches = 0

    # -- input ------------------------------------------------------------------------------------
    def add(self, frame: Frame) -> Batch | None:
        """Take a camera's newest frame; returns a Batch when one is complete."""
        if frame.camera not in self._pending:
            raise KeyError(f"unknown camera {frame.camera!r}; expected one of {self.cameras}")
        with self._lock:
            now = self._clock()
            if frame.arrival is None:
                frame.arrival = now
            st = self._stats[frame.camera]
            st.received += 1
            st.last_arrival = now
            st.is_stale = False
            pending = self._pending[frame.camera]
            if pending is not None and frame.stamp < pending.stamp:
                st.dropped += 1  # arrived out of order: the pending frame is newer, keep it
            else:
                if pending is not None:
                    st.dropped += 1  # replaced before it was used
                self._pending[frame.camera] = frame
                st.last_stamp = frame.stamp
                if self._waiting_since is None:
                    self._waiting_since = now
            return self._try_batch(now)

    def poll(self) -> Batch | None:
        """Re-check without a new frame (call periodically): a camera may have gone stale, which
        can complete a batch of the others."""
        with self._lock:
            return self._try_batch(self._clock())

    # -- state ------------------------------------------------------------------------------------
    def stats(self) -> dict[str, CameraStats]:
        """A snapshot of each camera's counters (stale state brought up to date)."""
        with self._lock:
            self._update_stale(self._clock())
            return {c: s.copy() for c, s in self._stats.items()}

    def stale_cameras(self) -> list[str]:
        with self._lock:
            self._update_stale(self._clock())
            return [c for c in self.cameras if self._stats[c].is_stale]

    def silence(self, camera: str) -> float:
        """Seconds since the camera's last frame arrived (since start-up when none has)."""
        with self._lock:
            last = self._stats[camera].last_arrival
            return self._clock() - (self._started if last is None else last)

    # -- internals (lock held) --------------------------------------------------------------------
    def _update_stale(self, now: float) -> None:
        if self._waiting_since is None or now - self._waiting_since <= self.stale_timeout:
            return
        for cam in self.cameras:  # a frame waited too long: whoever it waits for is stale
            st = self._stats[cam]
            if not st.is_stale and self._pending[cam] is None:
                st.is_stale = True
                st.stale += 1

    def _rewait(self) -> None:
        arrivals = [f.arrival for f in self._pending.values() if f is not None]
        self._waiting_since = min(arrivals) if arrivals else None

    def _try_batch(self, now: float) -> Batch | None:
        self._update_stale(now)
        live = [c for c in self.cameras if not self._stats[c].is_stale]
        if not live:
            return None
        frames = [self._pending[c] for c in live]
        if any(f is None for f in frames):
            return None  # wait for the live cameras that have nothing yet (at most stale_timeout)
        stamps = [f.stamp for f in frames]
        if max(stamps) - min(stamps) > self.slop_ns:
            # The oldest frame cannot match anything newer the others will send: drop it and wait
            # for that camera's next frame.
            oldest = live[stamps.index(min(stamps))]
            self._pending[oldest] = None
            self._stats[oldest].dropped += 1
            self._rewait()
            return None
        for c in live:
            self._pending[c] = None
            self._stats[c].batched += 1
        self._rewait()
        self.batches += 1
        stale = [c for c in self.cameras if self._stats[c].is_stale]
        return Batch(frames=frames, stale=stale, created=now)  # type: ignore[arg-type]


T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Depth-1 handoff between threads: put() never blocks and replaces an unconsumed item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.put_count = 0
        self.taken = 0
        self.dropped = 0  # items replaced before the consumer took them

    def put(self, item: T) -> bool:
        """Offer the newest item; returns True when it replaced one that was never taken.
        Ignored once closed."""
        with self._cond:
            if self._closed:
                return False
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item = item
            self._full = True
            self.put_count += 1
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to timeout seconds (None: forever); None on time-out or close."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self.taken += 1
            return item

    def close(self) -> None:
        """Wake every waiting get(); later puts are ignored."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return 1 if self._full else 0
