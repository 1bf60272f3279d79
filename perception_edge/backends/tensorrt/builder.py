"""ONNX -> serialized TensorRT engine (+ JSON sidecar): parse, configure (precision, workspace, DLA,
batch profiles, timing cache), calibrate INT8 on CalibrationBatches (implicit INT8, TensorRT 8.5) or
take the scales of an explicitly quantized Q/DQ model (INT8 + FP16 flags, no calibrator; or a strongly
typed network on TensorRT 10), build with progress output.
TensorRT is imported when a build starts."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from perception_edge.backends.tensorrt.cache import BuildSettings, cache_key, make_sidecar, write_sidecar
from perception_edge.backends.tensorrt.calibrators import CalibrationCache, CalibrationPlan, make_calibrator
from perception_edge.backends.tensorrt.onnx_io import read_onnx_io
from perception_edge.backends.tensorrt.runtime import import_tensorrt, trt_logger
from perception_edge.core.calibration import CalibrationBatches
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import atomic_write, sha256_bytes


class _Ticker:
    """Progress lines for TensorRT without IProgressMonitor (before 8.6): elapsed time, periodically."""

    def __init__(self, log: Callable[[str], None], period: float = 20.0):
        self.log, self.period = log, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.monotonic()

    def _run(self):
        while not self._stop.wait(self.period):
            self.log(f"  still building ({time.monotonic() - self.start:.0f} s)")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def _progress_monitor(trt, log: Callable[[str], None], cancel: threading.Event | None):
    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            if parent_phase is None:
                log(f"  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            now = time.monotonic()
            if now - self.last >= 5.0:
                self.last = now
                log(f"  {phase_name}: {step + 1}/{self.steps.get(phase_name, '?')}")
            return not (cancel is not None and cancel.is_set())  # False cancels the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()


def _parse_onnx(trt, network, logger, onnx_bytes: bytes, onnx_path: str) -> None:
    parser = trt.OnnxParser(network, logger)
    try:
        ok = parser.parse(onnx_bytes, str(Path(onnx_path).resolve()))  # path: external weights resolve
    except TypeError:
        ok = parser.parse(onnx_bytes)
    if not ok:
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(e.desc() if hasattr(e, "desc") else str(e))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors[0] if errors else 'unknown error'}")


def build_serialized(trt, onnx_bytes: bytes, onnx_path: str, settings: BuildSettings, cuda,
                     calibration: CalibrationPlan | None = None, timing_cache: str = "",
                     log: Callable[[str], None] = print, cancel: threading.Event | None = None,
                     verbose: bool = False, frames: Iterable[Sequence[Any]] | None = None) -> bytes:
    """Parse, configure and build; the serialized engine. Call inside cuda.activate().

    INT8: `frames` are the calibration frames ((pixels, order, ...) tuples, e.g. from
    perception_edge.data.frame_sources.iter_frames over calibration.source): the caller opens the
    source, this module reads no frame files itself. Without a source the calibration cache is used.
    """
    logger = trt_logger(trt, verbose)
    builder = trt.Builder(logger)
    flags = 0
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:  # explicit batch is the only mode in 10.x
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if settings.strongly_typed:
        if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            raise ConfigError(f"--strongly-typed needs TensorRT 10 (this is {trt.__version__}); "
                              "build the Q/DQ model without it (INT8 + FP16 flags)")
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    _parse_onnx(trt, network, logger, onnx_bytes, onnx_path)
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    else:
        config.max_workspace_size = settings.workspace_mb << 20
    for flag in settings.build_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if "FP16" in settings.build_flags and not getattr(builder, "platform_has_fast_fp16", True):
        log("  note: this GPU has no fast FP16; the engine may be no faster than FP32")
    if settings.dla_core >= 0:
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if settings.dla_core >= cores:
            raise ConfigError(f"--dla-core {settings.dla_core}: this device has {cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core

    shapes = settings.profile_shapes()
    profile = builder.create_optimization_profile()
    dynamic = []
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if any(int(d) < 0 for d in inp.shape):
            if inp.name not in shapes:
                raise ModelError(f"network input {inp.name} is not among the settings' inputs {list(shapes)}")
            lo, opt, hi = shapes[inp.name]
            profile.set_shape(inp.name, lo, opt, hi)
            dynamic.append(inp.name)
    if dynamic:
        config.add_optimization_profile(profile)

    calibrator = None
    if settings.explicit_int8:  # Q/DQ model: TensorRT takes the scales from the graph, no calibrator
        log("  explicit INT8: scales from the model's Q/DQ nodes, no calibration"
            + ("; strongly typed network" if settings.strongly_typed else "; FP16 for layers outside Q/DQ"))
    elif settings.precision == "int8":
        if calibration is None:
            raise ConfigError("INT8 needs a calibration plan")
        cache = CalibrationCache(calibration.cache_path, calibration.expected_cache_digest)
        batches = None
        if calibration.source:
            if frames is None:
                raise ConfigError(f"INT8 calibration from {calibration.source} needs its frames (frames=...)")
            batches = CalibrationBatches(frames, calibration.input_hw, calibration.batch_size,
                                         calibration.frames, calibration.mode)
        calibrator = make_calibrator(trt, calibration.calibrator, batches, cache, cuda, calibration.batch_size, log)
        config.int8_calibrator = calibrator
        if dynamic:  # calibration runs at one fixed shape: the calibration batch
            cal_profile = builder.create_optimization_profile()
            for name in dynamic:
                s = (calibration.batch_size,) + tuple(shapes[name][0][1:])
                cal_profile.set_shape(name, s, s, s)
            config.set_calibration_profile(cal_profile)

    timing = None
    if timing_cache:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        timing = config.create_timing_cache(data)
        if not config.set_timing_cache(timing, False):
            log(f"  timing cache {timing_cache} is from another device or TensorRT; starting a new one")
            timing = config.create_timing_cache(b"")
            config.set_timing_cache(timing, False)
        elif data:
            log(f"  reusing timing cache {timing_cache}")

    monitor = _progress_monitor(trt, log, cancel) if hasattr(trt, "IProgressMonitor") else None  # 8.6+
    if monitor is not None:
        config.progress_monitor = monitor  # the local reference keeps it alive through the build
    progress = contextlib.nullcontext() if monitor is not None else _Ticker(log)
    with progress:
        serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        calibrator.free()
        if calibrator.error is not None:
            raise ModelError(f"calibration failed: {calibrator.error}") from calibrator.error
        if batches is not None and calibrator.count:
            extra = f", last {batches.dropped} dropped" if batches.dropped else ""
            extra += f", {batches.repeated} slots repeated" if batches.repeated else ""
            log(f"  calibrated on {batches.frames_used} frames in {batches.batches} batches of "
                f"{calibration.batch_size}{extra}")
        elif batches is not None and not cache.read():
            raise ModelError(f"no calibration frames were read from {calibration.source}")
    if cancel is not None and cancel.is_set():
        raise ModelError("engine build cancelled")
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT messages above)")
    if timing is not None:
        atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def build_engine_file(onnx_path: str, settings: BuildSettings, engine_path: str, *, identity, cuda,
                      onnx_bytes: bytes | None = None, key: str | None = None,
                      calibration: CalibrationPlan | None = None, timing_cache: str = "",
                      log: Callable[[str], None] = print, cancel: threading.Event | None = None,
                      verbose: bool = False, frames: Iterable[Sequence[Any]] | None = None) -> dict[str, Any]:
    """Build, write the engine (atomically) and its sidecar; the sidecar's contents. frames: the INT8
    calibration frames, see build_serialized."""
    trt = import_tensorrt()
    onnx_bytes = onnx_bytes if onnx_bytes is not None else Path(onnx_path).read_bytes()
    onnx_sha = sha256_bytes(onnx_bytes)
    key = key or cache_key(onnx_sha, settings, identity)
    start = time.monotonic()
    log(f"building {settings.precision} engine for {onnx_path} (batch {settings.batch}, "
        f"{identity.describe()}); this takes minutes on a Jetson")
    with cuda.activate():
        data = build_serialized(trt, onnx_bytes, onnx_path, settings, cuda, calibration, timing_cache,
                                log, cancel, verbose, frames=frames)
    atomic_write(engine_path, data)
    sidecar = make_sidecar(onnx_path=onnx_path, onnx_sha256=onnx_sha, settings=settings, identity=identity,
                           key=key, engine_sha256=sha256_bytes(data), onnx_metadata=read_onnx_io(onnx_bytes).metadata,
                           calibration=calibration.record() if calibration is not None else None,
                           timing_cache=timing_cache, build_seconds=round(time.monotonic() - start, 1))
    write_sidecar(engine_path, sidecar)
    return sidecar


__all__ = ["build_serialized", "build_engine_file"]
