"""A configurable U-Net (Ronneberger et al. 2015) for lane / drivable-area segmentation.

``UNet(num_classes, base=16, depth=4)``: ``depth`` max-pool downsamplings, widths base * 2**level
(capped by ``max_width``), two 3x3 conv + BatchNorm + ReLU per level, bilinear upsampling to the
skip connection's exact size (so any input size works, no multiple-of-2**depth rule) followed by
concatenation. Output: logits [B, num_classes, H, W] at the input resolution.

``stem_stride=2`` makes a full-resolution-in, full-resolution-out U-Net whose levels run at half
resolution: a stride-2 stem, and a light full-resolution branch (``full_width`` channels: one conv on
the input, one after concatenating the upsampled decoder output) that places edges at input-pixel
precision. For thin structures such as lane markings this buys the boundary accuracy of a
full-resolution model for about the cost of a half-resolution one.

Every op is a plain Conv / BatchNormalization (folded at export) / Relu / MaxPool 2x2 / Resize /
Concat, all supported by TensorRT and ONNX Runtime's quantizer.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    def __init__(self, num_classes: int = 1, base: int = 16, depth: int = 4, max_width: int = 512,
                 in_channels: int = 3, stem_stride: int = 1, full_width: int = 4):
        super().__init__()
        if num_classes < 1 or base < 1 or depth < 1:
            raise ValueError(f"UNet needs num_classes, base, depth >= 1 (got {num_classes}, {base}, {depth})")
        self.num_classes = num_classes
        self.base = base
        self.depth = depth
        widths = [min(base * 2 ** i, max_width) for i in range(depth + 1)]
        self.widths = widths
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.stem_stride = stem_stride
        if stem_stride == 1:
            self.stem = DoubleConv(in_channels, widths[0])
        else:
            self.full = nn.Sequential(nn.Conv2d(in_channels, full_width, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(full_width), nn.ReLU(inplace=True))
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.Conv2d(widths[0], widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
            self.refine = nn.Sequential(nn.Conv2d(widths[0] + full_width, full_width, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(full_width), nn.ReLU(inplace=True))
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(DoubleConv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0] if stem_stride == 1 else full_width, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if num_classes == 1:  # binary: start at a low foreground prior (thin structures are rare)
            nn.init.constant_(self.head.bias, -2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.full(x) if self.stem_stride == 2 else None
        x = self.stem(x)
        skips: list[torch.Tensor] = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        if full is not None:
            x = F.interpolate(x, size=full.shape[-2:], mode="bilinear", align_corners=False)
            x = self.refine(torch.cat([x, full], 1))
        return self.head(x)
