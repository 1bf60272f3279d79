"""YOLOv5 detection node: one Detector call per synchronized batch of cameras.

Per camera (namespace of the image topic, /cam_front/image_raw -> /cam_front):
  <ns>/detections   vision_msgs/Detection2DArray, header = the source image's header
  <ns>/label_info   vision_msgs/LabelInfo, transient local (published at start, and again when
                    detection.conf_threshold changes)
  <ns>/debug_image  sensor_msgs/Image rgb8 with boxes (core.drawing), rendered only while subscribed,
                    on the drawing thread
  <ns>/instance_mask  sensor_msgs/Image mono16 at source size, instance-segmentation models (YOLOv5
                    v7.0 -seg) only: pixel value i + 1 is detection i of the Detection2DArray with the
                    same header, 0 is background (overlaps: the higher-scored detection); computed only
                    for the kept detections, cropped to their boxes

In the container, batches come from the camera_fusion node in-process; standalone
(`ros2 run perception_edge detection_node`) the node subscribes to the cameras itself.
"""
from __future__ import annotations

import sys
from typing import Any

from perception_edge.core.drawing import draw
from perception_edge.core.image_conversion import to_rgb
from perception_edge.core.sync import Batch, Frame
from perception_edge.nodes.detections_cdr import DetectionsPublisher, matches_rclpy
from perception_edge.nodes.messages import header_of, instance_mask_to_msg, label_info_msg, rgb_to_msg
from perception_edge.nodes.model_node import ModelNode, per_camera
from perception_edge.nodes.runner import run_main
from perception_edge.nodes.topics import output_topic


def latched_qos():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class DetectionNode(ModelNode):
    kind = "detection"
    dynamic_parameters = ("detection.conf_threshold", "detection.iou_threshold", "detection.max_detections",
                          "detection.agnostic_nms")

    def __init__(self, node_name: str = "detection", internal_fusion: bool = False, **kwargs):
        super().__init__(node_name, internal_fusion=internal_fusion, **kwargs)

    def load_model(self, cfg):
        from perception_edge.pipeline import Detector

        return Detector.from_config(cfg, self.concurrent_models)

    @property
    def detector(self):
        return self.model

    def setup_outputs(self) -> None:
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray, LabelInfo

        serialized = matches_rclpy()  # publish CDR bytes written here, when they check out
        self.det_pubs = per_camera(self.cameras, lambda c: DetectionsPublisher(self.create_publisher(
            Detection2DArray, output_topic(c, "detections"), 10), serialized))
        self.label_pubs = per_camera(self.cameras, lambda c: self.create_publisher(
            LabelInfo, output_topic(c, "label_info"), latched_qos()))
        self.mask_pubs: dict[str, Any] = {}
        if self.model.segmentation:
            self.mask_pubs = per_camera(self.cameras, lambda c: self.create_publisher(
                Image, output_topic(c, "instance_mask"), 10))
        self.debug_pubs: dict[str, Any] = {}
        if self.cfg.debug_image:
            self.debug_pubs = per_camera(self.cameras, lambda c: self.create_publisher(
                Image, output_topic(c, "debug_image"), 1))
        self.publish_label_info()
        self.get_logger().info(
            f"{len(self.model.class_names)} classes; publishing {', '.join(output_topic(c, 'detections') for c in self.cameras)}"
            + ("" if serialized else " (as rclpy messages: the direct CDR encoding did not match this ROS install)"))

    def publish_label_info(self) -> None:
        from std_msgs.msg import Header

        header = Header(stamp=self.get_clock().now().to_msg())
        msg = label_info_msg(self.model.class_names, self.model.conf_threshold, header)
        for pub in self.label_pubs.values():
            pub.publish(msg)

    def publish_results(self, batch: Batch, results: list[Any]) -> list[tuple[Frame, Any, Any, Any]]:
        to_draw = []
        for frame, dets in zip(batch.frames, results):
            pub = self.det_pubs.get(frame.camera)
            if pub is None:
                continue
            header = header_of(frame)
            pub.publish(dets, header)
            mask_pub = self.mask_pubs.get(frame.camera)
            if mask_pub is not None and dets.instance_mask is not None:
                mask_pub.publish(instance_mask_to_msg(dets.instance_mask, header))
            debug = self.debug_pubs.get(frame.camera)
            if debug is not None and debug.get_subscription_count() > 0:
                to_draw.append((frame, dets, header, debug))
        return to_draw

    def render(self, frame: Frame, result: Any, header: Any) -> Any:
        return rgb_to_msg(draw(to_rgb(frame.pixels, frame.order), result), header)

    def on_parameter(self, name: str, value: Any) -> None:
        attr = name.split(".", 1)[1]
        setattr(self.model, attr, bool(value) if attr == "agnostic_nms" else value)
        if attr == "conf_threshold":
            self.publish_label_info()


def build(nodes) -> None:
    nodes.add(DetectionNode(internal_fusion=True)).configure()


def main(argv: list[str] | None = None) -> int:
    return run_main("detection_node", build, argv, multi_threaded=False)  # heavy work is on worker threads


if __name__ == "__main__":
    sys.exit(main())
