"""GStreamer camera/video source (PyGObject, `gi.repository.Gst`), read through an appsink that keeps
one buffer (max-buffers=1 drop=true): the newest decoded frame waits, older ones are dropped inside
GStreamer and counted (a pad probe counts what reaches the appsink).

Capture times: a buffer's PTS in running time plus the pipeline's base time is its capture time on
the pipeline clock; its age on that clock (clock now minus capture) is subtracted from the NowNs
clock (wall or ROS time), so the stamp is the capture time in ROS time without assuming the two
clocks share an epoch.

Failures: errors and end of stream come from the bus (polled on each read, no GLib main loop needed).
A live source (RTSP, V4L2, CSI, a live gst: pipeline) is torn down and rebuilt with exponential
backoff; a file ends, or restarts from the beginning with loop=True.
"""
from __future__ import annotations

import os
import threading
import time
from typing import AbstractSet

import numpy as np

from perception_edge.core.errors import ConfigError
from perception_edge.sources.base import Backoff, CapturedFrame, NowNs, Source, to_bgr, wall_ns
from perception_edge.sources.pipelines import (
    APPSINK_NAME, SINK_FORMATS, PipelineOptions, PipelineSpec, build_pipeline, split_uri)

APT_PACKAGES = ("gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
                "gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 "
                "gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev libcairo2-dev pkg-config")
INSTALL_HINT = (f"sudo apt-get install -y {APT_PACKAGES} && pip install 'PyGObject<3.52' "
                "(JetPack: sudo apt-get install python3-gi gir1.2-gst-plugins-base-1.0)")
MAX_AGE_NS = 10 * 1_000_000_000  # a capture time older than this (or in the future) is not trusted

_init_lock = threading.Lock()
_gst = None
_import_error: str | None = None


def _unwinder_first() -> None:
    """libgstreamer pulls in libunwind, whose _Unwind_* symbols then take the place of libgcc_s's for
    C++ libraries loaded later in the process (torch: its first C++ exception aborts it). libgcc_s
    made global first keeps the usual unwinder in front."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("gcc_s") or "libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass


def gst():
    """The initialised Gst module; ConfigError naming what to install when it is missing."""
    global _gst, _import_error
    with _init_lock:
        if _gst is None and _import_error is None:
            _unwinder_first()
            try:
                import gi

                gi.require_version("Gst", "1.0")
                gi.require_version("GstApp", "1.0")
                gi.require_version("GstVideo", "1.0")
                gi.require_version("GstPbutils", "1.0")
                from gi.repository import Gst, GstApp, GstPbutils, GstVideo  # noqa: F401

                Gst.init(None)
                _gst = Gst
            except (ImportError, ValueError) as e:
                _import_error = f"GStreamer Python bindings not available ({e}); install: {INSTALL_HINT}"
        if _gst is None:
            raise ConfigError(_import_error or "GStreamer not available")
        return _gst


def unavailable_reason() -> str | None:
    """None when GStreamer and its bindings can be used here, else why not (with the install line)."""
    try:
        gst()
    except ConfigError as e:
        return str(e)
    return None


def element_factories() -> frozenset[str]:
    Gst = gst()
    return frozenset(f.get_name() for f in Gst.Registry.get().get_feature_list(Gst.ElementFactory))


def probe_codec(path: str, timeout_s: float = 5.0) -> str | None:
    """The codec of a file's first video stream (h264, h265, mjpeg), None when unknown."""
    Gst = gst()
    from gi.repository import GLib, GstPbutils

    try:
        discoverer = GstPbutils.Discoverer.new(int(timeout_s * Gst.SECOND))
        info = discoverer.discover_uri(Gst.filename_to_uri(os.path.abspath(path)))
    except GLib.Error:
        return None
    for stream in info.get_video_streams():
        caps = stream.get_caps()
        if caps is None or caps.get_size() == 0:
            continue
        name = caps.get_structure(0).get_name()
        return {"video/x-h264": "h264", "video/x-h265": "h265", "image/jpeg": "mjpeg"}.get(name)
    return None


ENCODERS = {"h264": "x264enc speed-preset=ultrafast tune=zerolatency key-int-max={fps} ! h264parse ! mp4mux",
            "h265": "x265enc speed-preset=ultrafast tune=zerolatency key-int-max={fps} ! h265parse ! matroskamux",
            "mjpeg": "jpegenc quality=90 ! avimux"}


def encode_video(path, frames_bgr, codec: str = "h264", fps: int = 10) -> None:
    """Write BGR frames (all one size) as a video, each 1/fps s long: H.264 MP4, H.265 MKV or MJPEG
    AVI (appsrc -> x264enc / x265enc / jpegenc -> muxer). For tests and benchmarks."""
    Gst = gst()
    h, w = frames_bgr[0].shape[:2]
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time block=true caps=video/x-raw,format=BGR,width={w},height={h},"
        f"framerate={fps}/1 ! videoconvert ! video/x-raw,format=I420 ! {ENCODERS[codec].format(fps=fps)} ! "
        f"filesink location=\"{path}\"")
    src = pipeline.get_by_name("src")
    pipeline.set_state(Gst.State.PLAYING)
    for i, frame in enumerate(frames_bgr):
        buf = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
        buf.pts, buf.duration = i * Gst.SECOND // fps, Gst.SECOND // fps
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    msg = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        why = msg.parse_error()[0].message if msg is not None else "timed out"
        raise ConfigError(f"could not encode {path}: {why}")


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else ""


class GstSource(Source):
    backend = "gstreamer"

    def __init__(self, uri: str, name: str = "", options: PipelineOptions = PipelineOptions(), loop: bool = False,
                 reconnect_max_s: float = 10.0, now_ns: NowNs = wall_ns,
                 factories: AbstractSet[str] | None = None):
        super().__init__(uri, name, now_ns)
        self.options = options
        self.loop = loop
        self.backoff = Backoff(0.5, reconnect_max_s)
        self._factories = factories
        self.spec: PipelineSpec | None = None
        self._pipeline = None
        self._sink = None
        self._bus = None
        self._arrived = 0  # buffers that reached the appsink (pad probe), over all pipelines
        self._pulled = 0
        self._closed = threading.Event()
        self._pipe_lock = threading.Lock()
        self._video_info = (None, None)  # (caps string, (width, height, stride, format))
        self._connected_once = False
        self._fresh = False

    # -- interface ----------------------------------------------------------------------------------
    def open(self) -> None:
        gst()
        scheme, location, frag = split_uri(self.uri)
        codec = None
        if scheme == "file":
            if not os.path.isfile(location):
                raise ConfigError(f"{self.name}: video file not found: {location}")
            if not frag:
                codec = probe_codec(location)
        factories = self._factories if self._factories is not None else element_factories()
        self.spec = build_pipeline(self.uri, factories, self.options, codec)
        self._set(pipeline=self.spec.description, state="opening")
        self._closed.clear()
        try:
            self._start()
        except ConfigError:
            raise
        except Exception as e:  # a state change that failed at once: a live source retries
            if not self.spec.live:
                raise ConfigError(f"{self.name}: {e}") from None
            self._failed(str(e))

    def read(self, timeout: float = 0.5) -> CapturedFrame | None:
        Gst = gst()
        if self._closed.is_set():
            time.sleep(timeout)
            return None
        sink = self._sink
        if sink is None:
            if self.spec is not None and self.spec.live and self.backoff.ready():
                try:
                    self._start()
                except Exception as e:
                    self._failed(str(e))
                return None
            time.sleep(min(timeout, max(0.0, self.backoff.next_try - time.monotonic())) or timeout)
            return None
        sample = sink.try_pull_sample(int(timeout * Gst.SECOND))
        self._poll_bus()
        if sample is None:
            return None
        try:
            return self._convert(sample)
        except Exception as e:  # caps the reader cannot take: a configuration error of this pipeline
            self._failed(f"cannot read frames: {type(e).__name__}: {_first_line(str(e))}", fatal=True)
            return None

    def close(self) -> None:
        self._closed.set()
        self._teardown()
        self._set(state="closed")

    def status(self):
        s = super().status()
        s.dropped = max(0, self._arrived - self._pulled - 1)
        return s

    # -- pipeline life ------------------------------------------------------------------------------
    def _start(self) -> None:
        Gst = gst()
        from gi.repository import GLib

        assert self.spec is not None
        try:
            pipeline = Gst.parse_launch(self.spec.description)
        except GLib.Error as e:
            raise ConfigError(f"{self.name}: cannot build the pipeline for {self.uri}: {_first_line(e.message)} "
                              f"(pipeline: {self.spec.description})") from None
        sink = pipeline.get_by_name(APPSINK_NAME) if hasattr(pipeline, "get_by_name") else None
        if sink is None:
            sink = self._find_appsink(pipeline)
        if sink is None:
            raise ConfigError(f"{self.name}: the pipeline has no appsink: {self.spec.description}")
        sink.set_property("max-buffers", 1)
        sink.set_property("drop", True)
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string(f"video/x-raw,format={{{','.join(SINK_FORMATS)}}}"))
        pad = sink.get_static_pad("sink")
        pad.add_probe(Gst.PadProbeType.BUFFER, self._on_buffer)
        bus = pipeline.get_bus()
        with self._pipe_lock:
            self._pipeline, self._sink, self._bus = pipeline, sink, bus
        result = pipeline.set_state(Gst.State.PLAYING)
        if result == Gst.StateChangeReturn.FAILURE:
            error = self._bus_error(bus) or "could not start (state change to PLAYING failed)"
            self._teardown()
            raise RuntimeError(error)
        self._fresh = True  # the first frame of this pipeline marks it running (and a reconnect)
        retrying = self._connected_once or self.backoff.delay > 0  # stays an error until a frame comes
        self._set(state="reconnecting" if retrying else "opening")

    def _find_appsink(self, pipeline):
        it = pipeline.iterate_recurse() if hasattr(pipeline, "iterate_recurse") else None
        if it is None:
            return None
        found = []
        it.foreach(lambda e: found.append(e) if e.get_factory() and e.get_factory().get_name() == "appsink" else None)
        return found[0] if found else None

    def _on_buffer(self, pad, info):
        self._arrived += 1
        return gst().PadProbeReturn.OK

    def _teardown(self) -> None:
        Gst = gst()
        with self._pipe_lock:
            pipeline, self._pipeline, self._sink, self._bus = self._pipeline, None, None, None
        if pipeline is not None:
            pipeline.set_state(Gst.State.NULL)

    def _failed(self, error: str, fatal: bool = False) -> None:
        """A pipeline error: tear down; a live source retries after the backoff."""
        self._teardown()
        message = _first_line(error)
        if self.spec is not None and self.spec.live and not fatal and not self._closed.is_set():
            delay = self.backoff.failed()
            self._set(state="reconnecting", last_error=f"{message} (retrying in {delay:.1f} s)")
        else:
            self._set(state="error", last_error=message)

    def _bus_error(self, bus) -> str | None:
        Gst = gst()
        msg = bus.timed_pop_filtered(0, Gst.MessageType.ERROR)
        if msg is None:
            return None
        err, _debug = msg.parse_error()
        return f"{msg.src.get_name() if msg.src else 'pipeline'}: {_first_line(err.message)} ({self._where()})"

    def _where(self) -> str:
        return self.spec.location if self.spec is not None else self.uri

    def _poll_bus(self) -> None:
        Gst = gst()
        bus = self._bus
        while bus is not None:
            msg = bus.timed_pop_filtered(0, Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is None:
                return
            if msg.type == Gst.MessageType.ERROR:
                err, _debug = msg.parse_error()
                self._failed(f"{msg.src.get_name() if msg.src else 'pipeline'}: {_first_line(err.message)} "
                             f"({self._where()})")
                return
            # end of stream
            if self.spec is not None and self.spec.live:
                self._failed(f"end of stream ({self._where()})")
                return
            if self.loop and self._pipeline is not None:
                self._pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
                with self._lock:
                    self._status.extra["loops"] = self._status.extra.get("loops", 0) + 1
                return
            self._teardown()
            self._set(state="ended")
            return

    # -- frames -------------------------------------------------------------------------------------
    def _geometry(self, sample, buf) -> tuple[int, int, int, str]:
        from gi.repository import GstVideo

        caps = sample.get_caps()
        key = caps.to_string()
        if self._video_info[0] != key:
            info = GstVideo.VideoInfo.new_from_caps(caps) if hasattr(GstVideo.VideoInfo, "new_from_caps") \
                else self._info_old(caps)
            self._video_info = (key, (info.width, info.height, info.stride[0], info.finfo.name))
        width, height, stride, fmt = self._video_info[1]
        meta = GstVideo.buffer_get_video_meta(buf)
        if meta is not None:
            stride = meta.stride[0]
        return width, height, stride, fmt

    @staticmethod
    def _info_old(caps):
        from gi.repository import GstVideo

        info = GstVideo.VideoInfo()
        info.from_caps(caps)
        return info

    def _convert(self, sample) -> CapturedFrame:
        Gst = gst()
        t0 = time.perf_counter()
        buf = sample.get_buffer()
        width, height, stride, fmt = self._geometry(sample, buf)
        data = np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8)
        pixels, order = to_bgr(data, width, height, stride, fmt)
        now = self.now_ns()
        age = None
        pipeline = self._pipeline
        if buf.pts != Gst.CLOCK_TIME_NONE and pipeline is not None:
            clock = pipeline.get_clock()
            running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            if clock is not None and running != Gst.CLOCK_TIME_NONE and running >= 0:
                age = clock.get_time() - (pipeline.get_base_time() + running)
        stamp = now - age if age is not None and 0 <= age < MAX_AGE_NS else now
        self._pulled += 1
        if self._fresh:
            if self._connected_once:
                self._count(reconnects=1)
            self._fresh = False
            self._connected_once = True
            self.backoff.reset()
            self._set(state="running", last_error="")
        self._count(frames=1)
        self._set(width=width, height=height)
        convert_ms = (time.perf_counter() - t0) * 1e3
        read_ms = (age / 1e6 if age is not None and 0 <= age < MAX_AGE_NS else 0.0)
        with self._lock:
            self._status.extra["convert_ms"] = convert_ms
        return CapturedFrame(pixels, order, self._monotonic_stamp(stamp), read_ms)


__all__ = ["GstSource", "encode_video", "gst", "unavailable_reason", "element_factories", "probe_codec", "INSTALL_HINT",
           "APT_PACKAGES"]
