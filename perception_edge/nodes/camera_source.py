"""The `camera_source` node: cameras, streams and files read in this process (perception_edge.sources),
published as sensor_msgs/Image + CameraInfo on <name>/image_raw and <name>/camera_info, and (inside
perception_container) handed to the fusion node in-process: the same Frame object, no serialization,
no DDS hop.

    ros2 run perception_edge camera_source --ros-args -p sources:="['rtsp://cam/stream']" -p source_names:="[cam_front]"

Each source has a capture thread of its own: it reads the newest frame (the source keeps at most
one), gives it to the in-process consumers (which must not block: the fusion node's sync and the
models' LatestSlots), and publishes the Image only while someone subscribes to it (or always, with
source.publish_always). A source that cannot be opened is an ERROR in /diagnostics with its one-line
reason and never stops the others; a live source that drops is reopened with backoff.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from perception_edge import sources as src
from perception_edge.core.errors import ConfigError
from perception_edge.core.sync import Frame
from perception_edge.nodes import diagnostics as diag
from perception_edge.nodes.messages import header_of, image_msg
from perception_edge.nodes.parameters import declare_parameters
from perception_edge.nodes.runner import Managed, run_main
from rclpy.node import Node

READ_TIMEOUT = 0.2  # s: how often a capture thread looks at the stop flag while a source is silent
LOG_PERIOD = 10.0  # s between repeated log lines about one source's failures


def camera_info_msg(spec: src.SourceSpec, calibration, width: int, height: int, header):
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(header=header)
    msg.width, msg.height = int(width), int(height)
    if calibration is not None:
        msg.distortion_model = calibration.distortion_model
        msg.d = list(calibration.d)
        msg.k = list(calibration.k)
        msg.r = list(calibration.r)
        msg.p = list(calibration.p)
    return msg


class _Camera:
    """One source, its capture thread, publishers and figures."""

    def __init__(self, spec: src.SourceSpec, source: src.Source | None, error: str = ""):
        self.spec = spec
        self.source = source
        self.error = error  # a source that could not be set up
        self.thread: threading.Thread | None = None
        self.image_pub = None
        self.info_pub = None
        self.calibration = None
        self.rate = diag.RateMeter()
        self.times = diag.StageTimes()
        self.published = 0
        self.last_logged = -1e9
        self.last_state = ""


class CameraSourceNode(Managed, Node):
    """The sources of the `sources` parameter; enabled is False when there are none."""

    def __init__(self, node_name: str = "camera_source", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.cfg = declare_parameters(self, "sources")
        s = self.cfg.source
        self.specs = src.specs_of(self.cfg)  # ConfigError for inconsistent parallel arrays
        self.enabled = bool(self.specs)
        self._consumers: list[Callable[[Frame], None]] = []
        self._stop = threading.Event()
        self.cameras: list[_Camera] = []
        self.diagnostics = None
        if not self.enabled:  # no sources: parameters only (the container then drops this node)
            return
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        now_ns = self._now_ns
        for spec in self.specs:
            source, error = None, ""
            try:
                source = src.open_source(spec, s.backend, s.latency_ms, s.loop, s.reconnect_max_s, now_ns)
            except ConfigError as e:
                error = str(e)
            cam = _Camera(spec, source, error)
            if spec.camera_info_url:
                try:
                    from perception_edge.sources.camera_info import load_camera_info

                    cam.calibration = load_camera_info(spec.camera_info_url)
                except ConfigError as e:
                    self.get_logger().error(f"{spec.name}: {e}; publishing an uncalibrated CameraInfo")
            cam.image_pub = self.create_publisher(Image, spec.topic, qos)
            cam.info_pub = self.create_publisher(CameraInfo, spec.info_topic, qos)
            self.cameras.append(cam)
        self.diagnostics = diag.DiagnosticsPublisher(self, self.cfg.diagnostics_period)
        self.diagnostics.add(self.statuses)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    @property
    def topics(self) -> list[str]:
        """The image topic of each source: its camera name in the fusion node."""
        return [spec.topic for spec in self.specs]

    def add_consumer(self, fn: Callable[[Frame], None]) -> None:
        """fn(frame) is called in the source's capture thread for every frame; it must not block."""
        self._consumers.append(fn)

    # -- life ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for cam in self.cameras:
            if cam.thread is None:
                cam.thread = threading.Thread(target=self._capture, args=(cam,), daemon=True,
                                              name=f"source {cam.spec.name}")
                cam.thread.start()

    def stop(self) -> None:
        self._stop.set()
        for cam in self.cameras:
            if cam.source is not None:
                try:
                    cam.source.close()
                except Exception:
                    pass
        for cam in self.cameras:
            if cam.thread is not None:
                cam.thread.join(3.0)
                cam.thread = None

    def destroy_node(self):
        self.stop()
        return super().destroy_node()

    def _capture(self, cam: _Camera) -> None:
        log = self.get_logger()
        spec = cam.spec
        if cam.source is None:
            log.error(f"source {spec.name}: {cam.error}")
            return
        try:
            cam.source.open()
        except ConfigError as e:
            cam.error = str(e)
            log.error(f"source {spec.name}: {e}")
            return
        except Exception as e:
            cam.error = f"cannot open {spec.uri}: {type(e).__name__}: {e}"
            log.error(f"source {spec.name}: {cam.error}")
            return
        status = cam.source.status()
        log.info(f"source {spec.name} -> {spec.topic}: {status.backend}: {status.pipeline}")
        while not self._stop.is_set():
            try:
                captured = cam.source.read(READ_TIMEOUT)
            except Exception as e:  # a bug in a reader must not end the thread silently
                self._log_state(cam, f"read failed: {type(e).__name__}: {e}")
                time.sleep(READ_TIMEOUT)
                continue
            if captured is None:
                self._log_state(cam)
                continue
            self._deliver(cam, captured)

    def _log_state(self, cam: _Camera, error: str = "") -> None:
        """A failure is logged when it starts and then every LOG_PERIOD at most (a camera that stays
        unreachable is retried every few seconds)."""
        status = cam.source.status() if cam.source is not None else None
        state = status.state if status is not None else "error"
        error = error or (status.last_error if status is not None else cam.error)
        now = time.monotonic()
        failing = state in ("error", "reconnecting") and bool(error)
        if failing and (cam.last_state not in ("error", "reconnecting", "opening") or now - cam.last_logged >= LOG_PERIOD):
            self.get_logger().error(f"source {cam.spec.name}: {error}")
            cam.last_logged = now
        elif state == "ended" and cam.last_state != "ended":
            self.get_logger().info(f"source {cam.spec.name}: end of {cam.spec.uri}")
        if failing or state == "ended":
            cam.last_state = state

    def _deliver(self, cam: _Camera, captured: src.CapturedFrame) -> None:
        spec = cam.spec
        frame = captured.to_frame(spec.topic, spec.frame_id)
        if cam.last_state != "running":
            if cam.last_state in ("reconnecting", "error"):
                self.get_logger().info(f"source {spec.name}: receiving frames again")
            cam.last_state = "running"
        cam.rate.tick()
        cam.times.add("read", captured.read_ms)
        for fn in self._consumers:
            try:
                fn(frame)
            except Exception as e:
                self.get_logger().error(f"source {spec.name}: frame consumer failed: {type(e).__name__}: {e}")
        try:
            self._publish(cam, frame)
        except Exception as e:  # context going away while stopping
            if not self._stop.is_set():
                self.get_logger().warn(f"source {spec.name}: publishing failed: {type(e).__name__}: {e}")

    def _publish(self, cam: _Camera, frame: Frame) -> None:
        always = self.cfg.source.publish_always
        want_image = always or cam.image_pub.get_subscription_count() > 0
        want_info = want_image or cam.info_pub.get_subscription_count() > 0
        if not want_info:
            return
        header = header_of(frame)
        if want_image:
            t0 = time.perf_counter()
            msg = image_msg(frame.pixels, "rgb8", header)  # the bytes as they are, named below
            msg.encoding = "bgr8" if frame.order == "bgr" else "rgb8"
            cam.image_pub.publish(msg)
            cam.times.add("publish", (time.perf_counter() - t0) * 1e3)
            cam.published += 1
        cam.info_pub.publish(camera_info_msg(cam.spec, cam.calibration, frame.width, frame.height, header))

    # -- diagnostics --------------------------------------------------------------------------------
    def statuses(self) -> list[Any]:
        out = []
        for cam in self.cameras:
            spec = cam.spec
            s = cam.source.status() if cam.source is not None else None
            times = cam.times.medians()
            values = {
                "uri": spec.uri, "topic": spec.topic, "frame_id": spec.frame_id,
                "backend": s.backend if s else "", "state": s.state if s else "error",
                "pipeline": s.pipeline if s else "", "fps": cam.rate.rate(),
                "decode_latency_ms": times.get("read", float("nan")),
                "convert_ms": (s.extra.get("convert_ms", float("nan")) if s else float("nan")),
                "publish_ms": times.get("publish", float("nan")),
                "frames": s.frames if s else 0, "dropped": s.dropped if s else 0,
                "reconnects": s.reconnects if s else 0, "published": cam.published,
                "size": f"{s.width}x{s.height}" if s and s.width else "",
                "last_error": cam.error or (s.last_error if s else ""),
            }
            if cam.error or s is None or s.state == "error":
                level, message = diag.ERROR, f"cannot read: {values['last_error']}"
            elif s.state == "reconnecting" or (s.state == "opening" and s.last_error):
                level, message = diag.ERROR, f"reconnecting: {s.last_error}"
            elif s.state == "ended":
                level, message = diag.WARN, "end of file (source.loop: false)"
            elif s.state in ("opening", "closed"):
                level, message = diag.OK if s.state == "opening" else diag.WARN, s.state
            else:
                level, message = diag.OK, f"{values['fps']:.1f} Hz"
            out.append(diag.make_status(f"{self.get_name()}: source {spec.name}", level, message, values,
                                        hardware_id=spec.uri))
        return out


def main(argv: list[str] | None = None) -> int:
    def build(nodes) -> None:
        node = nodes.add(CameraSourceNode())
        if not node.enabled:
            raise ConfigError("no sources: set the sources parameter (file://, rtsp://, v4l2://, csi://, gst:...)")

    return run_main("camera_source", build, argv, multi_threaded=False)


if __name__ == "__main__":
    sys.exit(main())
