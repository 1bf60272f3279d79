"""`perception_container`: camera fusion, detection and lane segmentation composed in one process.

    perception_container --ros-args --params-file config/perception.yaml [-p name:=value ...]

With `sources` set, node `camera_source` reads those cameras / streams / files in this process and
hands each frame to camera_fusion directly (the same Frame object: no message, no DDS hop).
Nodes `camera_fusion`, `detection` (when detection.model is set) and `segmentation` (when
segmentation.model is set) read one params file (its `/**` section), each the parameters it uses.
The fusion node hands each synchronized Batch to both model nodes directly (in-process, no
serialization); each model node runs its model on its own worker thread, so detection and
segmentation of a batch run in parallel and never block the camera callbacks.
"""
from __future__ import annotations

import sys

from perception_edge.core.errors import ConfigError
from perception_edge.nodes.camera_fusion import CameraFusionNode
from perception_edge.nodes.camera_source import CameraSourceNode
from perception_edge.nodes.detection import DetectionNode
from perception_edge.nodes.runner import NodeSet, run_main
from perception_edge.nodes.segmentation import SegmentationNode


def build(nodes: NodeSet) -> None:
    """Create the nodes (each added to `nodes` as soon as it exists, for clean-up) and load the models."""
    # The camera callbacks spin on a SingleThreadedExecutor of their own: rclpy's
    # MultiThreadedExecutor adds 10-20 ms between a message's arrival and its callback (measured with
    # bench-ros), while everything these callbacks do is cheap (views, sync, a non-blocking handoff).
    sources = nodes.add(CameraSourceNode(node_name="camera_source"))
    if not sources.enabled:  # no `sources`: every camera is a subscribed topic
        nodes.remove(sources)
        sources.destroy_node()
    fusion = nodes.add(CameraFusionNode(node_name="camera_fusion",
                                        local_cameras=sources.topics if sources.enabled else ()),
                       own_executor=True)
    if sources.enabled:  # the same Frame objects, handed over in the capture threads
        sources.add_consumer(fusion.feed)
    models = [nodes.add(DetectionNode(node_name="detection")), nodes.add(SegmentationNode(node_name="segmentation"))]
    for node in [n for n in models if not n.enabled]:  # no model set: not part of this process
        nodes.remove(node)
        node.destroy_node()
    running = [n for n in models if n.enabled]
    if not running:
        raise ConfigError("nothing to run: set detection.model and/or segmentation.model")
    for node in running:
        node.cameras = list(fusion.fusion.cameras)  # outputs for every camera fused (sources included)
        node.configure(concurrent_models=len(running))  # the cores are split between the models
        fusion.add_consumer(node.submit)
        node.input_activity = fusion.fusion.activity


def main(argv: list[str] | None = None) -> int:
    return run_main("perception_container", build, argv, num_threads=4)


if __name__ == "__main__":
    sys.exit(main())
