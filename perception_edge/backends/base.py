"""The one small interface every inference runtime sits behind."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from perception_edge.core.errors import InputError

Dim = Union[int, str, None]  # an int for a fixed dimension, a name or None for a dynamic one


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.shape[0], int)

    def describe(self) -> str:
        dims = "x".join(str(d) if isinstance(d, int) else "?" for d in self.shape)
        return f"{self.name} [{dims}] {np.dtype(self.dtype).name}"


class Backend(abc.ABC):
    """A loaded model. `run` takes one input tensor (batch first) and returns the outputs in order.

    Everything a node or the pipeline reads from a backend is declared here (no getattr probing):
    name, path, num_threads, metadata, status and building."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str] = {}  # model metadata (e.g. YOLOv5 export's class names, stride)
    name: str = "backend"  # the runtime: "onnxruntime", "tensorrt"
    path: str = "model"  # the model (or engine) file it loaded
    num_threads: int | None = None  # CPU threads of a CPU runtime (0: its default); None: not a CPU runtime
    # "ready", or what keeps it from running: "building engine", "failed: <reason>" (a subclass that
    # prepares its model in the background computes status and building as properties)
    status: str = "ready"
    building: bool = False  # being prepared in the background: frames are skipped meanwhile

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def input_hw(self) -> tuple[int, int]:
        """Spatial input size (H, W); raises if the model leaves it dynamic."""
        h, w = self.input.shape[2], self.input.shape[3]
        if not (isinstance(h, int) and isinstance(w, int)):
            raise InputError(f"model input {self.input.describe()} has a dynamic size; set input_size")
        return h, w

    @property
    def max_batch(self) -> int | None:
        """Largest batch one call takes (None: unbounded)."""
        b = self.input.shape[0]
        return b if isinstance(b, int) else None

    def batch_sizes(self, n: int) -> list[int]:
        """How to split n frames into calls this model accepts (a fixed batch pads the last one)."""
        b = self.input.shape[0]
        if isinstance(b, int):
            return [b] * (-(-n // b))
        cap = self.max_batch or n
        return [cap] * (n // cap) + ([n % cap] if n % cap else [])

    def check_input(self, tensor: np.ndarray) -> None:
        spec = self.input
        if tensor.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != s for d, s in zip(spec.shape, tensor.shape)
        ):
            raise InputError(
                f"input tensor shape {tuple(tensor.shape)} does not fit the model input {spec.describe()}"
            )

    @abc.abstractmethod
    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run one batch; the input's dtype must be self.input.dtype."""

    def close(self) -> None:
        """Free runtime resources (engine, buffers, streams)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BACKEND_NAMES: Sequence[str] = ("auto", "onnxruntime", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # serialized TensorRT engines
