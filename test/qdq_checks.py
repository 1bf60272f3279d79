"""Structure checks of explicitly quantized (TensorRT-style Q/DQ) ONNX models, shared by the tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _const(g, name):
    inits = {i.name: i for i in g.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def assert_trt_qdq(path) -> int:
    """TensorRT's explicit-INT8 layout: every Q/DQ is int8 with zero point 0 (symmetric); activation
    scales are per tensor; weights are int8 initializers behind a DequantizeLinear with one scale per
    output channel (axis 0); the DQs feed weighted layers (or their residual partners), never a graph
    output. Returns the number of QuantizeLinear nodes."""
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    outputs = {o.name for o in g.output}
    inits = {i.name for i in g.initializer}
    n_q = 0
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = _const(g, n.input[2]) if len(n.input) > 2 and n.input[2] else None
        assert zp is not None and zp.dtype == np.int8 and not zp.any(), f"{n.name}: not symmetric int8"
        scale = _const(g, n.input[1])
        assert scale is not None and (scale > 0).all()
        if n.op_type == "QuantizeLinear":
            n_q += 1
            assert scale.size == 1, f"{n.name}: activations are quantized per tensor"
            assert n.input[0] not in inits, "weights are stored as int8, not quantized at run time"
        else:
            assert n.output[0] not in outputs, "the model's outputs stay float"
            users = consumers.get(n.output[0], [])
            assert users
            if n.input[0] in inits:  # a weight
                w = numpy_helper.to_array(next(i for i in g.initializer if i.name == n.input[0]))
                assert w.dtype == np.int8
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                assert scale.size == w.shape[0], f"{n.name}: one scale per output channel"
                assert scale.size == 1 or axis == 0, f"{n.name}: per-channel scales on axis 0"
                assert all(u.op_type in WEIGHTED for u in users)
            else:
                q = producer[n.input[0]]
                assert q.op_type == "QuantizeLinear"
    weighted = [n for n in g.node if n.op_type in WEIGHTED]
    fed = [n for n in weighted if producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert fed, "no weighted layer takes quantized weights"
    return n_q
