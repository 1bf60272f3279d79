"""ONNX FP32 -> ONNX INT8 for ONNX Runtime (static post-training, QDQ); the command line is
`perception-edge quantize` (perception_edge.cli.quantize).

Calibration frames (a folder, video, GIF or rosbag topic) go through the runtime Preprocessor, as
for TensorRT INT8 calibration (perception_edge.core.calibration.CalibrationBatches), so the activation ranges describe
the tensors the model sees in service. Weights are int8 per output channel, activations int8 per
tensor (asymmetric); ONNX Runtime fuses the QDQ pairs into integer kernels on CPU. For TensorRT use
build-engine --precision int8, which calibrates the engine itself, or ``fmt="tensorrt"``.

Two formats (``fmt``):

* ``onnxruntime`` (default): ONNX Runtime's QDQ: Q/DQ around every quantizable op, activations
  asymmetric (int8 S8S8 or uint8 U8S8), int32 biases; what ONNX Runtime's CPU kernels fuse.
* ``tensorrt``: TensorRT's explicit-quantization layout (TensorRT 8.5+/10 "Q/DQ networks"): symmetric
  int8 activations (zero point 0) per tensor and symmetric int8 weights per output channel (axis 0),
  a Q/DQ pair on the inputs of the weighted layers only (Conv, ConvTranspose, Gemm, MatMul), float
  biases and float outputs, so TensorRT fuses each DQ -> Conv (-> activation) -> Q into one int8
  kernel and keeps everything else in FP16/FP32. ``build-engine`` sees the Q/DQ nodes and builds it
  without a calibrator (perception_edge.backends.tensorrt.builder). ONNX Runtime runs it too.

Everything up to the last convolutions is quantized (so that chains of int8 kernels need no
float round trip between them); what comes after stays float. That tail is where YOLOv5's decode
concatenates box coordinates in input pixels (0..640) with probabilities (0..1): one int8 scale over
both would erase the probabilities.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.core.files import sha256_file

METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("onnxruntime", "tensorrt")
ACTIVATION_TYPES = ("int8", "uint8")  # int8: ONNX Runtime's default S8S8; uint8: U8S8 (x86 without VNNI)
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
DEFAULT_FRAMES = 64
MIN_OPSET_PER_CHANNEL = 13  # DequantizeLinear's axis attribute (per-channel scales) needs opset 13


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over CalibrationBatches (duck-typed: the
    quantizer only calls get_next)."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self.input_name = input_name
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        blob = next(self._it, None)
        return None if blob is None else {self.input_name: blob.copy()}  # the batch buffer is reused


def _float_weights(model):
    """Initializers stored as float16 behind a Cast (train-* --fp16-weights) back to float32
    initializers, so the quantizer sees Conv weights as constants it can quantize per channel."""
    from onnx import TensorProto, numpy_helper

    g = model.graph
    halves = {i.name: i for i in g.initializer if i.data_type == TensorProto.FLOAT16}
    casts = [n for n in g.node if n.op_type == "Cast" and len(n.input) == 1 and n.input[0] in halves
             and any(a.name == "to" and a.i == TensorProto.FLOAT for a in n.attribute)]
    for n in casts:
        w = numpy_helper.to_array(halves[n.input[0]]).astype(np.float32)
        g.initializer.append(numpy_helper.from_array(w, n.output[0]))
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for name, init in halves.items():
        if name not in used:
            g.initializer.remove(init)
    return len(casts)


def float_tail(model) -> list[str]:
    """Names of the nodes after the last weighted layers: no Conv/MatMul/Gemm is downstream of them."""
    g = model.graph
    consumers: dict[str, list[int]] = {}
    for k, n in enumerate(g.node):
        for t in n.input:
            consumers.setdefault(t, []).append(k)
    feeds_weighted = [False] * len(g.node)
    for k in reversed(range(len(g.node))):  # graph nodes are topologically sorted
        n = g.node[k]
        feeds_weighted[k] = any(g.node[c].op_type in WEIGHTED_OPS or feeds_weighted[c]
                                for t in n.output for c in consumers.get(t, ()))
    return [n.name for k, n in enumerate(g.node) if n.op_type not in WEIGHTED_OPS and not feeds_weighted[k]]


def _drop_output_qdq(model) -> int:
    """Remove the Q/DQ pairs ONNX Runtime puts on the outputs of weighted layers unless the pair feeds
    another weighted layer: TensorRT's explicit-quantization layout quantizes layer inputs only (the
    output of a Conv stays FP16/FP32 into its activation, residual Add or the model's output).
    Returns the number of pairs removed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    graph_outputs = {o.name for o in g.output}

    def consumers(name):
        return [n for n in g.node if name in n.input]

    removed = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        src = q.input[0]
        p = producer.get(src)
        if p is None or p.op_type not in WEIGHTED_OPS:
            continue
        for dq in [n for n in consumers(q.output[0]) if n.op_type == "DequantizeLinear"]:
            after = consumers(dq.output[0])
            if any(n.op_type in WEIGHTED_OPS for n in after):
                continue
            if dq.output[0] in graph_outputs:  # the float tensor takes the output's name
                new = dq.output[0]
                for n in g.node:
                    for i, t in enumerate(n.input):
                        if t == src:
                            n.input[i] = new
                for i, t in enumerate(p.output):
                    if t == src:
                        p.output[i] = new
                src = new
            else:
                for n in after:
                    for i, t in enumerate(n.input):
                        if t == dq.output[0]:
                            n.input[i] = src
            g.node.remove(dq)
            removed += 1
        if not consumers(q.output[0]):
            g.node.remove(q)
    return removed


def _prepare(onnx_path: str, tmp: str, per_channel: bool = True):
    """The model as the quantizers want it, in tmp: float32 weights, opset >= 13 for per-channel
    scales, shapes inferred, constants folded, every node named. (prepared path, float tail node names,
    graph inputs, metadata, float16 weights unfolded)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        model = onnx.load(onnx_path)
    except Exception as e:
        raise ModelError(f"cannot load ONNX model {onnx_path}: {str(e).splitlines()[0] if str(e) else e}") from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise ModelError(f"{onnx_path}: expected one image input, got {len(inputs)}")
    metadata = {p.key: p.value for p in model.metadata_props}
    unfolded = _float_weights(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if per_channel and opset < MIN_OPSET_PER_CHANNEL:
        from onnx import version_converter

        model = version_converter.convert_version(model, MIN_OPSET_PER_CHANNEL)
    plain = str(Path(tmp) / "fp32.onnx")
    prepared = str(Path(tmp) / "prepared.onnx")
    onnx.save(model, plain)
    # ONNX shape inference + ONNX Runtime's constant folding, so the quantizer knows every tensor's
    # type. Not the symbolic shape inference: it gives up on dynamic-batch YOLOv5 graphs and then
    # dumps its partial model into the working directory.
    quant_pre_process(plain, prepared, skip_symbolic_shape=True)
    prepared_model = onnx.load(prepared)
    unnamed = [n for n in prepared_model.graph.node if not n.name]
    for k, n in enumerate(unnamed):  # exclusion goes by node name
        n.name = f"{n.op_type}_unnamed_{k}"
    if unnamed:
        onnx.save(prepared_model, prepared)
    tail = float_tail(prepared_model)
    return prepared, tail, inputs, metadata, unfolded


def _set_metadata(out, metadata: dict[str, str]) -> None:
    del out.metadata_props[:]
    for k, v in metadata.items():
        entry = out.metadata_props.add()
        entry.key, entry.value = k, v


def quantize_dynamic_model(onnx_path: str, output: str, log=print) -> dict[str, object]:
    """ONNX Runtime dynamic quantization: int8 weights per output channel stored in the file, activation
    ranges computed per call at run time (no calibration; ConvInteger / MatMulInteger + float
    rescaling). The float tail stays float, as in quantize_model."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        prepared, tail, _, metadata, _ = _prepare(onnx_path, tmp, True)
        quantize_dynamic(prepared, output, per_channel=True, weight_type=QuantType.QUInt8,
                         op_types_to_quantize=list(WEIGHTED_OPS), nodes_to_exclude=tail)
    out = onnx.load(output)
    record = {"format": "dynamic (ConvInteger/MatMulInteger)", "weights": "uint8 per-channel",
              "activations": "uint8 per-tensor, ranges computed per call", "float_tail": len(tail),
              "source_sha256": sha256_file(onnx_path)}
    metadata["quantization"] = json.dumps(record)
    _set_metadata(out, metadata)
    onnx.save(out, output)
    log(f"quantize (dynamic): {onnx_path} -> {output} ({Path(output).stat().st_size / 2**20:.2f} MB)")
    return record


def quantize_model(onnx_path: str, output: str, batches: Iterable[np.ndarray], method: str = "minmax",
                   per_channel: bool = True, activations: str = "int8", log=print,
                   fmt: str = "onnxruntime") -> dict[str, object]:
    """Quantize onnx_path into output, calibrating on `batches` (NCHW float tensors as the model
    takes them). Returns what was done (also stored in the output's metadata as "quantization").
    fmt "tensorrt": symmetric int8 everywhere, Q/DQ only on the inputs of weighted layers (see above)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    trt = fmt == "tensorrt"
    if trt and activations != "int8":
        raise ConfigError("--format tensorrt takes symmetric int8 activations (TensorRT has no uint8 Q/DQ)")
    if trt and not per_channel:
        raise ConfigError("--format tensorrt quantizes weights per output channel (TensorRT's explicit INT8)")
    if activations not in ACTIVATION_TYPES:
        raise ConfigError(f"activations must be one of {', '.join(ACTIVATION_TYPES)}, got {activations!r}")
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        prepared, tail, inputs, metadata, unfolded = _prepare(onnx_path, tmp, per_channel)
        reader = _Reader(inputs[0].name, batches)
        calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                     "percentile": CalibrationMethod.Percentile}[method]
        extra = {"ActivationSymmetric": trt, "WeightSymmetric": True}
        if trt:  # float biases (TensorRT takes no int32 DequantizeLinear), one Q/DQ pair per consumer
            extra.update({"QuantizeBias": False, "DedicatedQDQPair": True})
        quantize_static(prepared, output, reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(WEIGHTED_OPS) if trt else None,
                        nodes_to_exclude=tail, per_channel=per_channel,
                        activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=calibrate,
                        extra_options=extra)
    out = onnx.load(output)
    if trt:
        _drop_output_qdq(out)
        used = {t for n in out.graph.node for t in n.input}
        for init in [i for i in out.graph.initializer if i.name not in used]:
            out.graph.initializer.remove(init)
    n_q = sum(1 for n in out.graph.node if n.op_type == "QuantizeLinear")
    if n_q == 0:
        raise ModelError(f"{onnx_path}: nothing was quantized (no {'/'.join(WEIGHTED_OPS)} with constant weights)")
    record = {"format": "QDQ (TensorRT explicit)" if trt else "QDQ", "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
              "activations": f"{activations} per-tensor" + (" symmetric" if trt else ""), "calibration": method, "float_tail": len(tail),
              "source_sha256": sha256_file(onnx_path)}
    metadata["quantization"] = json.dumps(record)
    _set_metadata(out, metadata)
    onnx.save(out, output)
    log(f"quantize: {onnx_path} ({Path(onnx_path).stat().st_size / 2**20:.2f} MB) -> {output} "
        f"({Path(output).stat().st_size / 2**20:.2f} MB), {n_q} QuantizeLinear nodes"
        + (f", {unfolded} float16 weights unfolded" if unfolded else ""))
    return record
