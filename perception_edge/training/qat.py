"""Quantization-aware training (QAT) with NVIDIA TensorRT Model Optimizer (``nvidia-modelopt``, the
optional extra ``pip install .[qat]``): ``train-det --qat`` / ``train-seg --qat``.

From an FP32 model (a train-* checkpoint, or a bundled ONNX model whose weights are read back into
the same architecture), before the training loop starts:

1. BatchNorm is folded into the convolutions (as the ONNX export and TensorRT do), so what is
   fake-quantized are the weights the engine will run.
2. ``modelopt.torch.quantization.quantize`` with INT8_DEFAULT_CFG inserts fake quantization: int8
   weights per output channel (axis 0), int8 activations per tensor, symmetric (zero point 0, as
   TensorRT's explicit INT8 wants); activation ranges are calibrated (max) on training batches.
3. Sensitivity: each quantized layer alone is quantized and the relative squared error of the
   model's output against the float model is measured; the ``float_layers`` most sensitive ones are
   left in float (their quantizers disabled) and all are reported.
4. The task's loop fine-tunes the fake-quantized model (straight-through estimator) with its loss,
   validation and tqdm progress bar; the best epoch's model is exported with the task's exporter at
   opset 13, which writes QuantizeLinear/DequantizeLinear pairs; the weights are then stored as int8
   (initializer -> DequantizeLinear, as TensorRT's own Q/DQ models store them) and the metadata gets a
   "quantization" record. Same inputs, outputs and metadata as the FP32 export.

modelopt is imported here only (training/export time), never by the runtime.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.models.quantize import WEIGHTED_OPS

QAT_OPSET = 13  # DequantizeLinear's axis (per-channel weight scales)
SENSITIVITY_FRAMES = 2  # frames of the first calibration batch the per-layer sensitivity pass runs on


def import_modelopt():
    try:
        import modelopt.torch.quantization as mtq
    except ImportError as e:
        raise ConfigError(f"--qat needs NVIDIA TensorRT Model Optimizer: pip install '.[qat]' "
                          f"(nvidia-modelopt) ({e})") from None
    return mtq


# -- BatchNorm folding ---------------------------------------------------------------------------

def fold_batchnorm(model, example) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d (found by running `example` through the
    model with hooks: the BatchNorm's input is that convolution's output) into the convolution; the
    BatchNorm becomes an Identity. In place; returns the number folded."""
    import torch
    import torch.nn as nn

    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
    hooks = []

    def conv_hook(mod, inp, out):
        produced[id(out)] = mod

    def bn_hook(mod, inp, out):
        conv = produced.get(id(inp[0]))
        if conv is not None and all(b is not mod for _, b in pairs):
            pairs.append((conv, mod))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(bn_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    uses: dict[int, int] = {}
    for conv, _ in pairs:
        uses[id(conv)] = uses.get(id(conv), 0) + 1
    folded = 0
    for conv, bn in pairs:
        if uses[id(conv)] != 1:  # a convolution feeding two BatchNorms cannot take both
            continue
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = bn.bias + (bias - bn.running_mean) * scale
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            if conv.bias is None:
                conv.bias = nn.Parameter(new_bias.clone())
            else:
                conv.bias.copy_(new_bias)
        parent_name, _, attr = names[bn].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Identity())
        folded += 1
    model.train(was_training)
    return folded


# -- weights from an ONNX model --------------------------------------------------------------------

def _weighted_inputs(proto) -> list[tuple[str, list[np.ndarray]]]:
    """(op type, [weight, bias...] as float32 arrays) of the weighted nodes in graph order; weights
    behind a Cast (float16 storage) or a DequantizeLinear are resolved."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def const(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name]).astype(np.float32)
        p = producer.get(name)
        if p is not None and p.op_type == "Cast" and p.input[0] in inits:
            return numpy_helper.to_array(inits[p.input[0]]).astype(np.float32)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(p.attribute[0].t).astype(np.float32)
        return None

    out = []
    for n in g.node:
        if n.op_type in WEIGHTED_OPS:
            arrays = [const(t) for t in n.input[1:]]
            out.append((n.op_type, [a for a in arrays if a is not None]))
    return out


def load_onnx_weights(model, onnx_path: str, input_hw: tuple[int, int]) -> float:
    """Copy the weights of an ONNX export of the same architecture (BatchNorm folded, as every
    export here) into `model` (BatchNorm already folded: fold_batchnorm), matching the weighted
    nodes in graph order. Checks the result: ONNX Runtime on the file and torch on the model agree
    on a random input; returns their largest difference relative to the output range."""
    import io
    import warnings

    import onnx
    import onnxruntime as ort
    import torch

    try:
        theirs = onnx.load(onnx_path)
    except Exception as e:
        raise ModelError(f"cannot load ONNX model {onnx_path}: {e}") from None
    net = model.eval()
    x = torch.rand(1, 3, *input_hw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=12, input_names=["images"],
                          do_constant_folding=True)
    ours = onnx.load_from_string(buf.getvalue())
    params = dict(net.named_parameters())
    ours_nodes = [n for n in ours.graph.node if n.op_type in WEIGHTED_OPS]
    their_nodes = _weighted_inputs(theirs)
    if [n.op_type for n in ours_nodes] != [t for t, _ in their_nodes]:
        raise ModelError(f"{onnx_path} is not this architecture ({len(their_nodes)} weighted layers, "
                         f"the model has {len(ours_nodes)}): give the architecture options it was trained with")
    state = {}
    for node, (_, arrays) in zip(ours_nodes, their_nodes):
        names = [t for t in node.input[1:] if t in params]
        if len(names) != len(arrays):
            raise ModelError(f"{onnx_path}: layer {node.name} has {len(arrays)} constant inputs, the model {len(names)}")
        for name, arr in zip(names, arrays):
            if tuple(params[name].shape) != arr.shape:
                raise ModelError(f"{onnx_path}: {name} is {arr.shape}, the model's {tuple(params[name].shape)}")
            state[name] = torch.from_numpy(arr.copy())
    missing = set(params) - set(state)
    if missing:
        raise ModelError(f"{onnx_path}: no weights for {sorted(missing)[:3]}")
    net.load_state_dict(state, strict=False)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        got = net(x)
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    err = float(np.abs(ref - got).max() / max(1e-6, float(np.abs(ref).max())))
    if err > 1e-2:
        raise ModelError(f"{onnx_path}: weights loaded but outputs differ (relative {err:.3g}); "
                         "the architecture options do not match the model")
    return err


# -- quantization -------------------------------------------------------------------------------

def _quantizers(model) -> dict[str, Any]:
    from modelopt.torch.quantization.nn import TensorQuantizer

    return {n: m for n, m in model.named_modules() if isinstance(m, TensorQuantizer) and m.is_enabled}


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def sensitivity(model, batches: list) -> list[tuple[str, float]]:
    """Per quantized layer: the relative squared error of the output with only that layer quantized
    (all others float), largest first."""
    import torch

    quantizers = _quantizers(model)
    layers = sorted({n.rsplit(".", 1)[0] for n in quantizers})
    model.eval()
    with torch.no_grad():
        for q in quantizers.values():
            q.disable()
        refs = [_first(model(b)) for b in batches]
        scores = []
        for layer in layers:
            own = [q for n, q in quantizers.items() if n.rsplit(".", 1)[0] == layer]
            for q in own:
                q.enable()
            err = sum(float(((_first(model(b)) - r) ** 2).sum() / max(1e-12, float((r ** 2).sum())))
                      for b, r in zip(batches, refs)) / len(batches)
            for q in own:
                q.disable()
            scores.append((layer, err))
        for q in quantizers.values():
            q.enable()
    return sorted(scores, key=lambda t: -t[1])


def quantize(model, calib_batches: list, float_layers: int = 0, log: Callable[[str], None] = print):
    """Insert INT8 fake quantization (per-channel weights, calibrated per-tensor activations) into the
    BatchNorm-folded model, calibrate on calib_batches, and leave the `float_layers` most sensitive
    layers in float. Returns (model, report dict)."""
    import torch

    mtq = import_modelopt()

    def forward_loop(m):
        with torch.no_grad():
            for b in calib_batches:
                m(b)

    model.eval()
    model = mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop)
    n_layers = len({n.rsplit(".", 1)[0] for n in _quantizers(model)})
    scores = sensitivity(model, [calib_batches[0][:SENSITIVITY_FRAMES]])  # a ranking: a few frames suffice
    kept = [name for name, _ in scores[:max(0, float_layers)]]
    for n, q in _quantizers(model).items():
        if n.rsplit(".", 1)[0] in kept:
            q.disable()
    top = ", ".join(f"{n} {e:.2e}" for n, e in scores[:5])
    log(f"qat: {n_layers} layers fake-quantized (int8 per-channel weights, calibrated int8 activations) on "
        f"{len(calib_batches)} batches; most sensitive (relative output error when quantized alone): {top}")
    if kept:
        log(f"qat: left in float: {', '.join(kept)}")
    return model, {"layers": n_layers, "float_layers": kept,
                   "sensitivity": [[n, float(f"{e:.4g}")] for n, e in scores[:10]]}


def prepare(trainer, model, train_src, log: Callable[[str], None] = print):
    """The QAT start of a Trainer run: FP32 weights from cfg.init (.pt checkpoint or .onnx), BatchNorm
    folded, fake quantization calibrated on training batches. Returns the model to train."""
    import torch

    cfg = trainer.cfg
    if not cfg.init:
        raise ConfigError("--qat starts from an FP32 model: give --init CHECKPOINT.pt or --init MODEL.onnx")
    import_modelopt()
    h, w = cfg.input_hw
    example = torch.rand(2, 3, h, w)
    if cfg.init.lower().endswith(".onnx"):
        fold_batchnorm(model, example)
        err = load_onnx_weights(model, cfg.init, (h, w))
        log(f"qat: FP32 weights from {cfg.init} (torch vs ONNX Runtime: relative difference {err:.1e})")
    else:
        init_model, _ = trainer.load_checkpoint(cfg.init)
        model.load_state_dict(init_model.state_dict(), strict=False)
        fold_batchnorm(model, example)
        log(f"qat: FP32 weights from {cfg.init}")
    from torch.utils.data import DataLoader

    loader = DataLoader(trainer.dataset(train_src, 0), batch_size=cfg.batch, shuffle=True,
                        collate_fn=trainer.collate, generator=torch.Generator().manual_seed(cfg.seed))
    batches = []
    for b in loader:
        batches.append(b[0])
        if len(batches) >= max(1, cfg.qat_calib_batches):
            break
    model, report = quantize(model, batches, cfg.qat_float_layers, log)
    trainer.qat_report = report
    return model


def freeze_weights_int8(proto) -> int:
    """Float weight -> QuantizeLinear -> DequantizeLinear (what torch.onnx.export writes for
    modelopt's weight quantizers) becomes an int8 initializer -> DequantizeLinear: a quarter of the
    size, the same values. In place; returns the number of weights converted."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        p = producer.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(p.attribute[0].t)
        return None

    done = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]:
        w = numpy_helper.to_array(inits[q.input[0]]).astype(np.float32)
        scale, zp = const(q.input[1]), const(q.input[2]) if len(q.input) > 2 else None
        if scale is None or w.ndim < 2:
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim:
            shape[axis] = -1
        if zp is not None and np.any(zp != 0):
            continue  # asymmetric: not what modelopt's INT8 writes; leave it as it is
        qw = np.clip(np.round(w / scale.reshape(shape)), -128, 127).astype(np.int8)
        name = q.input[0] + "_int8"
        g.initializer.append(numpy_helper.from_array(qw, name))
        for n in g.node:
            for i, t in enumerate(n.input):
                if t == q.output[0]:
                    n.input[i] = name
        g.node.remove(q)
        done += 1
    used = {t for n in g.node for t in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return done


def finish_export(path: str, report: dict[str, Any] | None, init: str) -> str:
    """int8 weight storage and the "quantization" metadata record on an exported QAT model."""
    import onnx

    from perception_edge.core.files import sha256_file

    proto = onnx.load(path)
    n_q = sum(1 for n in proto.graph.node if n.op_type == "QuantizeLinear")
    if n_q == 0:
        raise ModelError(f"{path}: the QAT export has no QuantizeLinear nodes")
    frozen = freeze_weights_int8(proto)
    record = {"format": "QDQ (TensorRT explicit)", "method": "QAT (TensorRT Model Optimizer, INT8_DEFAULT_CFG)",
              "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor symmetric",
              "int8_weights": frozen, "float_layers": (report or {}).get("float_layers", []),
              "source": Path(init).name,
              "source_sha256": sha256_file(init) if Path(init).is_file() else ""}
    proto.metadata_props.add(key="quantization", value=json.dumps(record))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return path


__all__ = ["QAT_OPSET", "fold_batchnorm", "load_onnx_weights", "sensitivity", "quantize", "prepare",
           "freeze_weights_int8", "finish_export", "import_modelopt"]
