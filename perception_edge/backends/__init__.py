"""Inference backends behind one interface; runtimes are imported only when used."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Union

from perception_edge.backends.base import BACKEND_NAMES, ENGINE_SUFFIXES, Backend, TensorSpec
from perception_edge.config import EngineSection, OnnxRuntimeSection, Sections
from perception_edge.core.errors import ConfigError, ModelError

EngineOptions = Union[EngineSection, Mapping[str, Any], None]
OnnxRuntimeOptions = Union[OnnxRuntimeSection, Mapping[str, Any], None]


def _section(prefix: str, given: Any, extra: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """A typed section from a section, None (the schema's defaults) or a mapping of some of its
    fields (checked against the schema); keys named in `extra` are returned apart."""
    if given is None or not isinstance(given, Mapping):
        return (given if given is not None else getattr(Sections.defaults(), prefix)), {}
    rest = {k: v for k, v in given.items() if k in extra}
    changes = {f"{prefix}.{k}": v for k, v in given.items() if k not in extra and v is not None}
    return getattr(Sections.defaults().replace(**changes), prefix), rest


def create_backend(model_path: str, backend: str = "auto", num_threads: int = 0,
                   engine: EngineOptions = None, onnxruntime: OnnxRuntimeOptions = None) -> Backend:
    """Load a model: `.onnx` runs on ONNX Runtime, `.engine`/`.plan` on TensorRT (for `auto`).

    num_threads and onnxruntime (config.OnnxRuntimeSection: memory settings) apply to ONNX Runtime;
    engine (config.EngineSection: engine-cache settings) to TensorRT, used when it gets an .onnx
    model. Either may also be a mapping of some of the section's fields (the rest: the schema's
    defaults), or None (all defaults).
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

        ort_section, _ = _section("onnxruntime", onnxruntime)
        return OnnxRuntimeBackend(str(path), num_threads=num_threads, **dataclasses.asdict(ort_section))
    from perception_edge.backends.tensorrt.loader import create_tensorrt_backend

    engine_section, extra = _section("engine", engine, extra=("timing_cache", "input_size"))
    return create_tensorrt_backend(str(path), engine_section, **extra)


__all__ = ["Backend", "TensorSpec", "create_backend", "BACKEND_NAMES", "ENGINE_SUFFIXES"]
