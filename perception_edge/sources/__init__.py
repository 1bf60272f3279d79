"""Camera sources (ROS-free): a camera, a stream or a file read into frames with their capture time.

One interface (sources/base.py: open, read the newest frame, close, status) and its
implementations: GStreamer (sources/gstreamer.py, pipelines from sources/pipelines.py, Jetson
hardware decoding when present), OpenCV VideoCapture and image folders / GIFs (sources/opencv.py).
`specs_from_config` reads the sources of a configuration (the parallel arrays of config.py) and
`open_source` picks the implementation for one:

    file:///x.mp4, rtsp://..., v4l2:///dev/videoN, csi://N, gst:...   GStreamer (backend auto|gstreamer);
                                                                     with backend opencv, or without
                                                                     GStreamer, OpenCV for file/rtsp/v4l2
    opencv:<target>                                                   OpenCV VideoCapture
    images:<folder|gif|image>, or a folder / .gif / image path        ImageFolderSource
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from perception_edge.core.errors import ConfigError
from perception_edge.sources.base import CapturedFrame, NowNs, Source, SourceStatus, wall_ns
from perception_edge.sources.pipelines import PipelineOptions, split_uri

IMAGE_LIKE = (".gif", ".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class SourceSpec:
    uri: str
    name: str  # camera namespace without the leading slash: cam_front
    frame_id: str
    fps: float = 0.0
    width: int = 0
    height: int = 0
    camera_info_url: str = ""

    @property
    def namespace(self) -> str:
        return "/" + self.name.strip("/")

    @property
    def topic(self) -> str:
        """The camera's image topic (also its name in the fusion node): /cam_front/image_raw."""
        return f"{self.namespace}/image_raw"

    @property
    def info_topic(self) -> str:
        return f"{self.namespace}/camera_info"


def _parse_size(text: str, where: str) -> tuple[int, int]:
    text = text.strip().lower()
    if not text:
        return 0, 0
    try:
        w, h = (int(v) for v in text.split("x"))
    except ValueError:
        raise ConfigError(f"{where}: size {text!r} is not WIDTHxHEIGHT (e.g. 1280x720)") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ConfigError(f"{where}: size {text!r} must be positive and even")
    return w, h


def _parse_fps(text: str, where: str) -> float:
    text = text.strip()
    if not text:
        return 0.0
    try:
        fps = float(text)
    except ValueError:
        raise ConfigError(f"{where}: fps {text!r} is not a number") from None
    if not 0.0 <= fps <= 1000.0:
        raise ConfigError(f"{where}: fps {text!r} is outside [0, 1000]")
    return fps


def specs_from_config(sources: Sequence[str], names: Sequence[str] = (), frame_ids: Sequence[str] = (),
                      fps: Sequence[str] = (), sizes: Sequence[str] = (),
                      camera_info_urls: Sequence[str] = ()) -> list[SourceSpec]:
    """The sources of a configuration: `sources` with its parallel arrays, each empty or one entry per
    source ("" in an entry: the default). Default names cam0, cam1, ...; frame ids <name>_optical_frame."""
    n = len(sources)
    arrays = {"source_names": names, "source.frame_ids": frame_ids, "source.fps": fps, "source.sizes": sizes,
              "source.camera_info_urls": camera_info_urls}
    for key, values in arrays.items():
        if len(values) not in (0, n):
            raise ConfigError(f"parameter {key}: {len(values)} entries for {n} sources (give one per source, "
                              "or none for the defaults)")
    specs, seen = [], set()
    for i, uri in enumerate(sources):
        if not uri.strip():
            raise ConfigError(f"parameter sources: entry {i} is empty")
        name = (names[i] if names else "").strip().strip("/") or f"cam{i}"
        if not all(part and (part[0].isalpha() or part[0] == "_") and part.replace("_", "").isalnum()
                   for part in name.split("/")):
            raise ConfigError(f"parameter source_names: {name!r} is not a valid namespace (letters, digits, _ and /)")
        if name in seen:
            raise ConfigError(f"parameter source_names: {name!r} is given to two sources")
        seen.add(name)
        where = f"source {name} ({uri})"
        w, h = _parse_size(sizes[i] if sizes else "", where)
        frame_id = (frame_ids[i] if frame_ids else "").strip() or f"{name.replace('/', '_')}_optical_frame"
        specs.append(SourceSpec(uri.strip(), name, frame_id, _parse_fps(fps[i] if fps else "", where), w, h,
                                (camera_info_urls[i] if camera_info_urls else "").strip()))
    return specs


def specs_of(cfg) -> list[SourceSpec]:
    """The sources of a config.Sections."""
    s = cfg.source
    return specs_from_config(cfg.sources, cfg.source_names, s.frame_ids, s.fps, s.sizes, s.camera_info_urls)


def backend_for(uri: str, backend: str = "auto") -> str:
    """gstreamer | opencv | images: which implementation reads this URI."""
    if uri.startswith("opencv:"):
        return "opencv"
    if uri.startswith("images:"):
        return "images"
    scheme, location, _frag = split_uri(uri)
    if scheme == "file" and (os.path.isdir(location) or location.lower().endswith(IMAGE_LIKE)):
        return "images"
    if scheme in ("gst", "csi"):
        return "gstreamer"
    if backend == "opencv":
        return "opencv"
    if backend == "auto":
        from perception_edge.sources.gstreamer import unavailable_reason

        if unavailable_reason() is not None:
            return "opencv"
    return "gstreamer"


def open_source(spec: SourceSpec, backend: str = "auto", latency_ms: int = 200, loop: bool = False,
                reconnect_max_s: float = 10.0, now_ns: NowNs = wall_ns, factories=None) -> Source:
    """The Source for a spec, not yet opened (call open(); it raises ConfigError for a source that cannot
    be set up)."""
    kind = backend_for(spec.uri, backend)
    if kind == "images":
        from perception_edge.sources.opencv import ImageFolderSource

        path = spec.uri[len("images:"):] if spec.uri.startswith("images:") else split_uri(spec.uri)[1]
        return ImageFolderSource(path, spec.name, spec.width, spec.height, spec.fps, loop, now_ns)
    if kind == "opencv":
        from perception_edge.sources.opencv import OpenCVSource

        target = spec.uri[len("opencv:"):] if spec.uri.startswith("opencv:") else spec.uri
        scheme, location, _frag = split_uri(target) if "://" in target else ("", target, "")
        if scheme in ("file", "v4l2"):
            target = location
        elif scheme == "csi":
            raise ConfigError(f"{spec.name}: csi:// cameras need GStreamer (nvarguscamerasrc)")
        return OpenCVSource(target, spec.name, spec.width, spec.height, spec.fps, loop, reconnect_max_s, now_ns)
    from perception_edge.sources.gstreamer import GstSource

    options = PipelineOptions(spec.width, spec.height, spec.fps, latency_ms)
    return GstSource(spec.uri, spec.name, options, loop, reconnect_max_s, now_ns, factories)


__all__ = ["CapturedFrame", "Source", "SourceStatus", "SourceSpec", "specs_from_config", "specs_of", "backend_for",
           "open_source", "PipelineOptions"]
