"""Camera sources inside perception_container, over the real middleware (separate processes, Fast DDS,
a ROS_DOMAIN_ID of their own, as test_nodes_ros.py): an H.264 MP4 and an MJPEG AVI encoded at test
time from the real driving frames are read by GStreamer in the container and handed to the models
in-process; a source with a missing element and an unreachable RTSP camera are ERRORs in
/diagnostics while the others go on. The Image topic is published only once someone subscribes.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_nodes_ros import (  # noqa: E402  (skips this module too when ROS is not importable)
    WAIT, Listener, Procs, base_params, detections_summary, diag_summary, domain_id, image_summary, ros_env,
    statuses, write_params)

from perception_edge.sources.gstreamer import unavailable_reason  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))]


@pytest.fixture(scope="module")
def media(tmp_path_factory, frames_bgr):
    from gst_media import make_video

    folder = tmp_path_factory.mktemp("media")
    h264, mjpeg = folder / "front.mp4", folder / "left.avi"
    make_video(h264, frames_bgr, "h264", fps=10)
    make_video(mjpeg, frames_bgr, "mjpeg", fps=10)
    calib = folder / "cam_a.yaml"
    calib.write_text("image_width: 1280\nimage_height: 720\ncamera_name: cam_a\n"
                     "camera_matrix: {rows: 3, cols: 3, data: [910.5, 0, 640, 0, 910.5, 360, 0, 0, 1]}\n"
                     "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n")
    return h264, mjpeg, calib


def test_container_reads_sources_in_process_and_survives_bad_ones(tmp_path, media, yolov5n_onnx):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray

    h264, mjpeg, calib = media
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there
    names = ["cam_a", "cam_b", "cam_bad", "cam_rtsp"]
    values = base_params(yolov5n_onnx, None, ["/cam_front/image_raw"], **{"detection.conf_threshold": 0.1})
    del values["cameras"]  # left at its default: not subscribed when sources are given
    values.update({"sources": [f"file://{h264}", str(mjpeg), "gst:nosuchsrc ! videoconvert ! appsink",
                               f"rtsp://127.0.0.1:{port}/cam"],
                   "source_names": names, "source.camera_info_urls": [str(calib), "", "", ""],
                   "source.loop": True, "source.reconnect_max_s": 1.0})
    params = write_params(tmp_path / "params.yaml", **values)
    domain = domain_id(61)
    procs = Procs(tmp_path, ros_env(domain, tmp_path))
    listener = None
    try:
        container = procs.container(params)
        listener = Listener(domain)
        dets = {n: listener.subscribe(Detection2DArray, f"/{n}/detections", detections_summary) for n in names[:2]}
        diags = listener.subscribe(DiagnosticArray, "/diagnostics", diag_summary)

        def out():
            return procs.output(container)[-3000:]

        def source_status(name):
            found = statuses(diags, f"camera_source: source {name}")
            return found[-1] if found else None

        def all_reported():
            a, bad, rtsp = source_status("cam_a"), source_status("cam_bad"), source_status("cam_rtsp")
            return (all(len(d) >= 3 for d in dets.values()) and a is not None and a[1] == 0
                    and bad is not None and bad[1] == 2 and rtsp is not None and rtsp[1] == 2
                    and "rtspsrc" in rtsp[3]["last_error"])

        assert listener.wait(all_reported, 2 * WAIT, [container]), (
            {n: len(d) for n, d in dets.items()}, [source_status(n) for n in names], out())
        # detections for each good source, stamped with its capture times, in its frame
        for name in names[:2]:
            stamps = [d["stamp"] for d in dets[name]]
            assert all(d["frame_id"] == f"{name}_optical_frame" for d in dets[name])
            assert all(b > a for a, b in zip(stamps, stamps[1:]))
        assert listener.wait(lambda: any(d["dets"] for name in names[:2] for d in dets[name]), WAIT, [container]), \
            "YOLOv5n found nothing"
        # the failing sources: one clear line each, ERROR, while the others run
        _, level, message, bad = source_status("cam_bad")
        assert level == 2 and 'no element "nosuchsrc"' in message and "\n" not in message
        _, level, message, rtsp = source_status("cam_rtsp")
        assert level == 2 and f"rtsp://127.0.0.1:{port}/cam" in rtsp["last_error"]
        _, level, _, a = source_status("cam_a")
        assert "avdec_h264" in a["pipeline"] and a["size"] == "1280x720" and float(a["fps"]) > 0
        assert a["published"] == "0"  # nobody subscribed to /cam_a/image_raw yet: no Image built
        fusion = statuses(diags, "camera /cam_a/image_raw")[-1][3]
        assert fusion["encoding"] == "in-process bgr" and int(fusion["batched"]) > 0
        # a subscriber appears: Image and CameraInfo with the frames' header
        images = listener.subscribe(Image, "/cam_a/image_raw", image_summary)
        infos = listener.subscribe(CameraInfo, "/cam_a/camera_info",
                                   lambda m: (m.header.frame_id, m.width, m.height, list(m.k)))
        assert listener.wait(lambda: len(images) >= 2 and infos, WAIT, [container]), out()
        img = images[-1]
        assert (img["width"], img["height"], img["encoding"], img["frame_id"]) == (1280, 720, "bgr8",
                                                                                 "cam_a_optical_frame")
        assert infos[-1][:3] == ("cam_a_optical_frame", 1280, 720) and infos[-1][3][0] == pytest.approx(910.5)
        assert container.poll() is None, out()
    finally:
        if listener is not None:
            listener.close()
        procs.close()


def test_standalone_camera_source_publishes(tmp_path):
    """`camera_source` alone: a videotestsrc pipeline published on /cam0/image_raw (publish_always)."""
    from sensor_msgs.msg import Image

    params = write_params(tmp_path / "params.yaml", **{
        "sources": ["gst:videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 ! "
                    "videoconvert ! appsink"],
        "source.publish_always": True, "diagnostics_period": 0.5})
    domain = domain_id(62)
    procs = Procs(tmp_path, ros_env(domain, tmp_path))
    listener = None
    try:
        node = procs.start("camera_source", [sys.executable, "-m", "perception_edge.nodes.camera_source",
                                             "--ros-args", "--params-file", str(params)])
        listener = Listener(domain)
        images = listener.subscribe(Image, "/cam0/image_raw", image_summary)
        assert listener.wait(lambda: len(images) >= 5, WAIT, [node]), procs.output(node)[-2000:]
        assert {(i["width"], i["height"], i["encoding"], i["frame_id"]) for i in images} == {
            (320, 240, "bgr8", "cam0_optical_frame")}
        stamps = [i["stamp"] for i in images]
        assert all(b > a for a, b in zip(stamps, stamps[1:]))
        assert node.poll() is None, procs.output(node)[-2000:]
    finally:
        if listener is not None:
            listener.close()
        procs.close()
