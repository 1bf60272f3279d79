"""Segmentation model (U-Net, DDRNet, any torch module with [B,3,H,W] -> [B,C,H,W]) -> ONNX.

The graph's contract is the runtime's (perception_edge.pipeline.Segmenter): input "images"
[B,3,H,W] float32 RGB in [0,1] (letterbox or stretch, no mean/std), output "logits" [B,C,H,W] at the
input size; C == 1 is a binary model (sigmoid > threshold), C > 1 takes the argmax. Metadata:
``names`` (JSON list of class names), ``resize_mode``, ``task`` ("segment"), ``imgsz`` ([H, W]) and
``producer``.
"""
from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Sequence

from perception_edge.core.errors import ConfigError, ModelError

RESIZE_MODES = ("letterbox", "stretch")


def default_class_names(num_classes: int) -> list:
    if num_classes == 1:
        return ["background", "lane_marking"]  # a binary model: class ids of the decoded mask
    if num_classes in (2, 3):
        return ["background", "lane_marking", "drivable_area"][:num_classes]
    return [f"class_{i}" for i in range(num_classes)]


def export_segmentation_onnx(model, path: str, img_size: tuple[int, int] = (192, 320), batch: int = 1,
                             dynamic_batch: bool = False, opset: int = 12,
                             class_names: Sequence[str] | None = None, resize_mode: str = "letterbox",
                             extra_metadata: dict[str, str] | None = None) -> str:
    """Export ``model`` (eval mode, CPU, float32; BatchNorm folded by the exporter) to ``path``.

    img_size is (H, W). The spatial size is static (TensorRT builds each Resize with constant
    scales); with dynamic_batch the batch axis is symbolic.
    """
    import onnx
    import torch

    from perception_edge import __version__

    h, w = int(img_size[0]), int(img_size[1])
    if h < 32 or w < 32:
        raise ConfigError(f"segmentation input size {w}x{h} is too small (at least 32x32)")
    if resize_mode not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize_mode!r} (letterbox or stretch)")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    net = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    dummy = torch.rand(batch, 3, h, w)
    with torch.no_grad():
        out = net(dummy)
    if isinstance(out, (list, tuple)):
        raise ModelError("the model returns several outputs in eval mode; export needs one logits tensor")
    if out.ndim != 4 or out.shape[0] != batch or tuple(out.shape[2:]) != (h, w):
        raise ModelError(f"the model maps [{batch},3,{h},{w}] to {list(out.shape)}; the runtime needs logits "
                         f"[{batch},C,{h},{w}] at the input size")
    num_classes = int(out.shape[1])
    names = list(class_names) if class_names else default_class_names(num_classes)
    expected = 2 if num_classes == 1 else num_classes
    if len(names) != expected:
        raise ConfigError(f"{len(names)} class names for a model with {num_classes} output channel(s) "
                          f"(expected {expected}: a 1-channel model is binary, background + one class)")
    buf = io.BytesIO()
    dynamic_axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["logits"], dynamic_axes=dynamic_axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    meta = {"names": json.dumps(names), "resize_mode": resize_mode, "task": "segment",
            "imgsz": json.dumps([h, w]), "producer": f"perception_edge {__version__}",
            "architecture": type(model).__name__}
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "perception_edge"
    proto.producer_version = __version__
    onnx.checker.check_model(proto)
    out_path = Path(path)
    if out_path.parent and not out_path.parent.exists():
        out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out_path))
    return str(out_path)
