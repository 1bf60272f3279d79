"""GStreamer pipeline descriptions from a source URI: a pure function of the URI, the options and the
set of element factories present (no GStreamer import), so the Jetson strings are testable anywhere.

    file:///path/video.mp4[#h264|#h265|#mjpeg]   MP4/MOV (qtdemux), MKV/WebM (matroskademux), AVI (avidemux)
    rtsp://host:port/path[#h264|#h265][,udp]    rtspsrc latency=<ms>, H.264 unless the fragment says H.265;
                                                RTP over the RTSP TCP connection unless it says udp
    v4l2:///dev/videoN[#yuyv|#mjpeg]            raw YUYV (default) or MJPEG from a V4L2 device
    csi://N                                     Jetson CSI camera N (nvarguscamerasrc ! nvvidconv)
    gst:<description ending in an appsink>      the user's own pipeline

The URI fragment (never sent to a server) names the codec where the URI cannot: a file's codec is
otherwise found by the caller (GstPbutils.Discoverer) and passed as `codec`; an unknown codec falls
back to decodebin. Decoders: Jetson hardware elements (nvv4l2decoder, nvjpegdec + nvvidconv) when
their factories exist, else software (avdec_h264 / avdec_h265, jpegdec, videoconvert). Hardware
paths end in nvvidconv -> BGRx (the reader drops the 4th byte in one cv2.cvtColor: cheaper than a
videoconvert to BGR on the CPU); software paths end in videoconvert -> BGR.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import AbstractSet

from perception_edge.core.errors import ConfigError

APPSINK_NAME = "perception_sink"
# formats the reader accepts (3 bytes per pixel: as is; 4: the padding byte dropped)
SINK_FORMATS = ("BGR", "RGB", "BGRx", "BGRA", "RGBx", "RGBA")
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".3gp": "qtdemux",
            ".mkv": "matroskademux", ".webm": "matroskademux", ".avi": "avidemux"}
CODECS = ("h264", "h265", "mjpeg")
PARSERS = {"h264": "h264parse", "h265": "h265parse", "mjpeg": "jpegparse"}
DEPAYLOADERS = {"h264": "rtph264depay", "h265": "rtph265depay", "mjpeg": "rtpjpegdepay"}
SOFTWARE_DECODERS = {"h264": "avdec_h264", "h265": "avdec_h265", "mjpeg": "jpegdec"}
SCHEMES = ("file", "rtsp", "rtsps", "v4l2", "csi", "gst")
TRANSPORTS = ("tcp", "udp")  # RTSP: tcp (default: interleaved, no lost fragments of large frames) or udp


@dataclass(frozen=True)
class PipelineOptions:
    width: int = 0  # 0: the source's own size
    height: int = 0
    fps: float = 0.0  # 0: the source's own rate
    latency_ms: int = 200  # RTSP jitter buffer
    sync: bool | None = None  # appsink sync; None: true for files (played at their own rate), else false


@dataclass(frozen=True)
class PipelineSpec:
    description: str  # gst-launch syntax, ending in the appsink named APPSINK_NAME
    kind: str  # file | rtsp | v4l2 | csi | gst
    live: bool  # a live source: reconnect after an error or end of stream
    hardware: bool  # Jetson hardware decoding / conversion
    location: str  # the file, device or URL (for messages)


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, location, fragment): 'file:///a/b.mp4#h265' -> ('file', '/a/b.mp4', 'h265'); a plain
    path is a file; 'gst:...' keeps everything after the colon (no fragment)."""
    uri = uri.strip()
    if uri.startswith("gst:"):
        return "gst", uri[4:].strip(), ""
    if "://" not in uri:
        path, _, frag = uri.partition("#")
        return "file", path, frag.lower()
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    rest, _, frag = rest.partition("#")
    if scheme == "file":
        return scheme, urllib.parse.unquote(rest), frag.lower()
    if scheme in ("rtsp", "rtsps"):
        return scheme, f"{scheme}://{rest}", frag.lower()
    return scheme, rest, frag.lower()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fraction(fps: float) -> str:
    if float(fps).is_integer():
        return f"{int(fps)}/1"
    return f"{int(round(fps * 1000))}/1000"


def _codec(frag: str, given: str | None, default: str | None, uri: str) -> str | None:
    named = [t for t in frag.split(",") if t and t not in TRANSPORTS]
    codec = (named[0] if named else "") or given or default
    if codec in ("yuyv", "raw"):
        return "raw"
    if codec is not None and codec not in CODECS:
        raise ConfigError(f"{uri}: unknown codec {codec!r} (one of {', '.join(CODECS)})")
    return codec


def _convert_tail(hardware: bool, opts: PipelineOptions, sync: bool) -> str:
    """Scaling, rate limit and colour conversion after the decoder, then the appsink."""
    parts = []
    size = f",width={opts.width},height={opts.height}" if opts.width and opts.height else ""
    if opts.fps:
        parts.append(f"videorate drop-only=true max-rate={max(1, int(round(opts.fps)))}")
    if hardware:
        parts.append(f"nvvidconv ! video/x-raw,format=BGRx{size}")
    else:
        if size:
            parts.append(f"videoscale ! video/x-raw{size}")
        parts.append("videoconvert ! video/x-raw,format=BGR")
    parts.append(appsink(sync))
    return " ! ".join(parts)


def appsink(sync: bool) -> str:
    return (f"appsink name={APPSINK_NAME} max-buffers=1 drop=true sync={'true' if sync else 'false'} "
            "emit-signals=false enable-last-sample=false")


def _decoder(codec: str, factories: AbstractSet[str]) -> tuple[str, bool]:
    """(decoder elements, hardware) for a parsed stream of this codec."""
    if codec in ("h264", "h265") and {"nvv4l2decoder", "nvvidconv"} <= factories:
        return "nvv4l2decoder", True
    if codec == "mjpeg" and {"nvjpegdec", "nvvidconv"} <= factories:
        return "nvjpegdec", True
    return SOFTWARE_DECODERS[codec], False


def _need(factories: AbstractSet[str], uri: str, *names: str) -> None:
    missing = [n for n in names if n not in factories]
    if missing:
        raise ConfigError(f"{uri}: GStreamer element {', '.join(missing)} not found "
                          f"({_install_hint(missing)})")


def _install_hint(missing) -> str:
    if any(n.startswith("nv") for n in missing):
        return "Jetson multimedia plugins: JetPack's nvidia-l4t-gstreamer"
    if any(n.startswith("avdec") for n in missing):
        return "apt-get install gstreamer1.0-libav"
    if any(n in ("x264enc", "rtspsrc", "jpegdec", "qtdemux", "matroskademux", "avidemux", "v4l2src",
                 "rtph264depay", "rtph265depay", "rtpjpegdec") for n in missing):
        return "apt-get install gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
    return "apt-get install gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


def build_pipeline(uri: str, factories: AbstractSet[str], options: PipelineOptions = PipelineOptions(),
                   codec: str | None = None) -> PipelineSpec:
    """The pipeline description for `uri` given the element factories present. ConfigError (one line,
    naming the URI and the missing element) when it cannot be built."""
    scheme, location, frag = split_uri(uri)
    if scheme not in SCHEMES:
        raise ConfigError(f"{uri}: unknown source scheme {scheme!r} (one of file://, rtsp://, v4l2://, csi://, gst:)")
    opts = options
    if scheme == "gst":
        if not location:
            raise ConfigError(f"{uri}: empty pipeline description after gst:")
        last = location.rsplit("!", 1)[-1].strip()
        if not last.startswith("appsink"):
            raise ConfigError(f"{uri}: a gst: pipeline must end in an appsink (it ends in {last.split()[0]!r})")
        if " name=" not in f" {last}":
            location = location[: len(location) - len(last)] + last.replace("appsink", f"appsink name={APPSINK_NAME}", 1)
        return PipelineSpec(location, "gst", live="is-live=true" in location or "rtspsrc" in location
                            or "v4l2src" in location or "nvarguscamerasrc" in location, hardware="nvv" in location,
                            location=location)
    if scheme == "file":
        if not location:
            raise ConfigError(f"{uri}: no file path")
        suffix = os.path.splitext(location)[1].lower()
        codec = _codec(frag, codec, None, uri)
        demux = DEMUXERS.get(suffix)
        sync = True if opts.sync is None else opts.sync
        src = f"filesrc location={_quote(location)}"
        if demux is None or codec is None or codec == "raw":
            _need(factories, uri, "decodebin", "videoconvert")
            desc = f"{src} ! decodebin ! {_convert_tail(False, opts, sync)}"
            return PipelineSpec(desc, "file", live=False, hardware=False, location=location)
        decoder, hw = _decoder(codec, factories)
        _need(factories, uri, demux, PARSERS[codec], decoder, *(() if hw else ("videoconvert",)))
        desc = f"{src} ! {demux} ! queue max-size-buffers=4 ! {PARSERS[codec]} ! {decoder} ! {_convert_tail(hw, opts, sync)}"
        return PipelineSpec(desc, "file", live=False, hardware=hw, location=location)
    sync = False if opts.sync is None else opts.sync
    if scheme in ("rtsp", "rtsps"):
        codec = _codec(frag, codec, "h264", uri)
        if codec == "raw":
            raise ConfigError(f"{uri}: RTSP streams are h264, h265 or mjpeg")
        decoder, hw = _decoder(codec, factories)
        _need(factories, uri, "rtspsrc", DEPAYLOADERS[codec], PARSERS[codec], decoder)
        protocols = "udp" if "udp" in frag.split(",") else "tcp"
        desc = (f"rtspsrc location={_quote(location)} latency={int(opts.latency_ms)} protocols={protocols} ! "
                f"{DEPAYLOADERS[codec]} ! {PARSERS[codec]} ! {decoder} ! {_convert_tail(hw, opts, sync)}")
        return PipelineSpec(desc, "rtsp", live=True, hardware=hw, location=location)
    if scheme == "v4l2":
        device = location or "/dev/video0"
        codec = _codec(frag, codec, "raw", uri)
        if codec not in ("raw", "mjpeg"):
            raise ConfigError(f"{uri}: V4L2 devices give raw (#yuyv) or #mjpeg frames here")
        size = f",width={opts.width},height={opts.height}" if opts.width and opts.height else ""
        rate = f",framerate={_fraction(opts.fps)}" if opts.fps else ""
        plain = PipelineOptions(latency_ms=opts.latency_ms)  # size and rate are asked of the device
        _need(factories, uri, "v4l2src")
        if codec == "raw":
            _need(factories, uri, "videoconvert")
            desc = (f"v4l2src device={_quote(device)} ! video/x-raw,format=YUY2{size}{rate} ! "
                    f"{_convert_tail(False, plain, sync)}")
            return PipelineSpec(desc, "v4l2", live=True, hardware=False, location=device)
        decoder, hw = _decoder("mjpeg", factories)
        _need(factories, uri, "jpegparse", decoder)
        desc = (f"v4l2src device={_quote(device)} ! image/jpeg{size}{rate} ! jpegparse ! {decoder} ! "
                f"{_convert_tail(hw, plain, sync)}")
        return PipelineSpec(desc, "v4l2", live=True, hardware=hw, location=device)
    # csi://N
    try:
        sensor = int(location.strip("/") or "0")
    except ValueError:
        raise ConfigError(f"{uri}: csi:// takes a sensor number (csi://0)") from None
    _need(factories, uri, "nvarguscamerasrc", "nvvidconv")
    width, height = (opts.width, opts.height) if opts.width and opts.height else (1280, 720)
    fps = opts.fps or 30
    desc = (f"nvarguscamerasrc sensor-id={sensor} ! "
            f"video/x-raw(memory:NVMM),width={width},height={height},framerate={_fraction(fps)},format=NV12 ! "
            f"nvvidconv ! video/x-raw,format=BGRx ! {appsink(sync)}")
    return PipelineSpec(desc, "csi", live=True, hardware=True, location=f"sensor {sensor}")


__all__ = ["APPSINK_NAME", "SINK_FORMATS", "PipelineOptions", "PipelineSpec", "split_uri", "build_pipeline",
           "appsink"]
