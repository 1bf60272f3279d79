"""ONNX Runtime backend: CPU by default; CUDA / TensorRT execution providers when present.

Memory: ONNX Runtime's CPU arena grows to the largest batch seen and never shrinks, and its memory
patterns preallocate per input shape; both are off by default here (the configuration's
onnxruntime.cpu_arena / onnxruntime.memory_pattern), which holds the two bundled models at batch 3
in less than half the resident memory, at the same speed (figures in the README, Reliability).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from perception_edge.backends.base import Backend, TensorSpec
from perception_edge.core.errors import InputError, ModelError

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else (d or None) for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES.get(arg.type, np.float32)))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str, num_threads: int = 0, providers: Sequence[str] | None = None,
                 use_gpu: bool = True, cpu_arena: bool = True, memory_pattern: bool = False,
                 graph_optimization: str = "auto"):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in GPU_PROVIDERS if use_gpu and p in available] + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "auto": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # what is best for a model kind is
                  # decided by the pipeline (pipeline.backend_for); alone, the fastest
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
        if graph_optimization not in levels:
            raise ModelError(f"unknown ONNX Runtime graph optimization {graph_optimization!r}; "
                             f"expected one of {', '.join(levels)}")
        options.graph_optimization_level = levels[graph_optimization]
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        options.enable_cpu_mem_arena = bool(cpu_arena)
        options.enable_mem_pattern = bool(memory_pattern)
        self.num_threads = num_threads
        options.log_severity_level = 3  # warnings about unused initializers etc. are noise to users
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=list(providers))
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"cannot load ONNX model {path}: {first}") from None
        self.path = path
        self.providers = self.session.get_providers()
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if len(self.inputs) != 1 or len(self.inputs[0].shape) != 4:
            raise ModelError(f"{path}: expected one image input [batch, 3, H, W], got "
                             f"{', '.join(s.describe() for s in self.inputs)}")
        self._output_names = [o.name for o in self.outputs]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.check_input(tensor)
        if tensor.dtype != self.input.dtype:
            raise InputError(f"input tensor is {tensor.dtype}, the model expects {self.input.dtype}")
        try:
            return self.session.run(self._output_names, {self.input.name: tensor})
        except Exception as e:
            raise ModelError(f"ONNX Runtime failed on {self.path}: {str(e).strip().splitlines()[0]}") from None
