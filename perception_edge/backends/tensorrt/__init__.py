"""TensorRT: everything about engines in one place. Importing it needs neither TensorRT nor CUDA.

    onnx_io      ONNX inputs/outputs/metadata read from the protobuf (no onnx package needed)
    cache        build settings, cache keys, the JSON sidecar and the checks that refuse stale engines
    cuda         GPU memory, streams and copies through pycuda or cuda-python
    runtime      TensorRTBackend (TensorRT 8.5 binding API and the 8.5+/10.x named-tensor API), I/O plan
    calibrators  INT8 calibration plan, calibration-cache file, the TensorRT calibrators
    commands     the build-engine and trtexec command lines for given settings
    builder      ONNX -> serialized engine + sidecar
    loader       create_tensorrt_backend (what create_backend calls), background builds

Imports point one way: these modules import perception_edge.core and perception_edge.backends.base
only (and each other, in the order above); the command line (perception-edge build-engine) sits on top.
"""
from __future__ import annotations

from perception_edge.backends.tensorrt.builder import build_engine_file, build_serialized
from perception_edge.backends.tensorrt.cache import (
    BatchProfile, BuildSettings, RuntimeIdentity, check_engine, make_settings, read_sidecar)
from perception_edge.backends.tensorrt.cuda import cuda_memory
from perception_edge.backends.tensorrt.loader import EngineBuildInProgress, create_tensorrt_backend
from perception_edge.backends.tensorrt.onnx_io import OnnxIO, read_onnx_io
from perception_edge.backends.tensorrt.runtime import TensorRTBackend, TensorRTNotInstalled, import_tensorrt

__all__ = [
    "TensorRTBackend", "EngineBuildInProgress", "create_tensorrt_backend", "TensorRTNotInstalled",
    "import_tensorrt", "cuda_memory", "BatchProfile", "BuildSettings", "RuntimeIdentity", "OnnxIO",
    "read_onnx_io", "make_settings", "check_engine", "read_sidecar", "build_engine_file", "build_serialized",
]
