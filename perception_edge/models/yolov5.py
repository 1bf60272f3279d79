"""YOLOv5 (v6.0 and later: Conv k6 s2 stem, C3 blocks, SPPF) in PyTorch, any class count.

The layer list, channel/depth scaling and module names follow the official ultralytics/yolov5
``models/yolov5{n,s,m,l,x}.yaml`` and ``models/common.py`` so that ``state_dict()`` keys and shapes
are those of the official ``DetectionModel`` (``model.0.conv.weight`` ... ``model.24.anchors``): an
official checkpoint loads with ``load_state_dict(strict=True)`` (see
``perception_edge.models.export.load_official_checkpoint``). Parameter counts at nc=80:
n 1,872,157 / s 7,235,389 (1,867,405 / 7,225,885 once BatchNorm is fused, as the official summary
after "Fusing layers..." reports).

Outputs:

* eval mode: ``[B, N, 5 + nc]`` with N = 3 * sum(H/s * W/s for s in 8, 16, 32) (25200 at 640x640):
  sigmoid applied, xy = (2 sig - 0.5 + cell) * stride, wh = (2 sig)^2 * anchor in input pixels,
  then objectness, then per-class scores. The official inference / ONNX layout.
  A Segment head (v7.0 ``-seg``) appends nm = 32 raw mask coefficients per row and returns
  ``(boxes, prototypes [B, nm, H/4, W/4])``.
* training mode: the raw maps ``[B, 3, H/s, W/s, 5 + nc]`` (logits), as the official Detect.

Any official v6.0-v7.0 architecture yaml builds: P5 ``yolov5{n,s,m,l,x}.yaml``, P6
``yolov5{n,s,m,l,x}6.yaml`` (four levels, strides 8-64), ``yolov5{n,s,m,l,x}-seg.yaml``, read by
``yaml.safe_load`` as they are (``'None'``, ``nc``, ``anchors`` arrive as strings and are resolved
from a fixed table, as the official ``parse_model``'s ``eval`` would, without evaluating text).

``recalibrate_batchnorm`` gives a randomly initialised network batch-norm statistics from real
images, so that its outputs depend on the input (test graphs, benchmarks without trained weights).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Sequence

import torch
import torch.nn as nn

from perception_edge.core.errors import ModelError

# variant -> (depth_multiple, width_multiple), as in models/yolov5{n,s,m,l,x}.yaml
VARIANTS: dict[str, tuple[float, float]] = {
    "n": (0.33, 0.25),
    "s": (0.33, 0.50),
    "m": (0.67, 0.75),
    "l": (1.0, 1.0),
    "x": (1.33, 1.25),
}
ANCHORS: list[list[int]] = [
    [10, 13, 16, 30, 33, 23],  # P3/8
    [30, 61, 62, 45, 59, 119],  # P4/16
    [116, 90, 156, 198, 373, 326],  # P5/32
]
# [from, number, module, args] of the official v6.0+ P5 yaml (backbone then head)
BACKBONE: list[list] = [
    [-1, 1, "Conv", [64, 6, 2, 2]],  # 0-P1/2
    [-1, 1, "Conv", [128, 3, 2]],  # 1-P2/4
    [-1, 3, "C3", [128]],
    [-1, 1, "Conv", [256, 3, 2]],  # 3-P3/8
    [-1, 6, "C3", [256]],
    [-1, 1, "Conv", [512, 3, 2]],  # 5-P4/16
    [-1, 9, "C3", [512]],
    [-1, 1, "Conv", [1024, 3, 2]],  # 7-P5/32
    [-1, 3, "C3", [1024]],
    [-1, 1, "SPPF", [1024, 5]],  # 9
]
HEAD: list[list] = [
    [-1, 1, "Conv", [512, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 6], 1, "Concat", [1]],  # cat backbone P4
    [-1, 3, "C3", [512, False]],  # 13
    [-1, 1, "Conv", [256, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]],  # cat backbone P3
    [-1, 3, "C3", [256, False]],  # 17 (P3/8-small)
    [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]],  # cat head P4
    [-1, 3, "C3", [512, False]],  # 20 (P4/16-medium)
    [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]],  # cat head P5
    [-1, 3, "C3", [1024, False]],  # 23 (P5/32-large)
    [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],  # Detect(P3, P4, P5)
]
BN_EPS = 1e-3  # the official initialize_weights() values
BN_MOMENTUM = 0.03


def make_divisible(x: float, divisor: int = 8) -> int:
    """Channels rounded up to a multiple of divisor (utils/general.py make_divisible)."""
    return int(math.ceil(x / divisor) * divisor)


def model_config(nc: int = 80, variant: str = "n", depth_multiple: float | None = None,
                 width_multiple: float | None = None, anchors: Sequence[Sequence[float]] | None = None,
                 ch: int = 3) -> dict[str, Any]:
    """The yaml dict of an official yolov5{variant}.yaml with nc / multiples / anchors overridden."""
    if variant not in VARIANTS:
        raise ModelError(f"unknown YOLOv5 variant {variant!r} (one of {', '.join(VARIANTS)})")
    gd, gw = VARIANTS[variant]
    return {
        "nc": int(nc),
        "depth_multiple": float(gd if depth_multiple is None else depth_multiple),
        "width_multiple": float(gw if width_multiple is None else width_multiple),
        "anchors": copy.deepcopy([list(a) for a in anchors] if anchors is not None else ANCHORS),
        "backbone": copy.deepcopy(BACKBONE),
        "head": copy.deepcopy(HEAD),
        "ch": int(ch),
    }


def default_names(nc: int) -> list[str]:
    if nc == 80:
        from perception_edge.core.labels import COCO80

        return list(COCO80)  # the official pretrained models' classes
    return [f"class_{i}" for i in range(nc)]


# --- building blocks (models/common.py names: their attribute names are the state_dict keys) -------

class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU; 'same' padding k // 2 unless given."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (eval statistics); bn becomes an Identity."""
        if isinstance(self.bn, nn.Identity):
            return
        conv, bn = self.conv, self.bn
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
        fused.requires_grad_(conv.weight.requires_grad)
        self.conv, self.bn = fused, nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k x k max pools (== SPP with k, 2k-1, 3k-2)."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


def _static_hw(t: torch.Tensor) -> tuple[int, int]:
    """Spatial size as Python ints, also while tracing: the exported graph then holds constant
    Reshape shapes and grids (only the batch axis may be dynamic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning: the constant is what we want
        return int(t.shape[2]), int(t.shape[3])


class Detect(nn.Module):
    """1x1 conv per level to na * (5 + nc) channels; decodes boxes in eval mode.

    ``anchors`` is a buffer in grid units (pixels / stride), as the official model stores it.
    ``stride`` is a plain attribute: it is not part of the official state_dict.
    """

    dynamic = False  # export with dynamic H/W: grids from traced shapes instead of constants
    nm = 0  # mask coefficients per box (Segment)

    def __init__(self, nc: int = 80, anchors: Sequence[Sequence[float]] = (), ch: Sequence[int] = (),
                 strides: Sequence[float] = (8, 16, 32)):
        super().__init__()
        self.nc = nc
        self.no = nc + 5 + self.nm
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        if len(ch) != self.nl or len(strides) != self.nl:
            raise ModelError(f"Detect has {self.nl} anchor levels but {len(ch)} inputs")
        self.strides = [float(s) for s in strides]  # Python floats: used in forward, any device
        self.stride = torch.tensor(self.strides, device="cpu")
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a / torch.tensor(self.strides).view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        raw, z = [], []
        for i in range(self.nl):
            p = self.m[i](xs[i])
            ny, nx = (p.shape[2], p.shape[3]) if self.dynamic else _static_hw(p)
            # [B, na*no, ny, nx] -> [B, na, ny, nx, no]; -1 keeps the batch axis dynamic in ONNX
            p = p.view(-1, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(p)
            if not self.training:
                stride = self.strides[i]
                grid = self._grid(nx, ny, p.dtype, p.device)
                anchor_grid = (self.anchors[i] * stride).view(1, self.na, 1, 1, 2).to(p.dtype)
                if self.nm:  # Segment: mask coefficients stay raw (official Detect.forward)
                    xy, wh, conf, coef = p.split((2, 2, self.nc + 1, self.nm), 4)
                    xy, wh, conf = xy.sigmoid(), wh.sigmoid(), conf.sigmoid()
                else:
                    xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
                xy = (xy * 2 + grid) * stride  # grid holds cell - 0.5
                wh = (wh * 2) ** 2 * anchor_grid
                parts = (xy, wh, conf, coef) if self.nm else (xy, wh, conf)
                z.append(torch.cat(parts, 4).view(-1, self.na * ny * nx, self.no))
        return raw if self.training else torch.cat(z, 1)

    @staticmethod
    def _grid(nx: int, ny: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        # no meshgrid(indexing=...): it needs torch >= 1.10 (Jetson images may ship older)
        xv = torch.arange(nx, device=device).to(dtype).view(1, nx).expand(ny, nx)
        yv = torch.arange(ny, device=device).to(dtype).view(ny, 1).expand(ny, nx)
        return (torch.stack((xv, yv), 2) - 0.5).view(1, 1, ny, nx, 2)


class Proto(nn.Module):
    """Prototype masks of the Segment head (models/common.py Proto): [B, nm, H/4, W/4] from P3."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    """YOLOv5 v7.0 instance segmentation head: Detect with nm mask coefficients per box, plus
    Proto. Eval mode returns (boxes [B, N, 5 + nc + nm], prototypes [B, nm, H/4, W/4]): the
    official ONNX export's output0 and output1."""

    def __init__(self, nc: int = 80, anchors: Sequence[Sequence[float]] = (), nm: int = 32, npr: int = 256,
                 ch: Sequence[int] = (), strides: Sequence[float] = (8, 16, 32)):
        self.nm = int(nm)  # before Detect.__init__: it sizes the 1x1 convs with no = 5 + nc + nm
        super().__init__(nc, anchors, ch, strides)
        self.npr = int(npr)
        self.proto = Proto(ch[0], self.npr, self.nm)

    def forward(self, xs: list[torch.Tensor]):
        p = self.proto(xs[0])
        return Detect.forward(self, xs), p


_MODULES = {"Conv": Conv, "C3": C3, "SPPF": SPPF, "Concat": Concat, "nn.Upsample": nn.Upsample,
            "Upsample": nn.Upsample, "Detect": Detect, "Segment": Segment}
# string arguments of the official yaml files, resolved as the official parse_model's eval() would
# resolve them -- from this fixed table, never by evaluating text from a file
_CONSTANTS = {"None": None, "True": True, "False": False}


def resolve_arg(a: Any, nc: int, anchors: Any) -> Any:
    """One yaml argument -> its value: 'None'/'True'/'False', 'nc', 'anchors', numbers written as
    strings, 'nn.<Module>' (a torch.nn class); any other string stays a string (as eval's NameError
    leaves 'nearest' in the official code)."""
    if not isinstance(a, str):
        return a
    text = a.strip()
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text == "nc":
        return nc
    if text == "anchors":
        return anchors
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    if text.startswith("nn."):
        obj = getattr(nn, text[3:], None)
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return obj
    return a


def _module_name(name: Any) -> str:
    text = name.strip() if isinstance(name, str) else getattr(name, "__name__", repr(name))
    return "nn." + text[len("torch.nn."):] if text.startswith("torch.nn.") else text


def _from_list(f: int | Sequence[int]) -> list[int]:
    return [f] if isinstance(f, int) else list(f)


def _build_layer(i: int, row: Sequence[Any], nc: int, anchors: Any, gd: float, gw: float, ch_mul: int,
                 ch_in: int, ch: list[int], strides: list[float]) -> tuple[nn.Module, int, float]:
    """One [from, number, module, args] row -> (module with .i/.f, output channels, output stride),
    with the official parse_model's arithmetic (depth gain, make_divisible widths, Detect inputs)."""
    f, n, name, args = row
    name = _module_name(name)
    if name not in _MODULES:
        raise ModelError(f"model config layer {i}: module {name!r} is not implemented by perception_edge "
                         f"(it builds {', '.join(sorted(set(_MODULES) - {'Upsample'}))}: the YOLOv5 v6.0-v7.0 "
                         f"architectures)")
    m = _MODULES[name]
    args = [resolve_arg(a, nc, anchors) for a in list(args)]
    na = (len(anchors[0]) // 2) if isinstance(anchors, (list, tuple)) else int(anchors)
    no = na * (nc + 5)
    srcs = _from_list(f)
    c_in = [ch_in if (i == 0 and j == -1) else ch[j] for j in srcs]
    s_in = [1.0 if (i == 0 and j == -1) else strides[j] for j in srcs]
    n = max(round(n * gd), 1) if n > 1 else n  # depth gain
    stride = s_in[0]
    if m in (Conv, C3, SPPF):
        c1, c2 = c_in[0], args[0]
        if c2 != no:  # a Conv straight to the detection channels is not scaled (official)
            c2 = make_divisible(c2 * gw, ch_mul)
        args = [c1, c2, *args[1:]]
        if m is C3:
            args.insert(2, n)  # repeats live inside C3
            n = 1
        if m is Conv:
            stride *= args[3] if len(args) > 3 else 1
    elif m is Concat:
        c2 = sum(c_in)
    elif m in (Detect, Segment):
        if isinstance(args[1], int):  # number of anchors per level: values come from the state_dict
            args[1] = [list(range(args[1] * 2))] * len(srcs)
        if m is Segment:
            args = [args[0], args[1], args[2] if len(args) > 2 else 32,
                    make_divisible((args[3] if len(args) > 3 else 256) * gw, ch_mul), c_in, s_in]
        else:
            args = [args[0], args[1], c_in, s_in]
        c2 = 0
    else:  # nn.Upsample(size, scale_factor, mode)
        c2 = c_in[0]
        scale = args[1] if len(args) > 1 else None
        stride /= float(scale) if scale else 1.0
    module = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
    module.i, module.f = i, f  # official attributes: layer index, from-index
    return module, c2, stride


def parse_model(cfg: dict[str, Any]) -> tuple[nn.Sequential, list[int], list[float]]:
    """Layers of an official model yaml dict, as ``yaml.safe_load`` reads the official files (string
    arguments such as 'None', 'nc', 'anchors' are resolved by ``resolve_arg``). Implements the
    modules of the v6.0-v7.0 architectures: Conv, C3, SPPF, nn.Upsample, Concat, Detect (P5 and
    P6), Segment. Returns (layers, save list, strides)."""
    try:
        nc, gd, gw = int(cfg["nc"]), float(cfg["depth_multiple"]), float(cfg["width_multiple"])
        anchors = cfg["anchors"]
        if not isinstance(anchors, (list, tuple)):
            anchors = int(anchors)  # an anchor count per level (official: values from AutoAnchor)
        ch_mul = int(cfg.get("channel_multiple") or 8)
        layers_cfg = list(cfg["backbone"]) + list(cfg["head"])
        ch_in = int(cfg.get("ch", 3))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model config lacks or has an invalid entry: {e}") from None
    if nc < 1:
        raise ModelError(f"number of classes must be >= 1, got {nc}")
    act = cfg.get("activation")
    if act and str(act).replace(" ", "") not in ("nn.SiLU()", "SiLU()"):
        raise ModelError(f"model config activation {act!r} is not supported (YOLOv5 uses SiLU)")
    layers: list[nn.Module] = []
    save: list[int] = []
    ch: list[int] = []  # output channels per layer
    strides: list[float] = []  # output stride per layer: lets Detect know its levels without a forward
    for i, row in enumerate(layers_cfg):
        try:
            module, c2, stride = _build_layer(i, row, nc, anchors, gd, gw, ch_mul, ch_in, ch, strides)
        except ModelError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, RuntimeError) as e:
            raise ModelError(f"model config layer {i} {row!r} is invalid: {e}") from None
        save.extend(j % i for j in _from_list(module.f) if j != -1)
        layers.append(module)
        ch.append(c2)
        strides.append(stride)
    if not layers or not isinstance(layers[-1], Detect):
        raise ModelError("model config does not end with a Detect or Segment layer")
    return nn.Sequential(*layers), sorted(save), list(layers[-1].strides)


class YOLOv5(nn.Module):
    """YOLOv5 detection model with the official module layout.

    ``YOLOv5(nc=80, variant="n")``; ``depth_multiple`` / ``width_multiple`` override the variant's;
    ``anchors`` are 3 lists of 3 (w, h) pairs in pixels; ``cfg`` takes a whole official yaml dict
    (as stored in checkpoints) instead.
    """

    def __init__(self, nc: int = 80, variant: str = "n", depth_multiple: float | None = None,
                 width_multiple: float | None = None, anchors: Sequence[Sequence[float]] | None = None,
                 ch: int = 3, names: Sequence[str] | None = None, cfg: dict[str, Any] | None = None):
        super().__init__()
        self.yaml = copy.deepcopy(cfg) if cfg is not None else model_config(
            nc, variant, depth_multiple, width_multiple, anchors, ch)
        self.model, self.save, strides = parse_model(self.yaml)
        self.nc = int(self.yaml["nc"])
        self.stride = torch.tensor(strides, device="cpu")
        self.names = list(names) if names is not None else default_names(self.nc)
        if len(self.names) != self.nc:
            raise ModelError(f"{len(self.names)} class names for a model with {self.nc} classes")
        self._initialize_biases()

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    @property
    def segmentation(self) -> bool:
        """Instance segmentation (a Segment head): eval outputs are (boxes, prototype masks)."""
        return isinstance(self.detect, Segment)

    def forward(self, x: torch.Tensor):
        y: list[torch.Tensor | None] = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def _initialize_biases(self) -> None:
        """Focal-loss style priors (models/yolo.py _initialize_biases): objectness 8 objects per 640
        image, class 0.6 / (nc - 1) -- so a fresh model's confidences start low, not at 0.5."""
        det = self.detect
        with torch.no_grad():
            for conv, s in zip(det.m, det.strides):
                b = conv.bias.view(det.na, -1)
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:5 + det.nc] += math.log(0.6 / (det.nc - 0.999999))

    def fuse(self) -> YOLOv5:
        """Fold every BatchNorm into its conv (in place; inference only). Returns self."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.fuse()
        return self

    def num_outputs(self, img_size: int | tuple[int, int]) -> int:
        """N of the [B, N, 5 + nc] output for an input of img_size (H, W)."""
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        return self.detect.na * sum((h // int(s)) * (w // int(s)) for s in self.detect.strides)


def _hw(img_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_size, int):
        return img_size, img_size
    h, w = (int(v) for v in img_size)
    return h, w


def recalibrate_batchnorm(model: nn.Module, images: Sequence[Any], img_size: int | Sequence[int],
                          batch_size: int = 4) -> nn.Module:
    """Reset BatchNorm statistics and re-estimate them on letterboxed RGB uint8 images (H x W x 3).

    A freshly initialised network has running mean 0 / var 1 everywhere, so in eval mode its
    activations drift layer after layer and the head saturates to nearly the same output for every
    image. Statistics measured on real images (cumulative average, momentum=None) keep each layer
    normalised, making outputs depend on the input. Leaves the model in eval mode.
    """
    if not len(images):
        raise ModelError("no images to recalibrate batch norm on")
    h, w = _hw(img_size)
    stride = int(max(model.stride.tolist())) if isinstance(getattr(model, "stride", None), torch.Tensor) else 32
    if h % stride or w % stride:
        raise ModelError(f"input size {w}x{h} is not a multiple of the maximum stride {stride}")
    from perception_edge.core.preprocess import Preprocessor

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ModelError("the model has no BatchNorm layers to recalibrate (already fused?)")
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    pre = Preprocessor((h, w))  # the runtime's letterbox, so statistics match deployment inputs
    try:
        param = next(model.parameters())
        model.train()
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                blob, _ = pre([(im, "rgb") for im in images[i:i + batch_size]])
                model(torch.from_numpy(blob.copy()).to(param.device, param.dtype))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return model
