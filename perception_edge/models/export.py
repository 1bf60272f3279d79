"""YOLOv5 -> ONNX, and official YOLOv5 ``.pt`` checkpoints loaded without the yolov5 repository.

The graph's contract is the official YOLOv5 export's (and the runtime's, perception_edge.pipeline):
input "images" [B,3,H,W] float32 RGB in [0,1] (letterboxed), output "output0" [B,N,5+nc] (xywh in
input pixels, objectness, class scores; sigmoid applied). Metadata as the official export writes
it: ``stride`` ("32") and ``names`` ("{0: 'person', ...}"), plus ``producer``, ``task`` and
``imgsz``. The legacy TorchScript exporter is used (``torch.onnx.export(..., dynamo=False)``): the
dynamo exporter needs onnxscript, and its graphs are not needed here.

Checkpoints: an official ``.pt`` is a torch zip-pickle of a dict whose 'model' / 'ema' entries are
pickled ``models.yolo.DetectionModel`` objects. Unpickling it normally imports the yolov5 code and
can run any callable the pickle names. ``load_official_checkpoint`` instead unpickles with an
allow-list: classes of ``models.*`` / ``utils.*`` (the GitHub repository's layout) or
``yolov5.models.*`` / ``yolov5.utils.*`` (the ``yolov5`` PyPI package's) become inert ``nn.Module`` placeholders (their
state -- submodules, parameters, buffers, ``yaml``, ``names`` -- is restored, no yolov5 code runs),
tensors and torch.nn layers load as usual, and anything else (os.system, builtins.eval, ...)
raises ModelError before it can be called.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import types
import warnings
from pathlib import Path
from typing import Any, Sequence

from perception_edge.core.errors import ConfigError, ModelError

PRODUCER = "perception_edge"
EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript-based)"


# --- ONNX export -----------------------------------------------------------------------------------

def img_hw(img_size: int | str | Sequence[int | str], stride: int = 32) -> tuple[int, int]:
    """(H, W) from N (square), [H, W], or 'WIDTHxHEIGHT' (e.g. '640x384'); multiples of stride."""
    if isinstance(img_size, (int, str)):
        img_size = [img_size]
    vals: list[int] = []
    try:
        for v in img_size:
            if isinstance(v, str) and "x" in v.lower():
                w_, h_ = (int(t) for t in v.lower().split("x"))
                vals += [h_, w_]
            else:
                vals.append(int(v))
    except ValueError:
        raise ConfigError(f"image size must be N, H W or WIDTHxHEIGHT (e.g. 640x384), got {list(img_size)}") from None
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2:
        raise ConfigError(f"image size must be N, H W or WIDTHxHEIGHT (e.g. 640x384), got {list(img_size)}")
    h, w = vals
    if h < stride or w < stride or h % stride or w % stride:
        raise ConfigError(f"image size {w}x{h} (WxH) must be a positive multiple of the maximum stride {stride}")
    return h, w


def _half_io(net):
    """fp16 weights and compute behind float32 input/output (Cast nodes at both ends), so the graph
    keeps the float32 "images" contract the runtime's preprocessing writes."""
    import torch.nn as nn

    class HalfIO(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net = inner.half()

        def forward(self, x):
            return self.net(x.half()).float()

    return HalfIO(net).eval()


def _names_dict(names: Sequence[str]) -> dict[int, str]:
    return {i: str(n) for i, n in enumerate(names)}


def _set_dims(value_info, values: Sequence[int | str]) -> None:
    dims = value_info.type.tensor_type.shape.dim
    while len(dims) < len(values):
        dims.add()
    for dim, value in zip(dims, values):
        dim.Clear()
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = int(value)


def export_onnx(model, path: str, img_size: int | Sequence[int] = (640, 640), batch: int = 1,
                dynamic_batch: bool = False, opset: int = 12, half: bool = False, dynamic: bool = False) -> str:
    """Export a YOLOv5 (perception_edge.models.yolov5.YOLOv5) to ``path``; returns the path.

    img_size is (H, W) or one int, multiples of the model's largest stride (32, or 64 for P6). By
    default the spatial size is static (grids and Reshape shapes become constants, as TensorRT
    wants); with dynamic_batch the batch axis is named "batch". dynamic: batch, height and width
    all dynamic, as the official ``export.py --dynamic`` (for rectangular inference,
    ``detection.rect``). BatchNorm is folded into the convolutions. half: fp16 weights and compute
    with float32 I/O. A Segment model (YOLOv5 v7.0 -seg) gets the official two outputs: output0
    [B, N, 5+nc+nm] and output1 (prototype masks) [B, nm, H/4, W/4].
    """
    import onnx
    import torch

    from perception_edge import __version__

    stride = int(max(getattr(model, "stride", torch.tensor([32])).tolist()))
    h, w = img_hw(img_size, max(32, stride))
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    names = list(getattr(model, "names", []) or [])
    net = copy.deepcopy(model).float().cpu().eval()
    if hasattr(net, "fuse"):
        net.fuse()
    detect = getattr(net, "detect", None)
    if dynamic and detect is not None:
        detect.dynamic = True  # grids from the traced input shape, not constants
    if half:
        net = _half_io(net)
    dummy = torch.zeros(batch, 3, h, w)
    with torch.no_grad():
        out = net(dummy)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    pred = outs[0]
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[0] != batch or pred.shape[2] < 6:
        shape = list(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ModelError(f"the model maps [{batch},3,{h},{w}] to {shape}; YOLOv5 export needs [B,N,5+nc]")
    nm = int(outs[1].shape[1]) if len(outs) > 1 else 0
    nc = int(pred.shape[2]) - 5 - nm
    if len(names) != nc:
        names = [str(i) for i in range(nc)]
    buf = io.BytesIO()
    output_names = ["output0", "output1"][:len(outs)]
    bdim = "batch" if (dynamic or dynamic_batch) else batch
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"},
                        "output1": {0: "batch", 2: "mask_height", 3: "mask_width"}}
    elif dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in ["images"] + output_names}
    else:
        dynamic_axes = None
    if dynamic_axes:
        dynamic_axes = {k: v for k, v in dynamic_axes.items() if k in ["images"] + output_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings (constant grids are intended), deprecation notes
        torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=int(opset), input_names=["images"],
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    # the tracer leaves N and 5+nc symbolic (the batch -1 in Reshape hides them): state them
    _set_dims(proto.graph.output[0], (bdim, "anchors" if dynamic else int(pred.shape[1]), int(pred.shape[2])))
    if nm:
        mh, mw = ("mask_height", "mask_width") if dynamic else (int(outs[1].shape[2]), int(outs[1].shape[3]))
        _set_dims(proto.graph.output[1], (bdim, nm, mh, mw))
    meta = {
        "stride": str(stride),
        "names": str(_names_dict(names)),  # a dict literal, exactly as the official export writes it
        "producer": PRODUCER,
        "task": "instance_segment" if nm else "detect",
        "imgsz": json.dumps([h, w]),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = PRODUCER
    proto.producer_version = __version__
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the exported graph fails the ONNX checker: {str(e).splitlines()[0]}") from None
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out_path))
    return str(out_path)


# --- official checkpoints --------------------------------------------------------------------------

_MODULE_PLACEHOLDERS: dict[tuple[str, str], type] = {}
_BUILTINS = {"set", "frozenset", "list", "dict", "tuple", "slice", "range", "complex", "bytearray", "bytes",
             "int", "float", "bool", "str"}
_COLLECTIONS = {"OrderedDict", "defaultdict", "deque", "Counter"}
_PATHLIB = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}
_CODECS = {"encode"}  # protocol-2 pickles store bytes as _codecs.encode(str, "latin1")
_TORCH_UTILS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage",
                "_rebuild_wrapper_subclass", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor"}


def _placeholder(module: str, name: str) -> type:
    """An inert nn.Module subclass standing for a yolov5 class: nn.Module.__setstate__ restores its
    __dict__ (submodules, parameters, buffers, plain attributes); it has no forward of its own."""
    import torch.nn as nn

    key = (module, name)
    cls = _MODULE_PLACEHOLDERS.get(key)
    if cls is None:
        cls = type(name, (nn.Module,), {"official_class": f"{module}.{name}", "__module__": __name__})
        _MODULE_PLACEHOLDERS[key] = cls
    return cls


def _allowed_global(module: str, name: str):
    """What the unpickler may use for module.name, or None when it is not on the allow-list."""
    import torch
    import torch.nn as nn

    top = module.split(".")[0]
    if (top in ("models", "utils") or module.startswith(("yolov5.models.", "yolov5.utils."))
            or module == "perception_edge.models.yolov5"):
        # the GitHub repository's layout, the PyPI package's (pip install yolov5), and ours (torch.save(model))
        return _placeholder(module, name)
    if module == "builtins" and name in _BUILTINS:
        return getattr(__import__("builtins"), name)
    if module == "_codecs" and name in _CODECS:
        return getattr(__import__("_codecs"), name)
    if module == "collections" and name in _COLLECTIONS:
        return getattr(__import__("collections"), name)
    if module in ("pathlib", "pathlib._local") and name in _PATHLIB:
        return getattr(__import__("pathlib"), name)  # opt entries of some checkpoints: data only
    if module == "torch._utils" and name in _TORCH_UTILS:
        return getattr(torch._utils, name, None)
    if module == "torch._tensor" and name == "_rebuild_from_type_v2":
        return torch._tensor._rebuild_from_type_v2  # its callable arguments pass through this check too
    if module == "torch" and (name in ("Size", "Tensor", "device") or name.endswith("Storage")):
        return getattr(torch, name, None)
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if module in ("torch.nn.parameter",) and name in ("Parameter", "Buffer"):
        return getattr(nn.parameter, name, None)
    if module.startswith("torch.nn.modules."):  # layers: restored through nn.Module.__setstate__
        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return None
        return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        import numpy as np

        core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
        return getattr(core.multiarray, name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        import numpy as np

        return getattr(np, name)
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy as np

        obj = getattr(getattr(np, "dtypes", None), name, None)
        return obj if isinstance(obj, type) and issubclass(obj, np.dtype) else None
    return None


def _safe_pickle_module(source: str) -> types.ModuleType:
    """A pickle-module stand-in for torch.load whose Unpickler resolves globals via the allow-list."""
    import pickle

    import _compat_pickle

    class SafeUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            # the Python 2 names protocol-2 pickles use (__builtin__.set, ...), as pickle's own find_class maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            obj = _allowed_global(module, name)
            if obj is None:
                raise ModelError(f"checkpoint {source} references {module}.{name}, which is not allowed in a "
                                 f"YOLOv5 checkpoint (refusing to load it: it could run code)")
            return obj

    def load(f, **kwargs):
        return SafeUnpickler(f, **kwargs).load()

    mod = types.ModuleType("perception_edge_safe_pickle")
    mod.Unpickler = SafeUnpickler
    mod.load = load
    mod.__name__ = "perception_edge_safe_pickle"
    return mod


def _official_name(obj: Any) -> str:
    return getattr(type(obj), "official_class", "")


def _names_list(names: Any) -> list[str] | None:
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            return None
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    return None


def load_official_checkpoint(path: str):
    """An official YOLOv5 (v6.0-v7.0 architecture: P5, P6, -seg) ``.pt`` -> YOLOv5 in eval mode,
    float32, with the checkpoint's class names and anchors. Prefers the 'ema' weights when the
    checkpoint has them (as train.py evaluates them). The architecture is rebuilt from the model's
    ``yaml`` dict as ``yaml.safe_load`` read the official file (string arguments resolved from a
    fixed table, never evaluated)."""
    import torch

    from perception_edge.models.yolov5 import YOLOv5

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"checkpoint {path} not found" + (" (it is a directory)" if p.is_dir() else ""))
    kwargs = {"map_location": "cpu", "pickle_module": _safe_pickle_module(str(path))}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = False  # our allow-list instead of torch's (which rejects yolov5 classes)
    try:
        ckpt = torch.load(str(p), **kwargs)
    except ModelError:
        raise  # a global outside the allow-list
    except Exception as e:  # zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ... from a corrupt file
        first = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"checkpoint {path} is not a readable PyTorch file ({type(e).__name__}: {first})") from None

    model = None
    if isinstance(ckpt, dict):
        for key in ("ema", "model"):  # EMA weights are the ones the official code evaluates
            if ckpt.get(key) is not None:
                model = ckpt[key]
                break
    else:
        model = ckpt
    kind = _official_name(model)
    if not kind:
        raise ModelError(f"checkpoint {path} holds no YOLOv5 model (expected a dict with a 'model' or 'ema' "
                         f"entry from ultralytics/yolov5)")
    if kind.split(".")[-1] not in ("DetectionModel", "Model", "SegmentationModel", "YOLOv5"):
        raise ModelError(f"checkpoint {path} holds a {kind}; only YOLOv5 detection and instance-segmentation "
                         f"models (DetectionModel, SegmentationModel) are supported")
    cfg = getattr(model, "yaml", None)
    if not isinstance(cfg, dict):
        raise ModelError(f"checkpoint {path}: the model has no 'yaml' architecture dict")
    try:
        nc = int(cfg["nc"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"checkpoint {path}: the model yaml has no valid 'nc'") from None
    names = _names_list(getattr(model, "names", None))
    if names is not None and len(names) != nc:
        raise ModelError(f"checkpoint {path} has {len(names)} class names but nc={nc}")
    try:
        ours = YOLOv5(cfg=cfg, names=names)
    except ModelError as e:
        raise ModelError(f"checkpoint {path}: {e}") from None
    stride = getattr(model, "stride", None)
    if isinstance(stride, torch.Tensor) and stride.tolist() != ours.stride.tolist():
        raise ModelError(f"checkpoint {path} has strides {stride.tolist()}, its yaml gives {ours.stride.tolist()}")
    try:
        # float32 (official checkpoints store fp16); anchor_grid was a buffer before v6.0, not a weight
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()
                 if not k.endswith("anchor_grid")}
    except Exception as e:
        raise ModelError(f"checkpoint {path}: cannot read the model's weights ({type(e).__name__}: {e})") from None
    try:
        ours.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise ModelError(f"checkpoint {path} does not fit the YOLOv5 architecture of its yaml: "
                         f"{detail[:300]}{'...' if len(detail) > 300 else ''}") from None
    return ours.eval()
