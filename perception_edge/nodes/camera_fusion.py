"""The `camera_fusion` node: the cameras synchronized into batches (nodes/fusion.py), and their
/diagnostics. In the container it hands each batch to the model nodes in-process.

`ros2 run perception_edge camera_fusion` runs it alone and republishes each synchronized frame on
`<camera ns>/synced/image` (the original message, header untouched) so the sync can be inspected;
it keeps the last few received messages per camera for that (Frames carry no message).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from perception_edge.core.sync import Batch
from perception_edge.nodes import diagnostics as diag
# CameraFusion and its helpers lived in this module before the node got a file of its own
from perception_edge.nodes.fusion import (  # noqa: F401
    CameraFusion, LossCounter, input_qos_profile, message_info_callbacks, policy_name)
from perception_edge.nodes.messages import is_compressed_topic
from perception_edge.nodes.parameters import declare_parameters
from perception_edge.nodes.runner import Managed, run_main
from perception_edge.nodes.topics import output_topic
from rclpy.node import Node


class CameraFusionNode(Managed, Node):
    """The `camera_fusion` node: CameraFusion + /diagnostics, and with republish=True (the
    standalone executable) each synchronized frame on <camera ns>/synced/image."""

    def __init__(self, republish: bool = False, node_name: str = "camera_fusion", local_cameras=(),
                 **node_kwargs):
        """local_cameras: cameras fed in-process (feed), e.g. the camera_source node's topics."""
        node_kwargs.pop("warn_unknown", None)  # no longer needed: each node declares what it uses
        super().__init__(node_name, **node_kwargs)
        self.cfg = declare_parameters(self, "fusion")
        self.fusion = CameraFusion(self, self.cfg, keep_messages=4 if republish else 0,
                                   local_cameras=local_cameras)
        period = self.cfg.diagnostics_period
        self.diagnostics = diag.DiagnosticsPublisher(self, period)
        self.diagnostics.add(lambda: self.fusion.statuses(period))
        self._republishers: dict[str, Any] = {}
        if republish:
            self._setup_republish()

    def add_consumer(self, fn: Callable[[Batch], None]) -> None:
        self.fusion.add_consumer(fn)

    def feed(self, frame) -> None:
        """A frame of an in-process camera (the camera_source node's consumer)."""
        self.fusion.feed(frame)

    def start(self) -> None:
        self.fusion.start()

    def stop(self) -> None:
        self.fusion.close()

    def destroy_node(self):
        self.fusion.close()
        return super().destroy_node()

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
            msg = self.fusion.message_of(frame) if pub is not None else None
            if msg is not None:
                pub.publish(msg)  # the received message itself: header and data untouched


def main(argv: list[str] | None = None) -> int:
    return run_main("camera_fusion", lambda nodes: nodes.add(CameraFusionNode(republish=True)), argv,
                    multi_threaded=False)  # light callbacks only


if __name__ == "__main__":
    sys.exit(main())
