"""Lane segmentation training (U-Net or DDRNet-23-slim) on CPU or GPU: the segmentation task of the
training loop (perception_edge.training.loop); `perception-edge train-seg` is its command line.

Data: a data set folder (images/ + masks/, see perception_edge.data.dataset) or synthetic scenes
rendered on the fly (``--synthetic N``). Every training and validation frame goes through the
runtime's geometry: ``perception_edge.core.transform`` letterbox/stretch (INTER_LINEAR, pad 114)
and /255, RGB, NCHW, no mean/std; validation runs the runtime Preprocessor and decode
(``decode_segmentation``: class decision at the model resolution, mapped back to source pixels) and
reports per-class IoU at source resolution.

Loss: ``--classes 2`` trains a binary 1-channel model (BCE on the lane coverage of each input
pixel + soft Dice); more classes train C channels with cross-entropy + Dice over the foreground
classes. DDRNet adds its auxiliary head (weight 0.4). Output folder: last.pt, best.pt (best
validation IoU of the foreground classes), model.onnx (best weights), history.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from perception_edge.core.errors import ConfigError
from perception_edge.training.loop import TrainConfig, Trainer, read_checkpoint, warmup_cosine_lr
from perception_edge.training.qat import QAT_OPSET

ARCHS = ("unet", "ddrnet23-slim", "ddrnet23-slim-hr")  # -hr: DDRNet's head at 1/2 resolution (thin lanes)


@dataclass
class SegConfig(TrainConfig):
    out: str = "runs/seg"
    arch: str = "unet"
    classes: int = 2  # with the background; 2 trains a binary 1-channel model
    resize_mode: str = "letterbox"
    unet_base: int = 16
    unet_depth: int = 4
    unet_stem_stride: int = 1
    aux_weight: float = 0.4

    @property
    def binary(self) -> bool:
        return self.classes == 2


def build_model(arch: str, classes: int, unet_base: int = 16, unet_depth: int = 4, aux: bool = True,
                unet_stem_stride: int = 1):
    """classes counts the background: 2 -> a binary 1-channel model."""
    out_ch = 1 if classes == 2 else classes
    if classes < 2:
        raise ConfigError(f"--classes must be >= 2 (background + at least one class), got {classes}")
    if arch == "unet":
        from perception_edge.models.unet import UNet

        return UNet(out_ch, base=unet_base, depth=unet_depth, stem_stride=unet_stem_stride)
    if arch in ("ddrnet23-slim", "ddrnet23-slim-hr"):
        from perception_edge.models.ddrnet import ddrnet23_slim

        return ddrnet23_slim(out_ch, aux_head=aux, refine=arch.endswith("-hr"))
    raise ConfigError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def load_checkpoint(path: str):
    """A train-seg checkpoint -> (model in eval mode, checkpoint dict)."""
    ck = read_checkpoint(path, "train-seg")
    c = ck["config"]
    model = build_model(c["arch"], c["classes"], c["unet_base"], c["unet_depth"], aux=c["arch"] != "unet",
                        unet_stem_stride=c.get("unet_stem_stride", 1))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


class _TorchData:
    """A torch Dataset over a SampleSource: augmentation at source size, then the runtime geometry."""

    def __init__(self, source, cfg: SegConfig, train: bool, epoch_seed: int = 0):
        self.source, self.cfg, self.train, self.epoch_seed = source, cfg, train, epoch_seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        import torch

        from perception_edge.data.dataset import augment, fit_to_input

        s = self.source[i]
        mask = s.mask if s.mask is not None else np.zeros(s.image.shape[:2], np.uint8)
        if self.cfg.classes == 2:
            mask = (mask == 1).astype(np.uint8)
        image = s.image
        if self.train and self.cfg.augment:
            rng = np.random.default_rng([self.cfg.seed, self.epoch_seed, i])
            image, mask, _, _ = augment(image, mask, None, None, rng)
        fitted, target, _, _ = fit_to_input(image, mask, None, self.cfg.input_hw, self.cfg.resize_mode,
                                            max(2, self.cfg.classes))
        x = torch.from_numpy(np.ascontiguousarray(fitted.transpose(2, 0, 1))).float().div_(255.0)
        return x, torch.from_numpy(target)


def seg_loss(logits, target, binary: bool):
    """Binary: BCE (soft coverage targets) + soft Dice; multi-class: CE + Dice over foreground classes."""
    import torch
    import torch.nn.functional as F

    if binary:
        logits = logits[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        inter = (p * target).sum((1, 2))
        dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + target.sum((1, 2)) + 1)
        return bce + dice.mean()
    ce = F.cross_entropy(logits, target)
    p = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (p * onehot).sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    return ce + dice.mean()


def evaluate(model, source, cfg: SegConfig, batch: int = 8, limit: int = 0) -> np.ndarray:
    """Per-class IoU at source resolution through the runtime Preprocessor + decode_segmentation."""
    import torch

    from perception_edge.core.metrics import SegmentationMeter
    from perception_edge.core.preprocess import Preprocessor
    from perception_edge.core.segmentation import decode_segmentation

    n_cls = max(2, cfg.classes)
    meter = SegmentationMeter(n_cls)
    pre = Preprocessor(cfg.input_hw, mode=cfg.resize_mode)
    model.eval()
    n = len(source) if not limit else min(limit, len(source))
    with torch.no_grad():
        for start in range(0, n, batch):
            samples = [source[i] for i in range(start, min(n, start + batch))]
            blob, transforms = pre([(s.image, "rgb") for s in samples])
            logits = model(torch.from_numpy(blob[:len(samples)].copy()))
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            masks = decode_segmentation(logits.numpy(), transforms, 0.5)
            for s, m in zip(samples, masks):
                gt = s.mask if s.mask is not None else np.zeros_like(m)
                if cfg.classes == 2:
                    gt = (gt == 1).astype(np.uint8)
                meter.add(m, gt)
    return meter.iou()


class SegTrainer(Trainer):
    """Binary: BCE + soft Dice on one channel; multi-class: CE + Dice; DDRNet's auxiliary head weighs
    aux_weight. AdamW, warm-up then cosine learning rate. Best: foreground IoU on validation."""

    task = "train-seg"
    best_key = "best_iou"

    def check(self) -> None:
        cfg = self.cfg
        if cfg.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {cfg.arch!r}; choose from {', '.join(ARCHS)}")
        if cfg.batch < 2:
            raise ConfigError("--batch must be >= 2 (BatchNorm statistics)")
        if cfg.resize_mode not in ("letterbox", "stretch"):
            raise ConfigError(f"unknown resize mode {cfg.resize_mode!r} (letterbox or stretch)")

    def open_folder(self, path: str):
        from perception_edge.data.dataset import DatasetFolder

        folder = DatasetFolder(path, need_masks=True)
        return folder, folder.seg_classes

    def synthetic_source(self, count: int, seed: int):
        from perception_edge.data.dataset import SampleSource

        return SampleSource(synthetic=count, seed=seed, size=self.cfg.synthetic_size, drivable=self.cfg.classes >= 3)

    def synthetic_names(self) -> list[str]:
        from perception_edge.data.synthetic import SEG_CLASSES

        return SEG_CLASSES[:max(2, self.cfg.classes)]

    def class_names(self, found: Sequence[str]) -> list[str]:
        cfg = self.cfg
        names = list(found)
        if cfg.classes == 2:
            names = ["background", names[1] if len(names) > 1 else "lane_marking"]
        names = list(cfg.class_names) or names
        if len(names) != cfg.classes:
            names = (names + [f"class_{i}" for i in range(len(names), cfg.classes)])[:cfg.classes]
        return names

    def make_model(self, names: Sequence[str]):
        cfg = self.cfg
        return build_model(cfg.arch, cfg.classes, cfg.unet_base, cfg.unet_depth, aux=cfg.arch != "unet",
                           unet_stem_stride=cfg.unet_stem_stride)

    def load_checkpoint(self, path: str):
        return load_checkpoint(path)

    def setup(self, model, total: int) -> None:
        import torch

        self.total = total
        self.opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def dataset(self, source, epoch: int):
        return _TorchData(source, self.cfg, True, epoch)

    def set_lr(self, step: int, progress: float) -> None:
        lr = warmup_cosine_lr(step, progress, self.cfg.lr, min(50, max(1, self.total // 20)))
        for g in self.opt.param_groups:
            g["lr"] = lr

    def compute_loss(self, model, batch):
        import torch

        x, y = batch
        cfg = self.cfg
        out = model(x.contiguous(memory_format=torch.channels_last))
        if isinstance(out, (list, tuple)):
            loss = seg_loss(out[0], y, cfg.binary) + cfg.aux_weight * seg_loss(out[1], y, cfg.binary)
        else:
            loss = seg_loss(out, y, cfg.binary)
        return loss, loss.item(), None

    def progress_info(self, losses, parts):
        return {"loss": float(np.mean(losses[-20:])), "lr": self.opt.param_groups[0]["lr"]}

    def validate(self, model, source, names):
        ious = evaluate(model, source, self.cfg)
        fg = ious[1:]
        fg_iou = float(np.nanmean(fg)) if (~np.isnan(fg)).any() else float("nan")
        return {"iou": {names[i]: (None if np.isnan(v) else round(float(v), 4)) for i, v in enumerate(ious)},
                "fg_iou": fg_iou}, fg_iou

    def header(self, n_params, names, train_src, val_src, steps_per_epoch) -> str:
        cfg = self.cfg
        return (f"train-seg: {cfg.arch} ({n_params / 1e6:.2f} M parameters), {len(train_src)} training / "
                f"{len(val_src) if val_src else 0} validation samples, input {cfg.img_size[0]}x{cfg.img_size[1]} "
                f"{cfg.resize_mode}, {cfg.epochs} epochs x {steps_per_epoch} steps")

    def summary(self, record) -> str:
        fg_iou = record.get("fg_iou", float("nan"))
        return "" if np.isnan(fg_iou) else f"  val IoU {record['iou']}"

    def export(self, best, out: Path, names: Sequence[str]) -> str:
        from perception_edge.models.seg_export import export_segmentation_onnx

        cfg = self.cfg
        return export_segmentation_onnx(best, str(out / "model.onnx"), cfg.input_hw, class_names=list(names),
                                        resize_mode=cfg.resize_mode, dynamic_batch=True,  # all cameras, one call
                                        opset=QAT_OPSET if cfg.qat else 12)


def train(cfg: SegConfig) -> dict[str, object]:
    """Train; returns a dict with the history, best_iou, checkpoint and ONNX paths, timings.
    cfg.threads sets torch's CPU threads for the run (restored afterwards)."""
    return SegTrainer(cfg).run()


__all__ = ["ARCHS", "SegConfig", "SegTrainer", "build_model", "load_checkpoint", "seg_loss", "evaluate", "train"]
