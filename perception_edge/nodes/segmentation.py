"""Lane segmentation node: one Segmenter call per synchronized batch of cameras.

Per camera (namespace of the image topic):
  <ns>/lane_mask     sensor_msgs/Image mono8, class id per pixel at the source resolution, header =
                     the source image's header
  <ns>/lane_overlay  sensor_msgs/Image rgb8, the classes' colours blended into the frame, rendered
                     only while subscribed, on the drawing thread
"""
from __future__ import annotations

import sys
from typing import Any

from perception_edge.core.image_conversion import to_rgb
from perception_edge.core.segmentation import overlay
from perception_edge.core.sync import Batch, Frame
from perception_edge.nodes.messages import header_of, mask_to_msg, rgb_to_msg
from perception_edge.nodes.model_node import ModelNode, per_camera
from perception_edge.nodes.runner import run_main
from perception_edge.nodes.topics import output_topic


class SegmentationNode(ModelNode):
    kind = "segmentation"
    dynamic_parameters = ("segmentation.threshold",)

    def __init__(self, node_name: str = "segmentation", internal_fusion: bool = False, **kwargs):
        super().__init__(node_name, internal_fusion=internal_fusion, **kwargs)

    def load_model(self, cfg):
        from perception_edge.pipeline import Segmenter

        return Segmenter.from_config(cfg, self.concurrent_models)

    @property
    def segmenter(self):
        return self.model

    def setup_outputs(self) -> None:
        from sensor_msgs.msg import Image

        self.mask_pubs = per_camera(self.cameras, lambda c: self.create_publisher(
            Image, output_topic(c, "lane_mask"), 10))
        self.overlay_pubs = per_camera(self.cameras, lambda c: self.create_publisher(
            Image, output_topic(c, "lane_overlay"), 1))
        self.get_logger().info(
            f"publishing {', '.join(output_topic(c, 'lane_mask') for c in self.cameras)}")

    def publish_results(self, batch: Batch, results: list[Any]) -> list[tuple[Frame, Any, Any, Any]]:
        to_draw = []
        for frame, mask in zip(batch.frames, results):
            pub = self.mask_pubs.get(frame.camera)
            if pub is None:
                continue
            header = header_of(frame)
            pub.publish(mask_to_msg(mask, header))
            ov = self.overlay_pubs.get(frame.camera)
            if ov is not None and ov.get_subscription_count() > 0:
                to_draw.append((frame, mask, header, ov))
        return to_draw

    def render(self, frame: Frame, result: Any, header: Any) -> Any:
        return rgb_to_msg(overlay(to_rgb(frame.pixels, frame.order), result), header)

    def on_parameter(self, name: str, value: Any) -> None:
        if name == "segmentation.threshold":
            self.model.threshold = float(value)


def build(nodes) -> None:
    nodes.add(SegmentationNode(internal_fusion=True)).configure()


def main(argv: list[str] | None = None) -> int:
    return run_main("segmentation_node", build, argv, multi_threaded=False)  # heavy work is on worker threads


if __name__ == "__main__":
    sys.exit(main())
