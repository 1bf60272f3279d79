"""Camera fusion: subscribe to the cameras, turn messages into Frames, synchronize them into Batches.

`CameraFusion` is the part that lives inside a node (the container's `camera_fusion` node, or a
standalone detection/segmentation node's own input). Batches go to in-process consumers
(`add_consumer(fn)`) as Python objects: no serialization, pixels stay views over the received
buffers. Consumers must not block (the model nodes put batches into a LatestSlot).

`ros2 run perception_edge camera_fusion` runs it alone and republishes each synchronized frame on
`<camera ns>/synced/image` (the original message, header untouched) so the sync can be inspected.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from typing import Any, Callable

from perception_edge.core.errors import PerceptionError
from perception_edge.core.sync import NS_PER_S, Batch, FrameSync
from perception_edge.nodes import diagnostics as diag
from perception_edge.nodes.messages import compressed_to_frame, image_to_frame, is_compressed_topic
from perception_edge.nodes.parameters import declare_schema_parameters, output_topic, run_main

from rclpy.node import Node

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

BAD_LOG_PERIOD = 10.0  # seconds between log lines about bad messages of one camera


def input_qos_profile(name: str):
    """sensor_data: best effort, keep last 1; reliable: reliable, keep last 1 (both volatile)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def policy_name(kind: Any) -> str:
    try:
        from rclpy.qos import QoSPolicyKind

        return QoSPolicyKind(int(getattr(kind, "value", kind))).name
    except Exception:
        return str(kind)


class _CameraState:
    def __init__(self, topic: str):
        self.topic = topic
        self.bad = 0
        self.last_error = ""
        self.last_bad_time = -1e9
        self.last_logged = -1e9
        self.incompatible_qos = 0
        self.rate = diag.RateMeter()
        self.latency = diag.StageTimes()
        self.size = ""
        self.encoding = ""


class CameraFusion:
    """Camera subscriptions + FrameSync inside `node`; Batches go to the registered consumers."""

    def __init__(self, node, params: dict[str, Any], clock: Callable[[], float] = time.monotonic):
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from sensor_msgs.msg import CompressedImage, Image

        self.node = node
        self.cameras: list[str] = list(params["cameras"])
        self.qos_name = params["input_qos"]
        self.sync = FrameSync(self.cameras, params["sync.slop"], params["sync.stale_timeout"], clock=clock)
        self._clock = clock
        self._consumers: list[Callable[[Batch], None]] = []
        self._state = {cam: _CameraState(cam) for cam in self.cameras}
        self._lock = threading.Lock()
        self.batches = 0
        qos = input_qos_profile(self.qos_name)
        self.subscriptions = []
        for cam in self.cameras:
            compressed = is_compressed_topic(cam)
            events = SubscriptionEventCallbacks(incompatible_qos=functools.partial(self._on_incompatible_qos, cam))
            # one group per camera: a camera's messages are handled in order, cameras in parallel
            self.subscriptions.append(node.create_subscription(
                CompressedImage if compressed else Image, cam,
                functools.partial(self._on_message, cam, compressed_to_frame if compressed else image_to_frame),
                qos, callback_group=MutuallyExclusiveCallbackGroup(), event_callbacks=events))
        # a silent camera must release the others even when no message arrives to trigger a check
        period = max(0.01, min(0.1, params["sync.stale_timeout"] / 2))
        self.poll_timer = node.create_timer(period, self.poll, callback_group=MutuallyExclusiveCallbackGroup())
        node.get_logger().info(
            f"cameras: {', '.join(self.cameras)} (QoS {self.qos_name}, slop {params['sync.slop']} s, "
            f"stale after {params['sync.stale_timeout']} s)")

    def add_consumer(self, fn: Callable[[Batch], None]) -> None:
        """fn(batch) is called in the subscription thread for every Batch; it must not block."""
        self._consumers.append(fn)

    # -- callbacks --------------------------------------------------------------------------------
    def _on_message(self, camera: str, convert, msg) -> None:
        arrival = self._clock()
        try:
            frame = convert(msg, camera, arrival)
        except PerceptionError as e:
            self._bad_message(camera, str(e))
            return
        except Exception as e:  # anything else a malformed message can provoke
            self._bad_message(camera, f"{type(e).__name__}: {e}")
            return
        st = self._state[camera]
        age_ns = self.node.get_clock().now().nanoseconds - frame.stamp
        if 0 <= age_ns < 3600 * NS_PER_S:  # header stamp -> here; only meaningful on a shared clock
            st.latency.add("input", age_ns / 1e6)
        st.rate.tick()
        st.size = f"{frame.width}x{frame.height}"
        st.encoding = getattr(msg, "encoding", None) or getattr(msg, "format", "")
        self._dispatch(self.sync.add(frame))

    def poll(self) -> None:
        self._dispatch(self.sync.poll())

    def _dispatch(self, batch: Batch | None) -> None:
        if batch is None:
            return
        with self._lock:
            self.batches += 1
        for fn in self._consumers:
            try:
                fn(batch)
            except Exception as e:
                self.node.get_logger().error(f"batch consumer failed: {type(e).__name__}: {e}")

    def _bad_message(self, camera: str, error: str) -> None:
        st = self._state[camera]
        now = self._clock()
        with self._lock:
            st.bad += 1
            st.last_error = error.splitlines()[0] if error else "bad message"
            st.last_bad_time = now
            log = now - st.last_logged >= BAD_LOG_PERIOD
            if log:
                st.last_logged = now
        if log:
            self.node.get_logger().warn(f"{camera}: dropping bad message ({st.last_error}); "
                                        f"{st.bad} so far, next report in {BAD_LOG_PERIOD:.0f} s at most")

    def _on_incompatible_qos(self, camera: str, event) -> None:
        st = self._state[camera]
        st.incompatible_qos += 1
        policy = policy_name(getattr(event, "last_policy_kind", "?"))
        self.node.get_logger().warn(
            f"{camera}: a publisher offers a QoS incompatible with this subscription (policy {policy}); "
            f"no messages will arrive from it. This node requests input_qos={self.qos_name} "
            f"({'reliable' if self.qos_name == 'reliable' else 'best effort'}, depth 1)"
            + ("; set input_qos: sensor_data to accept best-effort cameras" if policy == "RELIABILITY"
               and self.qos_name == "reliable" else ""))

    # -- diagnostics ------------------------------------------------------------------------------
    def statuses(self, period: float = 1.0) -> list[Any]:
        out = []
        stats = self.sync.stats()
        now = self._clock()
        for cam in self.cameras:
            st, s = self._state[cam], stats[cam]
            values = {
                "input_rate_hz": st.rate.rate(),
                "input_latency_ms": st.latency.medians().get("input", float("nan")),
                "received": s.received,
                "batched": s.batched,
                "dropped": s.dropped,
                "stale": s.is_stale,
                "stale_count": s.stale,
                "silence_s": self.sync.silence(cam),
                "bad_messages": st.bad,
                "last_error": st.last_error,
                "incompatible_qos_events": st.incompatible_qos,
                "size": st.size,
                "encoding": st.encoding,
            }
            if s.is_stale:
                level = diag.WARN
                message = ("stale: no frame yet" if s.last_arrival is None else
                           f"stale: no frame for {values['silence_s']:.1f} s") + " (left out of the batches)"
            elif now - st.last_bad_time <= max(period, 1.0) * 2:
                level, message = diag.WARN, f"bad messages ({st.bad}): {st.last_error}"
            elif values["silence_s"] > 2 * self.sync.stale_timeout:  # every camera silent: nothing waits
                level, message = diag.WARN, f"no frame for {values['silence_s']:.1f} s"
            elif st.incompatible_qos and s.received == 0:
                level, message = diag.WARN, "incompatible QoS publisher"
            else:
                level, message = diag.OK, f"{values['input_rate_hz']:.1f} Hz"
            out.append(diag.make_status(f"{self.node.get_name()}: camera {cam}", level, message, values,
                                        hardware_id=cam))
        return out


class CameraFusionNode(Node):
    """The `camera_fusion` node: CameraFusion + /diagnostics, and with republish=True (the
    standalone executable) each synchronized frame on <camera ns>/synced/image."""

    def __init__(self, republish: bool = False, node_name: str = "camera_fusion", warn_unknown: bool = True,
                 **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.params = declare_schema_parameters(self, warn_unknown=warn_unknown)
        self.fusion = CameraFusion(self, self.params)
        period = self.params["diagnostics_period"]
        self.diagnostics = diag.DiagnosticsPublisher(self, period)
        self.diagnostics.add(lambda: self.fusion.statuses(period))
        self._republishers: dict[str, Any] = {}
        if republish:
            self._setup_republish()

    def add_consumer(self, fn: Callable[[Batch], None]) -> None:
        self.fusion.add_consumer(fn)

    def _setup_republish(self) -> None:
        from sensor_msgs.msg import CompressedImage, Image

        for cam in self.fusion.cameras:
            if is_compressed_topic(cam):
                topic, kind = output_topic(cam, "synced/image/compressed"), CompressedImage
            else:
                topic, kind = output_topic(cam, "synced/image"), Image
            self._republishers[cam] = self.create_publisher(kind, topic, 1)
            self.get_logger().info(f"republishing synchronized frames of {cam} on {topic}")
        self.fusion.add_consumer(self._republish)

    def _republish(self, batch: Batch) -> None:
        for frame in batch.frames:
            pub = self._republishers.get(frame.camera)
            if pub is not None and frame.source is not None:
                pub.publish(frame.source)  # the received message itself: header and data untouched


def main(argv: list[str] | None = None) -> int:
    return run_main("camera_fusion", lambda nodes: nodes.append(CameraFusionNode(republish=True)), argv,
                    multi_threaded=False)  # light callbacks only


if __name__ == "__main__":
    sys.exit(main())
