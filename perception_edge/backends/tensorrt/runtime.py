"""TensorRT runtime: one deserialized engine behind the Backend interface (TensorRTBackend), and the
I/O plan that says which buffers an engine needs and how they are bound.

Two API generations, chosen by feature detection: the named-tensor API (num_io_tensors,
set_input_shape, set_tensor_address, execute_async_v3; TensorRT 8.5 and later, the only one in 10.x)
and the binding API (get_binding_*, set_binding_shape, execute_async_v2; TensorRT 8.x, and what
engines from before 8.5 need). Device memory comes from perception_edge.backends.tensorrt.cuda.

Importing this module needs neither TensorRT nor CUDA: the I/O plan is computed from a small
engine-description interface, so that logic is tested without a GPU; TensorRT is imported when an
engine is loaded or built.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from perception_edge.backends.base import Backend, TensorSpec
from perception_edge.backends.tensorrt.cache import BatchProfile, RuntimeIdentity, choose_profile, split_batch
from perception_edge.backends.tensorrt.cuda import cuda_memory
from perception_edge.core.errors import ConfigError, InputError, ModelError

log = logging.getLogger("perception_edge.tensorrt")

API_TENSORS = "tensors"  # named-tensor API, execute_async_v3
API_BINDINGS = "bindings"  # binding-index API, execute_async_v2


class TensorRTNotInstalled(ModelError):
    """TensorRT's Python package cannot be imported."""


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except (ImportError, OSError):  # OSError: the package is there but libnvinfer is not
        raise TensorRTNotInstalled(
            "TensorRT is not installed (on Jetson it comes with JetPack: check with "
            "python3 -c \"import tensorrt\"; on a PC: pip install tensorrt)") from None
    return trt


_LOGGER = None


def trt_logger(trt, verbose: bool = False):
    """One logger per process: TensorRT warns when builder and runtime get different ones."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(_LOGGER, "")  # EfficientNMS_TRT and the other stock plugins
    _LOGGER.min_severity = trt.Logger.INFO if verbose else trt.Logger.WARNING
    return _LOGGER


def runtime_identity(trt, cuda) -> RuntimeIdentity:
    name, cc = cuda.identity()
    return RuntimeIdentity(str(trt.__version__), name, cc)


# -- engine description and I/O plan (pure) --------------------------------------------------------

_TRT_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
              "BOOL": np.bool_, "UINT8": np.uint8, "INT64": np.int64}


def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy dtype for a tensorrt.DataType (by member name, so no TensorRT import), or a numpy dtype."""
    if isinstance(trt_dtype, np.dtype) or (isinstance(trt_dtype, type) and issubclass(trt_dtype, np.generic)):
        return np.dtype(trt_dtype)
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in _TRT_TYPES:
        raise ModelError(f"engine tensor type {name} has no numpy equivalent (BF16/FP8/INT4 I/O is not supported)")
    return np.dtype(_TRT_TYPES[name])


def _is_input_mode(mode) -> bool:
    return (getattr(mode, "name", None) or str(mode).rsplit(".", 1)[-1]) == "INPUT"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    is_input: bool
    shape: tuple[int, ...]  # -1 for dimensions set per call
    dtype: np.dtype
    index: int  # binding index (profile 0) or position among the I/O tensors


@dataclass(frozen=True)
class EngineDescription:
    """What the I/O plan needs to know about an engine, read once through either API generation."""
    api: str
    tensors: tuple[TensorInfo, ...]
    profiles: tuple[dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], ...]
    bindings_per_profile: int


def detect_api(engine, context=None) -> str:
    named = all(hasattr(engine, a) for a in ("num_io_tensors", "get_tensor_name", "get_tensor_mode"))
    if context is not None:
        named = named and hasattr(context, "execute_async_v3") and hasattr(context, "set_tensor_address")
    if named:
        return API_TENSORS
    if hasattr(engine, "num_bindings") and hasattr(engine, "get_binding_name"):
        return API_BINDINGS
    raise ModelError("this TensorRT has neither the named-tensor nor the binding API")


def describe_engine(engine, api: str = "auto") -> EngineDescription:
    """Read an ICudaEngine (or a test double with the same methods) into an EngineDescription."""
    api = detect_api(engine) if api == "auto" else api
    num_profiles = max(1, int(getattr(engine, "num_optimization_profiles", 1) or 1))
    tensors: list[TensorInfo] = []
    if api == API_TENSORS:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            tensors.append(TensorInfo(name, _is_input_mode(engine.get_tensor_mode(name)),
                                      tuple(int(d) for d in engine.get_tensor_shape(name)),
                                      numpy_dtype(engine.get_tensor_dtype(name)), i))
        per_profile = len(tensors)

        def profile_shape(t: TensorInfo, p: int):
            return engine.get_tensor_profile_shape(t.name, p)
    elif api == API_BINDINGS:
        # Binding indices repeat per profile: profile p's copy of binding i is i + p * per_profile.
        per_profile = engine.num_bindings // num_profiles
        for i in range(per_profile):
            tensors.append(TensorInfo(engine.get_binding_name(i), bool(engine.binding_is_input(i)),
                                      tuple(int(d) for d in engine.get_binding_shape(i)),
                                      numpy_dtype(engine.get_binding_dtype(i)), i))

        def profile_shape(t: TensorInfo, p: int):
            return engine.get_profile_shape(p, t.index + p * per_profile)
    else:
        raise ConfigError(f"unknown TensorRT API {api!r}; expected {API_TENSORS} or {API_BINDINGS}")
    profiles = []
    for p in range(num_profiles):
        shapes = {}
        for t in tensors:
            if not t.is_input:
                continue
            if all(d >= 0 for d in t.shape):
                shapes[t.name] = (t.shape, t.shape, t.shape)
            else:
                lo, opt, hi = profile_shape(t, p)
                shapes[t.name] = (tuple(int(d) for d in lo), tuple(int(d) for d in opt), tuple(int(d) for d in hi))
        profiles.append(shapes)
    return EngineDescription(api, tuple(tensors), tuple(profiles), per_profile)


@dataclass(frozen=True)
class TensorPlan:
    name: str
    is_input: bool
    dtype: np.dtype
    engine_shape: tuple[int, ...]  # as the engine reports it, -1 where set per call
    max_shape: tuple[int, ...]  # largest shape over all profiles: what the buffers hold
    binding_index: int  # profile 0 binding index (binding API) / I/O tensor position

    @property
    def count(self) -> int:
        return int(np.prod(self.max_shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    def spec(self, fixed_batch: int | None) -> TensorSpec:
        dims = [d if d >= 0 else None for d in self.engine_shape]
        if dims and dims[0] is None and fixed_batch is not None:
            dims[0] = fixed_batch
        return TensorSpec(self.name, tuple(dims), self.dtype)


@dataclass(frozen=True)
class IOPlan:
    """Names, shapes, dtypes and byte sizes of every I/O tensor, one host (pinned) and one device buffer
    each, sized for the largest profile, and how they are bound (which API generation)."""
    api: str
    tensors: tuple[TensorPlan, ...]
    batch_profiles: tuple[BatchProfile, ...]
    bindings_per_profile: int

    @property
    def inputs(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[TensorPlan]:
        return [t for t in self.tensors if not t.is_input]

    @property
    def num_profiles(self) -> int:
        return len(self.batch_profiles)

    @property
    def fixed_batch(self) -> int | None:
        """The one batch size every profile takes, or None when it varies."""
        sizes = {(p.min, p.max) for p in self.batch_profiles}
        if len(sizes) == 1:
            lo, hi = sizes.pop()
            return lo if lo == hi else None
        return None

    @property
    def max_batch(self) -> int:
        return max(p.max for p in self.batch_profiles)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def binding_index(self, name: str, profile: int = 0) -> int:
        t = self.tensor(name)
        return t.binding_index + profile * self.bindings_per_profile

    def tensor(self, name: str) -> TensorPlan:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def bindings(self, profile: int, addresses: Mapping[str, int]) -> list[int]:
        """execute_async_v2's pointer list: this profile's slots set, the other profiles' zero."""
        slots = [0] * (self.bindings_per_profile * self.num_profiles)
        for t in self.tensors:
            slots[self.binding_index(t.name, profile)] = int(addresses[t.name])
        return slots

    def choose_profile(self, batch: int) -> int | None:
        return choose_profile(self.batch_profiles, batch)

    def batch_sizes(self, n: int) -> list[int]:
        return split_batch(n, self.batch_profiles)

    def describe(self) -> str:
        lines = [f"TensorRT {self.api} API, profiles: " + ", ".join(f"batch {p}" for p in self.batch_profiles)]
        for t in self.tensors:
            dims = "x".join(str(d) for d in t.max_shape)
            lines.append(f"  {'in ' if t.is_input else 'out'} {t.name} {np.dtype(t.dtype).name} "
                         f"engine {list(t.engine_shape)} buffer {dims} ({t.nbytes} bytes)")
        return "\n".join(lines)


def plan_io(desc: EngineDescription, output_max_shapes: Mapping[str, Sequence[int]] | None = None) -> IOPlan:
    """The I/O plan of an engine. Input buffers take the largest profile shape; outputs take the shape
    the context reported at that input shape (output_max_shapes), or their engine shape with a
    dynamic batch dimension replaced by the largest batch."""
    inputs = [t for t in desc.tensors if t.is_input]
    if not inputs:
        raise ModelError("engine has no inputs")
    first = inputs[0]
    batch_profiles = []
    for shapes in desc.profiles:
        lo, opt, hi = shapes[first.name]
        batch_profiles.append(BatchProfile(int(lo[0]), int(opt[0]), int(hi[0])))
    max_batch = max(p.max for p in batch_profiles)
    plans = []
    for t in desc.tensors:
        if t.is_input:
            per_profile = [shapes[t.name][2] for shapes in desc.profiles]
            max_shape = tuple(max(s[i] for s in per_profile) for i in range(len(t.shape)))
        elif output_max_shapes and t.name in output_max_shapes:
            max_shape = tuple(int(d) for d in output_max_shapes[t.name])
        else:
            max_shape = tuple(max_batch if (i == 0 and d < 0) else d for i, d in enumerate(t.shape))
        if any(d < 0 for d in max_shape):
            raise ModelError(f"engine output {t.name} {list(t.shape)} has a data-dependent shape; "
                             "only outputs whose size follows from the input shape are supported")
        plans.append(TensorPlan(t.name, t.is_input, np.dtype(t.dtype), t.shape, max_shape, t.index))
    return IOPlan(desc.api, tuple(plans), tuple(batch_profiles), desc.bindings_per_profile)


# -- the backend -----------------------------------------------------------------------------------

class TensorRTBackend(Backend):
    """One deserialized engine, one execution context, one CUDA stream, and a pinned host buffer plus
    a device buffer per I/O tensor. run(): copy the input into its pinned buffer, H2D, execute, D2H
    (all queued on the stream), one stream synchronize, copy the outputs out."""

    name = "tensorrt"

    def __init__(self, engine_path: str, engine_bytes: bytes | None = None,
                 sidecar: Mapping[str, Any] | None = None, api: str = "auto", cuda=None,
                 dla_core: int | None = None):
        trt = import_tensorrt()
        self.path = str(engine_path)
        self.sidecar = dict(sidecar or {})
        self.metadata = {str(k): str(v) for k, v in (self.sidecar.get("model_metadata") or {}).items()}
        self.cuda = cuda if cuda is not None else cuda_memory()
        self._lock = threading.Lock()
        self._device: dict[str, tuple[Any, int]] = {}
        self._host: dict[str, tuple[np.ndarray, Any]] = {}
        self._stream = None
        self.context = self.engine = self.runtime = None
        data = engine_bytes if engine_bytes is not None else Path(engine_path).read_bytes()
        if dla_core is None:
            recorded = self.sidecar.get("dla_core")
            dla_core = int(recorded) if recorded is not None else -1
        with self.cuda.activate():
            try:
                self._load(trt, data, api, dla_core)
            except BaseException:
                self._release()
                raise

    def _load(self, trt, data: bytes, api: str, dla_core: int) -> None:
        self.runtime = trt.Runtime(trt_logger(trt))
        if dla_core >= 0:
            self.runtime.DLA_core = int(dla_core)  # must precede deserialization of a DLA engine
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ModelError(f"TensorRT could not load engine {self.path} (see the TensorRT message above; "
                             "an engine from another TensorRT version or GPU does not load)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelError(f"could not create an execution context for {self.path} (out of GPU memory?)")
        self.api = detect_api(self.engine, self.context) if api == "auto" else api
        desc = describe_engine(self.engine, self.api)
        if sum(t.is_input for t in desc.tensors) != 1:
            raise ModelError(f"{self.path}: expected one image input, the engine has "
                             f"{', '.join(t.name for t in desc.tensors if t.is_input)}")
        self._stream = self.cuda.stream()
        self._stream_handle = self.cuda.stream_handle(self._stream)
        self._active_profile = 0
        self._shape_set: tuple[int, tuple[int, ...]] | None = None
        self._desc = desc
        self._index = {t.name: t.index for t in desc.tensors}
        self.plan = plan_io(desc, self._output_max_shapes(desc))
        for t in self.plan.tensors:
            self._device[t.name] = self.cuda.malloc(t.nbytes)
            self._host[t.name] = self.cuda.pinned(t.count, t.dtype)
        self._addresses = {name: ptr for name, (_, ptr) in self._device.items()}
        if self.api == API_TENSORS:
            for name, ptr in self._addresses.items():
                self.context.set_tensor_address(name, ptr)
        fixed = self.plan.fixed_batch
        self.inputs = [t.spec(fixed) for t in self.plan.inputs]
        self.outputs = [t.spec(fixed) for t in self.plan.outputs]
        log.info("loaded %s\n%s", self.path, self.plan.describe())

    # -- shapes and profiles --
    def _select_profile(self, profile: int) -> None:
        if profile != self._active_profile:
            self.context.set_optimization_profile_async(profile, self._stream_handle)
            self._active_profile = profile
            self._shape_set = None

    def _binding(self, name: str) -> int:
        return self._index[name] + self._active_profile * self._desc.bindings_per_profile

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if self._shape_set == (self._active_profile, shape):
            return
        if self.api == API_TENSORS:
            ok = self.context.set_input_shape(name, shape)
        else:
            ok = self.context.set_binding_shape(self._binding(name), shape)
        if ok is False:
            raise InputError(f"engine {self.path} refused input shape {list(shape)} for {name}")
        self._shape_set = (self._active_profile, shape)

    def _output_shape(self, name: str) -> tuple[int, ...]:
        if self.api == API_TENSORS:
            return tuple(int(d) for d in self.context.get_tensor_shape(name))
        return tuple(int(d) for d in self.context.get_binding_shape(self._binding(name)))

    def _output_max_shapes(self, desc: EngineDescription) -> dict[str, tuple[int, ...]]:
        """Each profile's largest input shape set on the context, the output shapes read back."""
        first = next(t for t in desc.tensors if t.is_input)
        result: dict[str, tuple[int, ...]] = {}
        for p, shapes in enumerate(desc.profiles):
            self._select_profile(p)
            self._set_input_shape(first.name, tuple(shapes[first.name][2]))
            for t in desc.tensors:
                if t.is_input:
                    continue
                shape = self._output_shape(t.name)
                old = result.get(t.name)
                result[t.name] = shape if old is None else tuple(max(a, b) for a, b in zip(old, shape))
        self._select_profile(0)
        self.cuda.synchronize(self._stream)
        return result

    # -- Backend interface --
    @property
    def max_batch(self) -> int | None:
        return self.plan.max_batch

    def batch_sizes(self, n: int) -> list[int]:
        return self.plan.batch_sizes(n)

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.check_input(tensor)
        if tensor.dtype not in (np.float32, np.float16) and tensor.dtype != self.input.dtype:
            raise InputError(f"input tensor is {tensor.dtype}, the engine expects {self.input.dtype}")
        batch = int(tensor.shape[0])
        profile = self.plan.choose_profile(batch)
        if profile is None:
            raise InputError(f"batch of {batch} is outside the engine's profiles "
                             f"({', '.join(str(p) for p in self.plan.batch_profiles)}): split it with batch_sizes()")
        with self._lock, self.cuda.activate():
            if self.context is None:
                raise ModelError(f"engine {self.path} is closed")
            self._select_profile(profile)
            inp = self.plan.inputs[0]
            shape = tuple(int(d) for d in tensor.shape)
            self._set_input_shape(inp.name, shape)
            count = int(np.prod(shape))
            host = self._host[inp.name][0][:count]
            # The copy into pinned memory also converts FP32 <-> FP16 for engines with FP16 I/O.
            np.copyto(host.reshape(shape), tensor, casting="same_kind")
            self.cuda.h2d_async(self._addresses[inp.name], host, self._stream)
            out_views = []
            for t in self.plan.outputs:
                out_shape = self._output_shape(t.name)
                n = int(np.prod(out_shape))
                if n > t.count:
                    raise ModelError(f"output {t.name} {list(out_shape)} exceeds its buffer {list(t.max_shape)}")
                out_views.append((self._host[t.name][0][:n], out_shape))
            if self.api == API_TENSORS:
                ok = self.context.execute_async_v3(self._stream_handle)
            else:
                ok = self.context.execute_async_v2(self.plan.bindings(profile, self._addresses), self._stream_handle)
            if ok is False:
                raise ModelError(f"TensorRT failed to run {self.path} (see the TensorRT message above)")
            for t, (view, _) in zip(self.plan.outputs, out_views):
                self.cuda.d2h_async(view, self._addresses[t.name], self._stream)
            self.cuda.synchronize(self._stream)
            # Copies: the pinned buffers are reused by the next call.
            return [view.reshape(out_shape).copy() for view, out_shape in out_views]

    def close(self) -> None:
        with self._lock, self.cuda.activate():
            self._release()

    def _release(self) -> None:
        for handle, _ in self._device.values():
            with contextlib.suppress(Exception):
                self.cuda.free(handle)
        for _, handle in self._host.values():
            with contextlib.suppress(Exception):
                self.cuda.free_pinned(handle)
        self._device, self._host = {}, {}
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self.cuda.destroy_stream(self._stream)
            self._stream = None
        # context before engine before runtime: each holds resources of the next
        self.context = None
        self.engine = None
        self.runtime = None


__all__ = [
    "TensorRTBackend", "TensorRTNotInstalled", "import_tensorrt", "trt_logger", "runtime_identity",
    "describe_engine", "detect_api", "plan_io", "EngineDescription", "TensorInfo", "IOPlan", "TensorPlan",
    "numpy_dtype", "API_TENSORS", "API_BINDINGS",
]
