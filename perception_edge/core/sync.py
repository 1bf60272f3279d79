"""Multi-camera frame synchronization and the depth-1 handoff to the inference worker (no ROS imports).

FrameSync keeps only the newest unused frame of each camera (depth 1) and forms a Batch as soon as
every live camera has a frame and their header stamps lie within `slop` of each other. Nothing
queues: a frame that cannot be used any more (replaced by a newer one, too old to match, or from a
camera that is left out) is counted as dropped.

Two kinds of camera are left out of the batches, so that they never stop the others. Both are
decided when a frame has waited `stale_timeout` (timed from the first frame since the last batch,
not from any camera's last frame, so cameras slower than 1 / stale_timeout -- a replay in lockstep,
a 1 Hz rig -- still batch together):

* stale: a camera that has no frame for the waiting one and has sent nothing for stale_timeout
  (its last frame may have been dropped as too old during the wait). It rejoins with its next frame.
* skewed: a camera that did send, but whose stamps cannot be matched within the slop (an
  unsynchronized camera clock, a driver stamping at exposure instead of receipt, a bag replayed next
  to live cameras). Cameras are compared by their stamp-to-arrival offset (stamp minus arrival
  time), which does not depend on when in its period each camera's last frame came. Each camera's
  offset is the largest of its last few frames' (the quickest delivery), so delivery jitter and
  stalls do not count as skew. The largest group whose offsets lie within the slop of each other
  keeps batching (ties: the group whose stamps agree best with the receiver's clock,
  `Frame.received`, else the earlier camera in the list); a camera whose offset is more than the
  slop from that group's median is left out, with the offset seen. That includes a camera whose
  frames arrive later than the others' by more than the slop: with the newest frame per camera it
  cannot be matched either. A skewed camera rejoins once a frame's offset is within the slop of
  the batching cameras' again; until then its frames are dropped on arrival. A skewed camera that
  falls silent is reported stale instead.

LatestSlot hands batches from the subscription side to the worker thread: put() never blocks, a
newer batch replaces an unconsumed one (counted as dropped), get() waits on a condition variable.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, TypeVar

import numpy as np

NS_PER_S = 1_000_000_000
RECENT_OFFSETS = 8  # frames per camera whose stamp-to-arrival offsets judge whether it is out of step


@dataclass
class Frame:
    """One camera image ready for the models.

    stamp is the source header stamp in integer nanoseconds (exact, so the stamp published with the
    results equals the camera's); arrival is the receiving clock's time in seconds (monotonic by
    default), filled in by FrameSync.add when left as None; received is the receiver's clock in the
    stamps' time base (ROS time, or sim time) at arrival, in ns, when known.
    """

    pixels: np.ndarray  # H x W x 3 uint8 (possibly a read-only view over the message buffer)
    order: str  # "rgb" | "bgr"
    stamp: int  # header stamp, ns
    frame_id: str
    camera: str  # the camera's topic
    arrival: float | None = None
    convert_ms: float = 0.0  # time spent turning the message into pixels
    received: int | None = None  # receiver's clock at arrival, ns, same time base as stamp

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
    skewed: list[str] = field(default_factory=list)  # cameras left out because their stamps never match

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
    dropped: int = 0  # frames that never made it into a batch (replaced, unmatched, camera left out)
    stale: int = 0  # times the camera went silent for longer than stale_timeout
    batched: int = 0  # frames that went into a batch
    is_stale: bool = False
    last_arrival: float | None = None  # None: nothing received yet
    last_stamp: int | None = None
    is_skewed: bool = False  # left out: its stamps cannot be matched within the slop
    skewed: int = 0  # times the camera was left out for its stamps
    offset: float | None = None  # s, its stamps against the batching cameras' (+: ahead), when judged
    last_offset_ns: int | None = None  # stamp minus arrival of its last frame (arrival clock's epoch)
    interval: float = 0.0  # s between its last two frames

    @property
    def waiting(self) -> int:
        """Frames received but neither batched nor dropped yet (0 or 1)."""
        return self.received - self.batched - self.dropped

    def copy(self) -> CameraStats:
        return CameraStats(**self.__dict__)


def _median(values: list[int]) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


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
        self._received_offset: dict[str, int | None] = {c: None for c in self.cameras}  # stamp - received
        self._offsets: dict[str, collections.deque[int]] = {c: collections.deque(maxlen=RECENT_OFFSETS)
                                                            for c in self.cameras}  # stamp - arrival, ns
        self._started = clock()
        self._waiting_since: float | None = None  # arrival of the first frame since the last batch
        self.batches = 0
        self.last_batch: float | None = None  # clock time of the last batch

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
            if st.last_arrival is not None:
                st.interval = now - st.last_arrival
            st.last_arrival = now
            st.is_stale = False
            st.last_offset_ns = frame.stamp - int(round(frame.arrival * NS_PER_S))
            self._offsets[frame.camera].append(st.last_offset_ns)
            if frame.received is not None:
                self._received_offset[frame.camera] = frame.stamp - frame.received
            if st.is_skewed and not self._rejoins(frame.camera, now):
                st.dropped += 1  # still out of step with the batching cameras
                st.last_stamp = frame.stamp
                return self._try_batch(now)
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
            self._update(self._clock())
            return {c: s.copy() for c, s in self._stats.items()}

    def stale_cameras(self) -> list[str]:
        with self._lock:
            self._update(self._clock())
            return [c for c in self.cameras if self._stats[c].is_stale]

    def skewed_cameras(self) -> list[str]:
        with self._lock:
            self._update(self._clock())
            return [c for c in self.cameras if self._stats[c].is_skewed]

    def silence(self, camera: str) -> float:
        """Seconds since the camera's last frame arrived (since start-up when none has)."""
        with self._lock:
            last = self._stats[camera].last_arrival
            return self._clock() - (self._started if last is None else last)

    def waiting_for(self) -> float:
        """Seconds the oldest frame since the last batch has waited (0 when none waits)."""
        with self._lock:
            return 0.0 if self._waiting_since is None else self._clock() - self._waiting_since

    # -- internals (lock held) --------------------------------------------------------------------
    def _live(self) -> list[str]:
        return [c for c in self.cameras if not (self._stats[c].is_stale or self._stats[c].is_skewed)]

    def _update(self, now: float) -> None:
        """Once a frame has waited stale_timeout: leave out who it waits for (see the module doc)."""
        for cam in self.cameras:  # a skewed camera that fell silent is stale, not out of step
            st = self._stats[cam]
            if st.is_skewed and self._silent(cam, now):
                st.is_skewed, st.is_stale = False, True
                st.stale += 1
        ws = self._waiting_since
        if ws is None or now - ws <= self.stale_timeout:
            return
        sending = []
        for cam in self._live():
            st = self._stats[cam]
            if self._pending[cam] is None and (st.last_arrival is None or now - st.last_arrival > self.stale_timeout):
                st.is_stale = True  # has nothing for the waiting frame, and sent nothing for stale_timeout
                st.stale += 1
            else:
                sending.append(cam)
        if len(sending) > 1:
            self._leave_out_unmatched(sending)
        if not self._live():  # nobody left to be out of step with: the skewed cameras batch alone
            for st in self._stats.values():
                st.is_skewed = False

    def _offset(self, camera: str) -> int | None:
        """The camera's stamp-to-arrival offset: the largest of its recent frames' (the quickest
        delivery; later deliveries only lower it)."""
        recent = self._offsets[camera]
        return max(recent) if recent else None

    def _leave_out_unmatched(self, cameras: list[str]) -> None:
        offsets = {c: self._offset(c) for c in cameras}
        known = sorted((c for c in cameras if offsets[c] is not None), key=lambda c: offsets[c])  # type: ignore
        best: list[str] = []
        best_key: tuple = ()
        lo = 0
        for hi in range(len(known)):  # windows of width slop over the sorted offsets
            while offsets[known[hi]] - offsets[known[lo]] > self.slop_ns:  # type: ignore[operator]
                lo += 1
            group = known[lo:hi + 1]
            key = (len(group), -self._clock_disagreement(group), -min(self.cameras.index(c) for c in group))
            if key > best_key:
                best, best_key = group, key
        if len(best) == len(cameras) or not best:
            return  # they match: nothing to leave out (a batch forms, or the sync is only behind)
        reference = _median([offsets[c] for c in best])  # type: ignore[misc]
        for cam in cameras:
            off = offsets[cam]
            if cam in best or off is None or abs(off - reference) <= self.slop_ns:
                continue
            st = self._stats[cam]
            st.is_skewed = True
            st.skewed += 1
            st.offset = (off - reference) / NS_PER_S
            if self._pending[cam] is not None:
                self._pending[cam] = None
                st.dropped += 1

    def _clock_disagreement(self, group: list[str]) -> float:
        """How far a group's stamps are from the receiver's clock (0 when it is not known)."""
        known = [abs(v) for v in (self._received_offset[c] for c in group) if v is not None]
        return _median(known) if known else 0.0

    def _rejoins(self, camera: str, now: float) -> bool:
        """A skewed camera whose newest frame's offset is within the slop of the batching cameras',
        or whose batching cameras have all fallen silent (it batches alone then)."""
        st = self._stats[camera]
        known = [self._offset(c) for c in self._live() if not self._silent(c, now)]
        diff = st.last_offset_ns - _median(known) if known else 0  # type: ignore[operator,type-var]
        st.offset = diff / NS_PER_S
        if abs(diff) <= self.slop_ns:
            st.is_skewed = False
            self._offsets[camera].clear()
            self._offsets[camera].append(st.last_offset_ns)  # type: ignore[arg-type]
            return True
        return False

    def _silent(self, camera: str, now: float) -> bool:
        """Nothing for stale_timeout and for twice the camera's own last frame interval."""
        st = self._stats[camera]
        if st.last_arrival is None:
            return True
        return now - st.last_arrival > max(self.stale_timeout, 2 * st.interval)

    def _try_batch(self, now: float) -> Batch | None:
        self._update(now)
        live = self._live()
        if not live:
            return None
        frames = [self._pending[c] for c in live]
        if any(f is None for f in frames):
            return None  # wait for the live cameras that have nothing yet (at most stale_timeout)
        stamps = [f.stamp for f in frames]  # type: ignore[union-attr]
        if max(stamps) - min(stamps) > self.slop_ns:
            # The oldest frame cannot match anything newer the others will send: drop it and wait
            # for that camera's next frame (the wait goes on: see _update).
            oldest = live[stamps.index(min(stamps))]
            self._pending[oldest] = None
            self._stats[oldest].dropped += 1
            return None
        for c in live:
            self._pending[c] = None
            self._stats[c].batched += 1
        self._waiting_since = None
        self.batches += 1
        self.last_batch = now
        stale = [c for c in self.cameras if self._stats[c].is_stale]
        skewed = [c for c in self.cameras if self._stats[c].is_skewed]
        return Batch(frames=frames, stale=stale, created=now, skewed=skewed)  # type: ignore[arg-type]


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
