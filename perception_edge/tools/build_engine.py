"""Deprecated alias of perception_edge.cli.build_engine and perception_edge.engine_request (importing it warns)."""
from __future__ import annotations

from perception_edge.tools import deprecated_module

__getattr__ = deprecated_module(__name__, ("perception_edge.cli.build_engine", "perception_edge.engine_request"), {
    "CalibrationBatches": "perception_edge.core.calibration:CalibrationBatches",
    "CalibrationCache": "perception_edge.backends.tensorrt.calibrators:CalibrationCache",
    "CalibrationPlan": "perception_edge.backends.tensorrt.calibrators:CalibrationPlan",
    "calibration_digest": "perception_edge.backends.tensorrt.calibrators:calibration_digest",
    "make_calibrator": "perception_edge.backends.tensorrt.calibrators:make_calibrator",
    "build_command": "perception_edge.backends.tensorrt.commands:build_command",
    "trtexec_command": "perception_edge.backends.tensorrt.commands:trtexec_command",
    "build_serialized": "perception_edge.backends.tensorrt.builder:build_serialized",
    "build_engine_file": "perception_edge.backends.tensorrt.builder:build_engine_file"})
