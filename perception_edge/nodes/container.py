"""`perception_container`: camera fusion, detection and lane segmentation composed in one process.

    perception_container --ros-args --params-file config/perception.yaml [-p name:=value ...]

Nodes `camera_fusion`, `detection` (when detection.model is set) and `segmentation` (when
segmentation.model is set) share one parameter set (the params file's `/**` section). The model
nodes (parameter services, diagnostics timers) spin on a MultiThreadedExecutor; the fusion node's
camera callbacks on a SingleThreadedExecutor thread of their own, for the lowest
arrival-to-callback latency. The fusion node hands each synchronized Batch to both model nodes
directly (in-process, no serialization); each model node runs its model on its own worker thread,
so detection and segmentation of a batch run in parallel and never block the camera callbacks.
"""
from __future__ import annotations

import sys
from typing import Any

from perception_edge.core.errors import ConfigError
from perception_edge.nodes.camera_fusion import CameraFusionNode
from perception_edge.nodes.parameters import run_main


def build(nodes: list[Any]) -> None:
    """Create the nodes (appending each to `nodes` as soon as it exists, for clean-up)."""
    fusion = CameraFusionNode(republish=False, node_name="camera_fusion")
    fusion.own_executor = True  # camera callbacks on their own single-threaded executor (see run_main)
    nodes.append(fusion)
    params = fusion.params
    if not params["detection.model"] and not params["segmentation.model"]:
        raise ConfigError("nothing to run: set detection.model and/or segmentation.model")
    models = bool(params["detection.model"]) + bool(params["segmentation.model"])  # run concurrently
    model_nodes = []
    if params["detection.model"]:
        from perception_edge.nodes.detection import DetectionNode

        model_nodes.append(DetectionNode(node_name="detection", warn_unknown=False, concurrent_models=models))
        nodes.append(model_nodes[-1])
    if params["segmentation.model"]:
        from perception_edge.nodes.segmentation import SegmentationNode

        model_nodes.append(SegmentationNode(node_name="segmentation", warn_unknown=False, concurrent_models=models))
        nodes.append(model_nodes[-1])
    for node in model_nodes:
        fusion.add_consumer(node.submit)
        node.input_activity = fusion.fusion.activity


def main(argv: list[str] | None = None) -> int:
    return run_main("perception_container", build, argv, num_threads=4)


if __name__ == "__main__":
    sys.exit(main())
