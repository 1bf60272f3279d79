"""Test media made with real GStreamer at test time: H.264 MP4 and MJPEG AVI files from the real
driving frames (sources.gstreamer.encode_video: appsrc -> x264enc / jpegenc -> mp4mux / avimux), and an RTSP server (GstRtspServer)
on 127.0.0.1 streaming H.264, run as a separate process:

    python test/gst_media.py rtsp-server --port 8554 [--path /cam]
"""
from __future__ import annotations

import argparse
import sys


def gst():
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    return Gst


def make_video(path, frames_bgr, codec: str = "h264", fps: int = 10, repeat: int = 1) -> None:
    """Encode the frames (BGR, all one size) into a file, each frame 1/fps long."""
    from perception_edge.sources.gstreamer import encode_video

    encode_video(path, list(frames_bgr) * repeat, codec, fps)


def rtsp_server_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--size", default="640x360")
    args = p.parse_args(argv)
    Gst = gst()
    import gi

    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, GstRtspServer

    w, h = args.size.split("x")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate=15/1 ! "
                       "x264enc speed-preset=ultrafast tune=zerolatency key-int-max=15 ! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 1
    print(f"serving rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    del Gst
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "rtsp-server":
    sys.exit(rtsp_server_main(sys.argv[2:]))
