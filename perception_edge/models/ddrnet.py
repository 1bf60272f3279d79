"""DDRNet-23-slim (Hong et al. 2021, "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes"), any class count, logits upsampled to the input size inside the model.

Structure as published (segmentation/DDRNet_23_slim.py of ydhongHIT/DDRNet): planes 32, two
BasicBlocks per stage, a 1/8 high-resolution branch (layer3_, layer4_, layer5_) beside the
low-resolution 1/16 -> 1/32 -> 1/64 branch, two bilateral fusions (down3/compression3 after stage 3,
down4/compression4 after stage 4), a Bottleneck layer5 at 1/64 followed by the DAPPM context module
(branch planes 128, output 128), a segmentation head (64 intermediate planes) on the sum of both
branches at 1/8 resolution and an optional auxiliary head on the high-resolution branch after the
first fusion (training only). 5.7 M parameters at 19 classes. Module and parameter names follow
the reference layout, so its state_dict keys match (an official checkpoint loads with
``load_state_dict(..., strict=False)`` minus a final layer of another class count).

Differences from the reference, all for deployment:

* The output is upsampled (bilinear) to the input resolution inside the model, so the runtime
  decode (perception_edge.core.segmentation) needs no knowledge of the output stride.
* Fusion upsampling targets the high-resolution branch's actual size rather than ``H // 8``, so
  inputs need not be multiples of 64 (any size >= 64 works).

TensorRT and DAPPM. DAPPM's context comes from average pools of kernel 5/9/17 with stride 2/4/8 and
a global pool. How each is exported so that TensorRT (GPU) builds it:

* The global pool is ``x.mean((2, 3), keepdim=True)`` -> ONNX ``ReduceMean`` (TensorRT
  IReduceLayer). No ``AdaptiveAvgPool2d``: its ONNX export fails for output sizes other than 1 and
  ties the graph to one input size when written as an ``AveragePool`` whose kernel is the whole
  feature map; such a kernel exceeds TensorRT's pooling window limit (kernel volume below
  ``MAX_KERNEL_DIMS_PRODUCT``) at large inputs and varies with the input size.
* The three strided pools are fixed ``AveragePool`` nodes: kernel 5/9/17, stride 2/4/8, symmetric
  padding 2/4/8 (always smaller than the kernel, as TensorRT requires), ``ceil_mode=0`` and an
  explicit ``count_include_pad=1`` (the published behaviour, TensorRT's default
  "count includes padding" average; with ``ceil_mode=0`` and symmetric padding PyTorch, ONNX
  Runtime and TensorRT agree at the borders; the ceil_mode/exclude-pad combinations are where they
  differ). Their size does not depend on the input, the largest window is 17 x 17 = 289 elements
  (``POOL_KERNEL_MAX``), far below TensorRT's limit. Each pooled map is at least 1 x 1 for any input
  because the padding is kernel // 2.
* On a Jetson DLA core (pooling windows limited to 1..8) the 9 and 17 pools run on the GPU with
  GPU fallback enabled; everything else is ordinary conv/BN/ReLU/Resize.
* All ``Resize`` nodes are bilinear with ``align_corners=False`` (half_pixel) and constant output
  sizes for a fixed input size (export with a static H x W; only the batch may be dynamic).
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.1
POOL_KERNEL_MAX = 17  # the largest pooling window the exported graph holds (TensorRT: volume < 100000)
DAPPM_POOLS: tuple[tuple[int, int, int], ...] = ((5, 2, 2), (9, 4, 4), (17, 8, 8))  # kernel, stride, pad


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module = None, no_relu: bool = False):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + shortcut
        return out if self.no_relu else self.relu(out)


class Bottleneck(nn.Module):
    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module = None, no_relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + shortcut
        return out if self.no_relu else self.relu(out)


class GlobalAvgPool(nn.Module):
    """Global average pooling exported as ReduceMean (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def _bn_relu_conv(cin: int, cout: int, kernel: int = 1) -> list[nn.Module]:
    return [nn.BatchNorm2d(cin, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)]


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module: hierarchical fusion of 4 pooled contexts + identity."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__()
        pools = [nn.AvgPool2d(k, s, p, ceil_mode=False, count_include_pad=True) for k, s, p in DAPPM_POOLS]
        self.scale1 = nn.Sequential(pools[0], *_bn_relu_conv(cin, branch))
        self.scale2 = nn.Sequential(pools[1], *_bn_relu_conv(cin, branch))
        self.scale3 = nn.Sequential(pools[2], *_bn_relu_conv(cin, branch))
        self.scale4 = nn.Sequential(GlobalAvgPool(), *_bn_relu_conv(cin, branch))
        self.scale0 = nn.Sequential(*_bn_relu_conv(cin, branch))
        self.process1 = nn.Sequential(*_bn_relu_conv(branch, branch, 3))
        self.process2 = nn.Sequential(*_bn_relu_conv(branch, branch, 3))
        self.process3 = nn.Sequential(*_bn_relu_conv(branch, branch, 3))
        self.process4 = nn.Sequential(*_bn_relu_conv(branch, branch, 3))
        self.compression = nn.Sequential(*_bn_relu_conv(branch * 5, cout))
        self.shortcut = nn.Sequential(*_bn_relu_conv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y0 = self.scale0(x)
        y1 = self.process1(_up(self.scale1(x), size) + y0)
        y2 = self.process2(_up(self.scale2(x), size) + y1)
        y3 = self.process3(_up(self.scale3(x), size) + y2)
        y4 = self.process4(_up(self.scale4(x), size) + y3)
        return self.compression(torch.cat([y0, y1, y2, y3, y4], 1)) + self.shortcut(x)


class SegmentHead(nn.Module):
    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


class HighResHead(nn.Module):
    """The segmentation head moved up to 1/2 resolution, for classes a few pixels wide (lane markings):
    the 1/8 features (projected to `mid` channels) upsampled and joined with the 1/4 features of
    layer1, then with a stride-2 convolution of the image, each joint refined by a 3x3 convolution;
    logits at 1/2 resolution. (Bilinear upsampling of 1/8 logits cannot draw a line narrower than the
    8-pixel grid: on the synthetic lane scenes at 640x384 even perfect 1/8 coverage maps reach IoU 0.63.)"""

    def __init__(self, cin: int, mid: int, num_classes: int, half: int = 16):
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, momentum=BN_MOMENTUM),
                                     nn.ReLU(inplace=True))
        self.join_quarter = nn.Sequential(nn.Conv2d(mid * 2, mid, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(mid, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        self.stem = nn.Sequential(nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half, momentum=BN_MOMENTUM),
                                  nn.ReLU(inplace=True))
        self.join_half = nn.Sequential(nn.Conv2d(mid + half, half, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(half, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(half, num_classes, 1, bias=True)
        if num_classes == 1:  # binary: start at a low foreground prior (thin structures are rare)
            nn.init.constant_(self.classifier.bias, -2.0)

    def forward(self, x: torch.Tensor, quarter: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = _up(self.project(x), quarter.shape[-2:])
        x = self.join_quarter(torch.cat([x, torch.relu(quarter)], 1))
        s = self.stem(image)
        x = self.join_half(torch.cat([_up(x, s.shape[-2:]), s], 1))
        return self.classifier(x)


def _make_layer(block, cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != planes * block.expansion:
        downsample = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM))
    layers = [block(cin, planes, stride, downsample)]
    for i in range(1, blocks):
        layers.append(block(planes * block.expansion, planes, 1, no_relu=(i == blocks - 1)))
    return nn.Sequential(*layers)


class DDRNet(nn.Module):
    """Dual-resolution network. DDRNet-23-slim: planes=32, spp_planes=128, head_planes=64.

    forward(x [B,3,H,W] in [0,1]) -> logits [B,num_classes,H,W]; in training mode with aux_head=True
    a list [main, aux] (both at input size; the published auxiliary loss weight is 0.4).
    """

    def __init__(self, num_classes: int = 19, planes: int = 32, spp_planes: int = 128, head_planes: int = 64,
                 layers: tuple[int, int, int, int] = (2, 2, 2, 2), aux_head: bool = False, refine: bool = False):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        high = planes * 2
        self.num_classes = num_classes
        self.aux_head = aux_head
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, planes, 3, 2, 1), nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 2, 1), nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
        )
        self.relu = nn.ReLU(inplace=False)
        self.layer1 = _make_layer(BasicBlock, planes, planes, layers[0])
        self.layer2 = _make_layer(BasicBlock, planes, planes * 2, layers[1], 2)
        self.layer3 = _make_layer(BasicBlock, planes * 2, planes * 4, layers[2], 2)
        self.layer4 = _make_layer(BasicBlock, planes * 4, planes * 8, layers[3], 2)
        self.compression3 = nn.Sequential(nn.Conv2d(planes * 4, high, 1, bias=False),
                                          nn.BatchNorm2d(high, momentum=BN_MOMENTUM))
        self.compression4 = nn.Sequential(nn.Conv2d(planes * 8, high, 1, bias=False),
                                          nn.BatchNorm2d(high, momentum=BN_MOMENTUM))
        self.down3 = nn.Sequential(nn.Conv2d(high, planes * 4, 3, 2, 1, bias=False),
                                   nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM))
        self.down4 = nn.Sequential(
            nn.Conv2d(high, planes * 4, 3, 2, 1, bias=False), nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes * 4, planes * 8, 3, 2, 1, bias=False), nn.BatchNorm2d(planes * 8, momentum=BN_MOMENTUM),
        )
        self.layer3_ = _make_layer(BasicBlock, planes * 2, high, 2)
        self.layer4_ = _make_layer(BasicBlock, high, high, 2)
        self.layer5_ = _make_layer(Bottleneck, high, high, 1)
        self.layer5 = _make_layer(Bottleneck, planes * 8, planes * 8, 1, 2)
        self.spp = DAPPM(planes * 16, spp_planes, planes * 4)
        if aux_head:
            self.seghead_extra = SegmentHead(high, head_planes, num_classes)
        self.refine = refine
        if refine:  # a light head at 1/2 resolution instead of the 1/8 one (thin structures: see HighResHead)
            self.hr_head = HighResHead(planes * 4, planes, num_classes)
        else:
            self.final_layer = SegmentHead(planes * 4, head_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        in_size = x.shape[-2:]
        image = x
        x = self.layer1(self.conv1(x))
        quarter = x
        l2 = self.layer2(self.relu(x))  # 1/8
        l3 = self.layer3(self.relu(l2))  # 1/16
        hi = self.layer3_(self.relu(l2))  # high-resolution branch, 1/8
        hi_size = hi.shape[-2:]
        lo = l3 + self.down3(self.relu(hi))
        hi = hi + _up(self.compression3(self.relu(l3)), hi_size)
        aux_in = hi
        l4 = self.layer4(self.relu(lo))  # 1/32
        hi = self.layer4_(self.relu(hi))
        lo = l4 + self.down4(self.relu(hi))
        hi = hi + _up(self.compression4(self.relu(l4)), hi_size)
        hi = self.layer5_(self.relu(hi))
        lo = _up(self.spp(self.layer5(self.relu(lo))), hi_size)  # 1/64 -> 1/8
        if self.refine:
            out = _up(self.hr_head(lo + hi, quarter, image), in_size)
        else:
            out = _up(self.final_layer(lo + hi), in_size)
        if self.aux_head and self.training:
            return [out, _up(self.seghead_extra(aux_in), in_size)]
        return out


def ddrnet23_slim(num_classes: int = 19, aux_head: bool = False, refine: bool = False) -> DDRNet:
    """refine: the head at 1/2 resolution (HighResHead) instead of 1/8 ("ddrnet23-slim-hr" in train-seg)."""
    return DDRNet(num_classes, planes=32, spp_planes=128, head_planes=64, layers=(2, 2, 2, 2), aux_head=aux_head,
                  refine=refine)


def ddrnet23(num_classes: int = 19, aux_head: bool = False) -> DDRNet:
    return DDRNet(num_classes, planes=64, spp_planes=128, head_planes=128, layers=(2, 2, 2, 2), aux_head=aux_head)
