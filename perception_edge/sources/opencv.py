"""Sources for machines without GStreamer: OpenCV VideoCapture (files, devices, RTSP through OpenCV's
FFmpeg backend) and an image folder / GIF / single image played as a camera.

    opencv:<anything VideoCapture opens>   (opencv:0, opencv:/dev/video0, opencv:rtsp://..., opencv:/a.mp4)
    images:/path/to/folder | a .gif | an image file   (or any file:// or path to a folder / GIF / image)

Frames are stamped with the NowNs clock when read (OpenCV gives no capture clock for live devices).
A file or folder is paced at its own rate (the video's fps, the GIF's frame delays; `fps` for a
folder, default 10), so it behaves like a camera; it ends, or loops with loop=True. A live capture
that fails is reopened with exponential backoff.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from perception_edge.core.errors import ConfigError
from perception_edge.sources.base import Backoff, CapturedFrame, NowNs, Source, wall_ns

DEFAULT_FOLDER_FPS = 10.0
PRELOAD_BYTES = 256 << 20  # folders whose decoded frames fit in this are decoded once, at open()


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    if width and height and (pixels.shape[1], pixels.shape[0]) != (width, height):
        return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    return pixels


class _Pacer:
    """Hands frames out at their presentation times (relative to the first), like a live camera."""

    def __init__(self):
        self.t0: float | None = None

    def wait(self, at_s: float, closed: threading.Event, timeout: float) -> bool:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now - at_s
        delay = self.t0 + at_s - now
        if delay > timeout:
            closed.wait(timeout)
            return False
        if delay > 0:
            closed.wait(delay)
        return True

    def restart(self) -> None:
        self.t0 = None


class OpenCVSource(Source):
    backend = "opencv"

    def __init__(self, target: str, name: str = "", width: int = 0, height: int = 0, fps: float = 0.0,
                 loop: bool = False, reconnect_max_s: float = 10.0, now_ns: NowNs = wall_ns):
        super().__init__(target, name, now_ns)
        self.target = target
        self.width, self.height, self.fps, self.loop = width, height, fps, loop
        self.is_file = os.path.isfile(target)
        self.backoff = Backoff(0.5, reconnect_max_s)
        self._cap = None
        self._closed = threading.Event()
        self._pacer = _Pacer()
        self._connected_once = False
        self._last_ms = -1.0
        self._loop_offset = 0.0

    def _capture(self):
        target: str | int = int(self.target) if self.target.isdigit() else self.target
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # live devices: keep one frame (where the backend supports it)
        if not self.is_file:
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def open(self) -> None:
        self._closed.clear()
        self._set(pipeline=f"cv2.VideoCapture({self.target!r})", state="opening")
        self._cap = self._capture()
        if self._cap is None:
            if self.is_file:
                raise ConfigError(f"{self.name}: OpenCV cannot open {self.target}")
            delay = self.backoff.failed()
            self._set(state="reconnecting", last_error=f"OpenCV cannot open {self.target} (retrying in {delay:.1f} s)")

    def read(self, timeout: float = 0.5) -> CapturedFrame | None:
        if self._closed.is_set():
            time.sleep(timeout)
            return None
        if self._cap is None:
            if self.is_file or not self.backoff.ready():
                self._closed.wait(timeout)
                return None
            self._cap = self._capture()
            if self._cap is None:
                delay = self.backoff.failed()
                self._set(state="reconnecting", last_error=f"OpenCV cannot open {self.target} (retrying in {delay:.1f} s)")
                return None
        t0 = time.perf_counter()
        ok, pixels = self._cap.read()
        if not ok or pixels is None:
            if self.is_file and self.loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._loop_offset = self._last_ms / 1000.0 + 1.0 / max(self.fps or 30.0, 1.0)
                ok, pixels = self._cap.read()
            if not ok or pixels is None:
                self._cap.release()
                self._cap = None
                if self.is_file:
                    self._set(state="ended")
                else:
                    delay = self.backoff.failed()
                    self._set(state="reconnecting", last_error=f"no frame from {self.target} (retrying in {delay:.1f} s)")
                return None
        if self.is_file:  # play at the file's own rate
            ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            at = self._loop_offset + ms / 1000.0
            self._last_ms = at * 1000.0
            self._pacer.wait(at, self._closed, 3600.0)
        if pixels.ndim == 2:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        pixels = _resize(pixels, self.width, self.height)
        read_ms = (time.perf_counter() - t0) * 1e3
        if not self._connected_once or self.status().state != "running":
            if self._connected_once:
                self._count(reconnects=1)
            self._connected_once = True
            self.backoff.reset()
            self._set(state="running", last_error="")
        self._count(frames=1)
        self._set(width=pixels.shape[1], height=pixels.shape[0])
        return CapturedFrame(pixels, "bgr", self._monotonic_stamp(self.now_ns()), read_ms)

    def close(self) -> None:
        self._closed.set()
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._set(state="closed")


class ImageFolderSource(Source):
    """A folder of images (sorted by name, `fps` frames a second), a GIF (its own frame delays) or one
    image, played as a camera. Small folders (PRELOAD_BYTES decoded) and GIFs are decoded once at
    open(); larger folders one image per frame."""

    backend = "images"

    def __init__(self, path: str, name: str = "", width: int = 0, height: int = 0, fps: float = 0.0,
                 loop: bool = False, now_ns: NowNs = wall_ns):
        super().__init__(path, name, now_ns)
        self.path = path
        self.width, self.height, self.loop = width, height, loop
        self.fps = fps
        self._frames: list[tuple[float, np.ndarray]] = []  # (presentation time s, pixels)
        self._files: list[Path] = []
        self._index = 0
        self._lap = 0.0
        self._closed = threading.Event()
        self._pacer = _Pacer()

    def open(self) -> None:
        from perception_edge.data.frame_sources import image_files, iter_frames, source_kind

        self._closed.clear()
        path = Path(self.path)
        if not path.exists():
            raise ConfigError(f"{self.name}: not found: {self.path}")
        kind = source_kind(self.path)
        if kind == "folder":
            self._files = image_files(self.path)
            if not self._files:
                raise ConfigError(f"{self.name}: no images in folder {self.path}")
            period = 1.0 / (self.fps or DEFAULT_FOLDER_FPS)
            self._times = [i * period for i in range(len(self._files))]
            self._lap = len(self._files) * period
            first = _resize(cv2.imread(str(self._files[0]), cv2.IMREAD_COLOR), self.width, self.height)
            if first is not None and first.nbytes * len(self._files) <= PRELOAD_BYTES:
                # a small folder is decoded once: no image decoding competes with the models per frame
                self._frames = [(t, _resize(cv2.imread(str(f), cv2.IMREAD_COLOR), self.width, self.height))
                                for t, f in zip(self._times, self._files)]
                if any(p is None for _t, p in self._frames):
                    raise ConfigError(f"{self.name}: unreadable image in {self.path}")
                self._files = []
        elif kind in ("image", "video"):
            # a GIF or one image: small, decoded once; stamps from the container's frame timing
            frames = [(stamp, pixels) for pixels, _order, stamp, _n in iter_frames(self.path)]
            if not frames:
                raise ConfigError(f"{self.name}: no frames in {self.path}")
            if self.fps or len(frames) == 1:
                period = 1.0 / (self.fps or DEFAULT_FOLDER_FPS)
                frames = [(i * period, p) for i, (_s, p) in enumerate(frames)]
            else:
                period = frames[-1][0] - frames[-2][0] if len(frames) > 1 else 0.1
            self._frames = [(s, _resize(p, self.width, self.height)) for s, p in frames]
            self._times = [s for s, _ in self._frames]
            self._lap = self._times[-1] + max(period, 1e-3)
        else:
            raise ConfigError(f"{self.name}: {self.path} is a {kind}, not an image folder, GIF or image")
        self._set(pipeline=f"images {self.path} ({len(self._times)} frames)", state="running")

    def read(self, timeout: float = 0.5) -> CapturedFrame | None:
        if self._closed.is_set() or self._index < 0:
            self._closed.wait(timeout)
            return None
        laps, i = divmod(self._index, len(self._times))
        if laps and not self.loop:
            self._index = -1
            self._set(state="ended")
            return None
        if not self._pacer.wait(laps * self._lap + self._times[i], self._closed, timeout):
            return None
        t0 = time.perf_counter()
        if self._files:
            pixels = cv2.imread(str(self._files[i]), cv2.IMREAD_COLOR)
            if pixels is None:
                self._set(last_error=f"cannot read image {self._files[i]}")
                self._index += 1
                return None
            pixels = _resize(pixels, self.width, self.height)
        else:
            pixels = self._frames[i][1]
        self._index += 1
        self._count(frames=1)
        self._set(width=pixels.shape[1], height=pixels.shape[0])
        return CapturedFrame(pixels, "bgr", self._monotonic_stamp(self.now_ns()), (time.perf_counter() - t0) * 1e3)

    def close(self) -> None:
        self._closed.set()
        self._set(state="closed")


__all__ = ["OpenCVSource", "ImageFolderSource", "DEFAULT_FOLDER_FPS"]
