"""Inference backends behind one interface; runtimes are imported only when used."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from perception_edge.backends.base import BACKEND_NAMES, ENGINE_SUFFIXES, Backend, TensorSpec
from perception_edge.core.errors import ConfigError, ModelError


def create_backend(model_path: str, backend: str = "auto", num_threads: int = 0,
                   engine: dict[str, Any] | None = None, onnxruntime: dict[str, Any] | None = None) -> Backend:
    """Load a model: `.onnx` runs on ONNX Runtime, `.engine`/`.plan` on TensorRT (for `auto`).

    num_threads and onnxruntime (the configuration's onnxruntime.* values without the prefix: memory
    settings) apply to ONNX Runtime; engine holds the TensorRT engine-cache settings (engine.*
    values), used when TensorRT gets an .onnx model.
    """
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {', '.join(BACKEND_NAMES)}")
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if backend == "auto":
        backend = "tensorrt" if is_engine else "onnxruntime"
    if backend == "onnxruntime":
        if is_engine:
            raise ModelError(f"{model_path} is a TensorRT engine; ONNX Runtime needs the .onnx model")
        from perception_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(str(path), num_threads=num_threads, **(onnxruntime or {}))
    from perception_edge.backends.tensorrt.loader import create_tensorrt_backend

    return create_tensorrt_backend(str(path), engine or {})


__all__ = ["Backend", "TensorSpec", "create_backend", "BACKEND_NAMES", "ENGINE_SUFFIXES"]
