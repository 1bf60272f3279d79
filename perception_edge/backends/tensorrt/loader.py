"""What create_backend calls for TensorRT: a .engine/.plan file checked against its sidecar and loaded,
or an .onnx model's cached engine, built in the background on request (EngineBuildInProgress)."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perception_edge.backends.base import ENGINE_SUFFIXES, Backend, TensorSpec
from perception_edge.backends.tensorrt.builder import build_engine_file
from perception_edge.backends.tensorrt.cache import (
    BuildSettings, RuntimeIdentity, cache_key, check_engine, engine_path_for, make_settings, split_batch)
from perception_edge.backends.tensorrt.commands import build_command
from perception_edge.backends.tensorrt.cuda import cuda_memory
from perception_edge.backends.tensorrt.onnx_io import OnnxIO, read_onnx_io
from perception_edge.backends.tensorrt.runtime import TensorRTBackend, import_tensorrt, runtime_identity
from perception_edge.core.errors import ConfigError, ModelError, first_line
from perception_edge.core.files import sha256_bytes

log = logging.getLogger("perception_edge.tensorrt")


class EngineBuildInProgress(Backend):
    """Stands in for a TensorRT backend while its engine is built on a background thread, so a node
    starts (and reports "building engine" in /diagnostics) instead of blocking for minutes.

    status: "building engine", then "ready" or "failed: <reason>". inputs/outputs come from the ONNX
    model until the engine is loaded; run() raises a ModelError until then and afterwards delegates.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str, onnx: OnnxIO, settings: BuildSettings, engine_path: str,
                 build: Callable[[threading.Event], Any], load: Callable[[], Backend], start: bool = True):
        self.path = str(onnx_path)
        self.engine_path = str(engine_path)
        self.settings = settings
        self.metadata = dict(onnx.metadata)
        batch = None if settings.dynamic_batch else settings.batch.max
        self._inputs = [TensorSpec(t.name, (batch,) + tuple(dims), t.dtype)
                        for t, (_, dims) in zip(onnx.inputs, settings.inputs)]
        self._outputs = [TensorSpec(t.name, (batch,) + tuple(t.shape[1:]), t.dtype) for t in onnx.outputs]
        self._build, self._load = build, load
        self._backend: Backend | None = None
        self._state, self._error = "building", ""
        self._cancel, self._done = threading.Event(), threading.Event()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="tensorrt-engine-build", daemon=True)
        if start:
            self._thread.start()

    def _work(self) -> None:
        try:
            self._build(self._cancel)
            if self._cancel.is_set():
                self._state, self._error = "failed", "cancelled"
                return
            self._backend = self._load()
            self._state = "ready"
            log.warning("TensorRT engine %s ready after %.0f s", self.engine_path, time.monotonic() - self.started)
        except Exception as e:
            self._state, self._error = "failed", first_line(e)
            log.error("building the TensorRT engine for %s failed: %s", self.path, self._error)
        finally:
            self._done.set()

    @property
    def status(self) -> str:
        return {"building": "building engine", "ready": "ready"}.get(self._state, f"failed: {self._error}")

    @property
    def building(self) -> bool:
        return self._state == "building"

    @property
    def ready(self) -> bool:
        return self._state == "ready"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the build ends; True when the engine is ready."""
        self._done.wait(timeout)
        return self.ready

    @property
    def inputs(self) -> list[TensorSpec]:  # type: ignore[override]
        return self._backend.inputs if self._backend is not None else self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:  # type: ignore[override]
        return self._backend.outputs if self._backend is not None else self._outputs

    @property
    def max_batch(self) -> int | None:
        return self.settings.batch.max

    def batch_sizes(self, n: int) -> list[int]:
        return split_batch(n, [self.settings.batch])

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        backend = self._backend
        if backend is not None:
            return backend.run(tensor)
        if self._state == "failed":
            raise ModelError(f"building the TensorRT engine for {self.path} failed: {self._error}")
        raise ModelError(f"the TensorRT engine for {Path(self.path).name} is still being built "
                         f"({time.monotonic() - self.started:.0f} s so far); frames are skipped until it is ready")

    def close(self) -> None:
        self._cancel.set()  # honoured between build phases (TensorRT 8.6+ progress monitor)
        if self._backend is not None:
            self._backend.close()


def create_tensorrt_backend(path: str, engine: Any, input_size: int | None = None, timing_cache: str = "") -> Backend:
    """A .engine/.plan file: its sidecar checked against this TensorRT and GPU, then loaded. An .onnx
    model: its cached engine; if there is none, a background build (engine.auto_build) or a ModelError
    with the build-engine command that makes it. engine: the engine.* settings, a
    perception_edge.config.EngineSection (create_backend fills in the schema's defaults)."""
    opts = {**dataclasses.asdict(engine), "input_size": input_size, "timing_cache": timing_cache}
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in ENGINE_SUFFIXES + (".onnx",):
        raise ModelError(f"{path}: TensorRT takes a serialized engine (.engine/.plan) or an .onnx model")
    trt = import_tensorrt()
    cuda = cuda_memory()
    identity = runtime_identity(trt, cuda)
    if suffix != ".onnx":
        data = p.read_bytes()
        check = check_engine(p, identity, require_sidecar=bool(opts["check_sidecar"]), engine_sha256=sha256_bytes(data))
        for warning in check.warnings:
            log.warning(warning)
        return TensorRTBackend(str(p), data, check.sidecar, cuda=cuda)
    return _backend_for_onnx(p, opts, cuda, identity)


def _backend_for_onnx(p: Path, opts: dict[str, Any], cuda, identity: RuntimeIdentity) -> Backend:
    onnx_bytes = p.read_bytes()
    onnx = read_onnx_io(onnx_bytes)
    if opts["precision"] == "int8":
        raise ConfigError(f"engine.precision int8: an INT8 engine needs calibration frames; build it with "
                          f"perception-edge build-engine {p} --precision int8 --calibration FRAMES "
                          "and set the model parameter to the .engine it writes")
    settings = make_settings(onnx, opts["precision"], max_batch=None, workspace_mb=opts["workspace_mb"],
                             dla_core=opts["dla_core"], input_size=opts.get("input_size"),
                             default_max_batch=int(opts["max_batch"]))
    onnx_sha = sha256_bytes(onnx_bytes)
    key = cache_key(onnx_sha, settings, identity)
    engine_path = engine_path_for(p, settings, key, opts["cache_dir"])
    command = build_command(str(p), settings, cache_dir=opts["cache_dir"], input_size=opts.get("input_size"))
    if engine_path.is_file():
        data = engine_path.read_bytes()
        try:
            check = check_engine(engine_path, identity, key=key, engine_sha256=sha256_bytes(data))
            return TensorRTBackend(str(engine_path), data, check.sidecar, cuda=cuda)
        except ModelError as e:
            if not opts["auto_build"]:
                raise ModelError(f"{e} (or set engine.auto_build true)") from None
            log.warning("%s; rebuilding", e)
    if not opts["auto_build"]:
        raise ModelError(f"no TensorRT engine for {p.name} ({settings.precision}, batch {settings.batch}, "
                         f"{identity.describe()}) in {engine_path.parent}: build it with `{command}`, "
                         "or set engine.auto_build true to build it in the background")
    timing_cache = opts.get("timing_cache") or str(
        engine_path.parent / f"timing-trt{identity.tensorrt_version}-{identity.sm}.cache")
    log.warning("building TensorRT engine %s in the background (takes minutes on a Jetson)", engine_path)

    def build(cancel: threading.Event):
        build_engine_file(str(p), settings, str(engine_path), identity=identity, cuda=cuda, onnx_bytes=onnx_bytes,
                          key=key, timing_cache=timing_cache, log=log.info, cancel=cancel)

    def load() -> Backend:
        data = engine_path.read_bytes()
        check = check_engine(engine_path, identity, key=key, engine_sha256=sha256_bytes(data))
        return TensorRTBackend(str(engine_path), data, check.sidecar, cuda=cuda)

    return EngineBuildInProgress(str(p), onnx, settings, str(engine_path), build, load)


__all__ = ["EngineBuildInProgress", "create_tensorrt_backend"]
