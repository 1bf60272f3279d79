"""The ROS side of `perception-edge carla --ros`: the perception container's results for CARLA's
natively published cameras, one tick at a time (rclpy; the loop itself, perception_edge.sim, stays ROS-free).

CARLA 0.9.15+ started with ``--ros2`` publishes each sensor spawned with a ``ros_name`` and
``enable_for_ros()`` on ``/carla/<role_name>/<ros_name>/image`` (header stamp: simulation time)
and the clock on ``/clock``. The container (``ros2 launch perception_edge carla.launch.py``) takes
those topics as cameras and publishes ``<ns>/detections`` and ``<ns>/lane_mask`` with the input's
header. ``RosResults`` subscribes to them and, called with a tick's stamp, waits (up to
``timeout``) for every camera's results of that stamp -- results of other stamps are kept in a
bounded buffer and dropped when old -- and returns them as the in-process pipeline would.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Sequence

import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.data import bags
from perception_edge.sim.carla_loop import Outputs, namespace

KEEP = 64  # results of other stamps kept per topic


class RosResults:
    def __init__(self, cameras: Sequence[str], role_name: str, timeout: float = 5.0, detections: bool = True,
                 lane_masks: bool = True, tolerance_ns: int = 1_000_000, wait: float = 30.0):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray, LabelInfo

        self.context = rclpy.Context()  # its own: init and shutdown never touch another node's
        rclpy.init(context=self.context)
        self.cameras, self.timeout, self.tolerance = list(cameras), float(timeout), int(tolerance_ns)
        self.node = rclpy.create_node("perception_edge_carla_results", context=self.context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._cond = threading.Condition()
        self._buf: dict[tuple[str, str], collections.OrderedDict] = {}
        self.class_names: list[str] = []
        self.threshold = 0.0
        self.missing = 0  # results that did not come within the timeout
        self.kinds = [k for k, on in (("detections", detections), ("lane_mask", lane_masks)) if on]
        for cam in self.cameras:
            ns = namespace(role_name, cam)
            for kind in self.kinds:
                self._buf[(cam, kind)] = collections.OrderedDict()
                msg_type = Detection2DArray if kind == "detections" else Image
                self.node.create_subscription(msg_type, f"{ns}/{kind}", self._callback(cam, kind), qos)
            label_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            from rclpy.qos import DurabilityPolicy

            label_qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
            self.node.create_subscription(LabelInfo, f"{ns}/label_info", self._labels, label_qos)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._executor.spin, daemon=True)
        self._spin.start()
        self.topics = [f"{namespace(role_name, c)}/{k}" for c in self.cameras for k in self.kinds]
        self.wait_for_publishers(wait)

    def wait_for_publishers(self, timeout: float) -> bool:
        """Wait (up to timeout s) until every result topic has a publisher (the container has started
        and been discovered), so the first ticks are not lost to discovery; warns when not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.node.count_publishers(t) > 0 for t in self.topics):
                return True
            time.sleep(0.1)
        missing = [t for t in self.topics if self.node.count_publishers(t) == 0]
        if missing:
            print(f"warning: no publisher of {', '.join(missing)} after {timeout:g} s: is the perception container "
                  f"running (ros2 launch perception_edge carla.launch.py)?", flush=True)
        return not missing

    def _labels(self, msg) -> None:
        with self._cond:
            self.class_names = [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)]
            self.threshold = float(msg.threshold)

    def _callback(self, cam: str, kind: str):
        buf = self._buf[(cam, kind)]

        def on(msg) -> None:
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            with self._cond:
                buf[stamp] = msg
                while len(buf) > KEEP:
                    buf.popitem(last=False)
                self._cond.notify_all()
        return on

    def _take(self, cam: str, kind: str, stamp: int):
        buf = self._buf[(cam, kind)]
        for s in list(buf):
            if abs(s - stamp) <= self.tolerance:
                return buf.pop(s)
        return None

    def __call__(self, cameras: Sequence[str], frames: Sequence[np.ndarray], stamp: int) -> Outputs:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        got: dict[tuple[str, str], object] = {}
        with self._cond:
            while True:
                for cam in cameras:
                    for kind in self.kinds:
                        if (cam, kind) not in got:
                            msg = self._take(cam, kind, stamp)
                            if msg is not None:
                                got[(cam, kind)] = msg
                remaining = deadline - time.monotonic()
                if len(got) == len(cameras) * len(self.kinds) or remaining <= 0:
                    break
                self._cond.wait(remaining)
            names = list(self.class_names)
        # a result that did not come in time scores as an empty one (counted in .missing)
        dets, masks = [], []
        for cam, frame in zip(cameras, frames):
            d = got.get((cam, "detections"))
            if d is None and "detections" in self.kinds:
                self.missing += 1
            dets.append(bags.detections_from_msg(d, list(names)) if d is not None
                        else Detections.empty(names) if "detections" in self.kinds else None)
            m = got.get((cam, "lane_mask"))
            if m is None and "lane_mask" in self.kinds:
                self.missing += 1
            masks.append(bags.mono8_from_msg(m) if m is not None
                         else np.zeros(frame.shape[:2], np.uint8) if "lane_mask" in self.kinds else None)
        return Outputs(dets, masks, names, self.threshold, (time.perf_counter() - t0) * 1e3)

    def close(self) -> None:
        import rclpy

        self._executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
