"""Deprecated alias: the TensorRT backend moved to perception_edge.backends.tensorrt (runtime, cuda,
loader). Importing this module warns; it re-exports the names it used to define."""
from __future__ import annotations

import warnings

from perception_edge.backends.tensorrt.cuda import CudaPythonMemory, PyCudaMemory, cuda_memory
from perception_edge.backends.tensorrt.loader import EngineBuildInProgress, create_tensorrt_backend
from perception_edge.backends.tensorrt.runtime import (
    API_BINDINGS, API_TENSORS, EngineDescription, IOPlan, TensorInfo, TensorPlan, TensorRTBackend,
    TensorRTNotInstalled, describe_engine, detect_api, import_tensorrt, numpy_dtype, plan_io, runtime_identity,
    trt_logger)
from perception_edge.config import PARAMETERS

# the engine.* defaults, now the schema's (perception_edge.config.EngineSection)
ENGINE_DEFAULTS = {**{p.name.split(".", 1)[1]: p.default for p in PARAMETERS if p.name.startswith("engine.")},
                   "timing_cache": "", "input_size": None}

warnings.warn("perception_edge.backends.tensorrt_backend is deprecated: import from perception_edge.backends.tensorrt "
              "(runtime, cuda, loader)", DeprecationWarning, stacklevel=2)

__all__ = [
    "TensorRTBackend", "EngineBuildInProgress", "create_tensorrt_backend", "TensorRTNotInstalled",
    "import_tensorrt", "cuda_memory", "runtime_identity", "describe_engine", "detect_api", "plan_io",
    "EngineDescription", "TensorInfo", "IOPlan", "TensorPlan", "numpy_dtype", "API_TENSORS", "API_BINDINGS",
    "trt_logger", "PyCudaMemory", "CudaPythonMemory", "ENGINE_DEFAULTS",
]
