"""Camera sources with real GStreamer (no mocks): H.264 MP4 and MJPEG AVI files encoded at test time
from the real driving frames, videotestsrc, an RTSP server (GstRtspServer, a separate process) that
stops and restarts; the OpenCV and image-folder sources; the Jetson pipeline strings as strings
(their elements do not exist here); the camera_calibration_parsers YAML reader.

Without GStreamer's Python bindings the GStreamer tests skip with the apt-get line that installs
them (`make venv` installs them when run as root).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from perception_edge.core.errors import ConfigError
from perception_edge.sources import SourceSpec, backend_for, open_source, specs_from_config
from perception_edge.sources.pipelines import PipelineOptions, build_pipeline, split_uri

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SOFTWARE = frozenset({"filesrc", "qtdemux", "matroskademux", "avidemux", "h264parse", "h265parse", "jpegparse",
                      "avdec_h264", "avdec_h265", "jpegdec", "videoconvert", "videoscale", "videorate", "decodebin",
                      "rtspsrc", "rtph264depay", "rtph265depay", "rtpjpegdepay", "v4l2src", "appsink", "queue"})
JETSON = SOFTWARE | {"nvv4l2decoder", "nvjpegdec", "nvvidconv", "nvarguscamerasrc"}
SINK = "appsink name=perception_sink max-buffers=1 drop=true"


def _gst_reason():
    from perception_edge.sources.gstreamer import unavailable_reason

    return unavailable_reason()


needs_gst = pytest.mark.skipif(_gst_reason() is not None, reason=str(_gst_reason()))


# -- pipeline strings (pure) --------------------------------------------------------------------------

def test_jetson_file_pipelines_use_the_hardware_decoders():
    h264 = build_pipeline("file:///data/drive.mp4", JETSON, codec="h264")
    assert h264.hardware and not h264.live
    assert h264.description == (
        'filesrc location="/data/drive.mp4" ! qtdemux ! queue max-size-buffers=4 ! h264parse ! nvv4l2decoder ! '
        f"nvvidconv ! video/x-raw,format=BGRx ! {SINK} sync=true emit-signals=false enable-last-sample=false")
    h265 = build_pipeline("file:///data/drive.mkv", JETSON, codec="h265").description
    assert " ! matroskademux ! queue max-size-buffers=4 ! h265parse ! nvv4l2decoder ! nvvidconv ! " in h265
    mjpeg = build_pipeline("file:///data/drive.avi#mjpeg", JETSON).description
    assert " ! avidemux ! queue max-size-buffers=4 ! jpegparse ! nvjpegdec ! nvvidconv ! video/x-raw,format=BGRx" \
        in mjpeg
    scaled = build_pipeline("file:///d.mp4", JETSON, PipelineOptions(640, 360, 15), codec="h264").description
    assert "nvv4l2decoder ! videorate drop-only=true max-rate=15 ! nvvidconv ! " \
           "video/x-raw,format=BGRx,width=640,height=360 ! appsink" in scaled
    assert "videoconvert" not in scaled + h264.description  # no CPU colour conversion on Jetson


def test_jetson_live_pipelines():
    rtsp = build_pipeline("rtsp://10.0.0.5:554/stream#h265", JETSON, PipelineOptions(latency_ms=80))
    assert rtsp.live and rtsp.hardware
    assert rtsp.description.startswith('rtspsrc location="rtsp://10.0.0.5:554/stream" latency=80 protocols=tcp ! '
                                       "rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv ! "
                                       "video/x-raw,format=BGRx ! appsink")
    assert "sync=false" in rtsp.description
    csi = build_pipeline("csi://1", JETSON, PipelineOptions(1920, 1080, 30)).description
    assert csi.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,"
                          "framerate=30/1,format=NV12 ! nvvidconv ! video/x-raw,format=BGRx ! appsink")
    usb = build_pipeline("v4l2:///dev/video1#mjpeg", JETSON, PipelineOptions(1280, 720, 30)).description
    assert usb.startswith('v4l2src device="/dev/video1" ! image/jpeg,width=1280,height=720,framerate=30/1 ! '
                          "jpegparse ! nvjpegdec ! nvvidconv ! video/x-raw,format=BGRx ! appsink")


def test_software_pipelines_without_the_jetson_elements():
    h264 = build_pipeline("file:///d/x.mp4", SOFTWARE, codec="h264").description
    assert "h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=BGR ! appsink" in h264
    assert "nvv4l2decoder" not in h264 and "nvvidconv" not in h264
    assert "avdec_h265" in build_pipeline("rtsp://h/s#h265,udp", SOFTWARE).description
    assert "protocols=udp" in build_pipeline("rtsp://h/s#udp", SOFTWARE).description
    yuyv = build_pipeline("v4l2:///dev/video0", SOFTWARE, PipelineOptions(640, 480, 30)).description
    assert yuyv.startswith('v4l2src device="/dev/video0" ! video/x-raw,format=YUY2,width=640,height=480,'
                           "framerate=30/1 ! videoconvert ! video/x-raw,format=BGR ! appsink")
    unknown = build_pipeline("file:///d/x.ts", SOFTWARE).description  # no demuxer known: decodebin
    assert "filesrc" in unknown and "! decodebin ! videoconvert" in unknown
    scaled = build_pipeline("file:///d/x.mp4", SOFTWARE, PipelineOptions(640, 360), codec="h264").description
    assert "avdec_h264 ! videoscale ! video/x-raw,width=640,height=360 ! videoconvert" in scaled


def test_pipeline_errors_are_one_line_and_name_the_uri_and_element():
    with pytest.raises(ConfigError, match=r"csi://0: GStreamer element nvarguscamerasrc, nvvidconv not found.*JetPack"):
        build_pipeline("csi://0", SOFTWARE)
    with pytest.raises(ConfigError, match=r"rtsp://h/s: GStreamer element avdec_h264 not found.*gstreamer1.0-libav"):
        build_pipeline("rtsp://h/s", SOFTWARE - {"avdec_h264"})
    with pytest.raises(ConfigError, match="unknown source scheme 'http'"):
        build_pipeline("http://host/x.mp4", SOFTWARE)
    with pytest.raises(ConfigError, match="must end in an appsink"):
        build_pipeline("gst:videotestsrc ! fakesink", SOFTWARE)
    with pytest.raises(ConfigError, match="unknown codec 'vp9'"):
        build_pipeline("file:///x.mkv#vp9", SOFTWARE)
    assert split_uri("file:///a%20b/c.mp4#h265") == ("file", "/a b/c.mp4", "h265")
    assert split_uri("gst:videotestsrc ! appsink") == ("gst", "videotestsrc ! appsink", "")


def test_specs_from_the_parallel_arrays():
    specs = specs_from_config(["file:///a.mp4", "rtsp://h/s"], ["cam_front", "cam_left"], ["", "left_link"],
                              ["", "15"], ["1280x720", ""], ["", "/calib/left.yaml"])
    assert [s.topic for s in specs] == ["/cam_front/image_raw", "/cam_left/image_raw"]
    assert [s.frame_id for s in specs] == ["cam_front_optical_frame", "left_link"]
    assert (specs[0].width, specs[0].height, specs[1].fps) == (1280, 720, 15.0)
    assert specs_from_config(["a.mp4", "b.mp4"])[1].name == "cam1"
    with pytest.raises(ConfigError, match="source_names: 1 entries for 2 sources"):
        specs_from_config(["a", "b"], ["only_one"])
    with pytest.raises(ConfigError, match="is not WIDTHxHEIGHT"):
        specs_from_config(["a"], sizes=["1280*720"])
    with pytest.raises(ConfigError, match="given to two sources"):
        specs_from_config(["a", "b"], ["cam", "cam"])


def test_camera_info_yaml(tmp_path):
    from perception_edge.sources.camera_info import load_camera_info

    path = tmp_path / "front.yaml"
    path.write_text("image_width: 1280\nimage_height: 720\ncamera_name: front\n"
                    "camera_matrix: {rows: 3, cols: 3, data: [900, 0, 640, 0, 900, 360, 0, 0, 1]}\n"
                    "distortion_model: plumb_bob\n"
                    "distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}\n"
                    "rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n"
                    "projection_matrix: {rows: 3, cols: 4, data: [900, 0, 640, 0, 0, 900, 360, 0, 0, 0, 1, 0]}\n")
    cal = load_camera_info(f"file://{path}")
    assert (cal.width, cal.height, cal.k[0], cal.k[5], cal.d[0], cal.p[2]) == (1280, 720, 900.0, 360.0, -0.1, 640.0)
    path.write_text("image_width: 1280\n")
    with pytest.raises(ConfigError, match="needs integer image_width and image_height"):
        load_camera_info(str(path))


# -- real GStreamer -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def videos(tmp_path_factory, frames_bgr):
    if _gst_reason() is not None:
        pytest.skip(str(_gst_reason()))
    from gst_media import make_video

    folder = tmp_path_factory.mktemp("videos")
    out = {"h264": folder / "drive_h264.mp4", "mjpeg": folder / "drive_mjpeg.avi"}
    make_video(out["h264"], frames_bgr, "h264", fps=10)
    make_video(out["mjpeg"], frames_bgr, "mjpeg", fps=10)
    return out


def read_all(source, limit: int = 1000, timeout: float = 20.0):
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < limit and time.monotonic() < deadline:
        f = source.read(0.5)
        if f is not None:
            frames.append(f)
        elif source.status().state in ("ended", "error"):
            break
    return frames


@needs_gst
@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
def test_video_files_give_every_frame_at_source_size_with_increasing_stamps(videos, frames_bgr, codec):
    source = open_source(SourceSpec(f"file://{videos[codec]}", "cam", "cam_optical_frame"))
    with source:
        status = source.status()
        assert ("avdec_h264" if codec == "h264" else "jpegdec") in status.pipeline
        frames = read_all(source)
        assert source.status().state == "ended"
    assert source.status().state == "closed"
    assert len(frames) == len(frames_bgr)  # played at its own rate (sync=true): nothing skipped
    assert all(f.pixels.shape == (720, 1280, 3) and f.order == "bgr" for f in frames)
    stamps = [f.stamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    gaps = np.diff(stamps) / 1e9
    assert 0.05 < float(np.median(gaps)) < 0.2  # the file's 10 fps
    for i, got in enumerate(frames):  # the real frames, through the encoder and back, in order
        diffs = [np.abs(got.pixels.astype(np.int16) - want).mean() for want in frames_bgr]
        assert int(np.argmin(diffs)) == i and diffs[i] < 20  # (JPEG's full range read as limited: ~13)


@needs_gst
def test_file_loops_on_request_and_scales(videos, frames_bgr):
    source = open_source(SourceSpec(f"file://{videos['h264']}", "cam", "f", width=640, height=360), loop=True)
    with source:
        frames = read_all(source, limit=len(frames_bgr) * 2 + 2)
        assert source.status().extra.get("loops", 0) >= 2
    assert len(frames) == len(frames_bgr) * 2 + 2
    assert all(f.pixels.shape == (360, 640, 3) for f in frames)
    assert all(b.stamp_ns > a.stamp_ns for a, b in zip(frames, frames[1:]))


@needs_gst
def test_h265_mkv_with_a_rate_limit(tmp_path, frames_bgr):
    import cv2

    from gst_media import make_video

    path = tmp_path / "drive_h265.mkv"
    small = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames_bgr]
    make_video(path, small, "h265", fps=10)
    source = open_source(SourceSpec(f"file://{path}", "cam", "f", fps=5.0))
    with source:
        pipeline = source.status().pipeline
        frames = read_all(source)
    assert "matroskademux" in pipeline and "h265parse ! avdec_h265" in pipeline and "max-rate=5" in pipeline
    assert all(f.pixels.shape == (360, 640, 3) for f in frames)
    assert len(small) // 2 - 1 <= len(frames) <= len(small) // 2 + 1  # 8 frames at 10 fps, at most 5 a second
    assert all(b.stamp_ns > a.stamp_ns for a, b in zip(frames, frames[1:]))


@needs_gst
def test_user_pipeline_videotestsrc_and_the_appsink_never_queues():
    """A fast producer read slowly: the appsink drops (counted) instead of queueing; memory stays flat."""
    uri = ("gst:videotestsrc pattern=ball ! video/x-raw,width=1280,height=720,framerate=200/1 ! videoconvert ! "
           "appsink sync=false")
    source = open_source(SourceSpec(uri, "test", "t"))

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    with source:
        assert source.status().pipeline.endswith("appsink name=perception_sink sync=false")
        shapes = []  # (the frames themselves are not kept: that would be the test queueing them)
        for i in range(50):
            if i == 10:  # after the warm-up
                before = rss_mb()
            frame = source.read(2.0)
            shapes.append(frame.pixels.shape if frame is not None else None)
            del frame
            time.sleep(0.05)  # a slow consumer
        grown = rss_mb() - before
        status = source.status()
    assert shapes.count((720, 1280, 3)) == 50
    assert status.dropped > len(shapes)  # frames that arrived while nobody read were dropped, not kept
    assert grown < 40, f"RSS grew {grown:.0f} MB while the consumer was slow"  # ~2.7 MB a frame if it queued


@needs_gst
def test_bad_sources_fail_with_one_clear_line(tmp_path):
    missing = open_source(SourceSpec(f"file://{tmp_path}/nothing.mp4", "cam_a", "a"))
    with pytest.raises(ConfigError, match=r"cam_a: video file not found: .*nothing.mp4"):
        missing.open()
    element = open_source(SourceSpec("gst:nosuchsrc ! videoconvert ! appsink", "cam_b", "b"))
    with pytest.raises(ConfigError, match=r'cam_b: cannot build the pipeline for gst:nosuchsrc.*no element "nosuchsrc"'):
        element.open()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = open_source(SourceSpec(f"rtsp://127.0.0.1:{port}/cam", "cam_c", "c"), reconnect_max_s=1.0)
    with unreachable:  # live: opens, reports the failure and keeps retrying
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not unreachable.status().last_error:
            assert unreachable.read(0.2) is None
        status = unreachable.status()
    assert status.state == "reconnecting"
    assert "rtspsrc" in status.last_error and f"rtsp://127.0.0.1:{port}/cam" in status.last_error
    assert "\n" not in status.last_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rtsp_server(port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(HERE / "gst_media.py"), "rtsp-server", "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.startswith("serving"), line
    return p


@needs_gst
def test_rtsp_camera_that_drops_is_reconnected():
    port = _free_port()
    server = _rtsp_server(port)
    source = open_source(SourceSpec(f"rtsp://127.0.0.1:{port}/cam", "cam", "f"), latency_ms=50, reconnect_max_s=1.0)
    try:
        with source:
            first = read_all(source, limit=10)
            assert len(first) == 10 and first[0].pixels.shape == (360, 640, 3)
            server.kill()
            server.wait(10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and source.status().state == "running":
                source.read(0.2)
            down = source.status()
            assert down.state == "reconnecting" and "127.0.0.1" in down.last_error
            server = _rtsp_server(port)
            again = read_all(source, limit=10, timeout=30)
            up = source.status()
    finally:
        server.kill()
        server.wait(10)
    assert len(again) == 10 and up.state == "running" and up.reconnects == 1 and up.last_error == ""
    stamps = [f.stamp_ns for f in first + again]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


# -- without GStreamer -------------------------------------------------------------------------------------

def test_image_folder_and_gif_sources(frame_paths):
    folder = frame_paths[0].parent
    assert backend_for(str(folder)) == "images"
    with open_source(SourceSpec(str(folder), "cam", "f", fps=50.0)) as source:
        frames = read_all(source)
    assert len(frames) == len(frame_paths) and frames[0].pixels.shape == (720, 1280, 3)
    assert all(b.stamp_ns > a.stamp_ns for a, b in zip(frames, frames[1:]))
    gif = folder / "input1.gif"
    if gif.is_file():
        with open_source(SourceSpec(f"images:{gif}", "gif", "g", fps=200.0)) as source:
            frames = read_all(source, limit=100)
        assert len(frames) == 72 and frames[0].pixels.shape == (240, 320, 3)


def test_opencv_source_reads_a_video(tmp_path, frames_bgr):
    import cv2

    path = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (1280, 720))
    for f in frames_bgr:
        writer.write(f)
    writer.release()
    with open_source(SourceSpec(f"opencv:{path}", "cam", "f")) as source:
        frames = read_all(source)
        assert source.status().state == "ended"
    assert len(frames) == len(frames_bgr) and frames[0].pixels.shape == (720, 1280, 3)
    assert np.abs(frames[3].pixels.astype(np.int16) - frames_bgr[3]).mean() < 10
