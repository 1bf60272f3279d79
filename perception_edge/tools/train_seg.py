"""`perception-edge train-seg`: train a lane segmentation model (U-Net or DDRNet-23-slim) on CPU or GPU.

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

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from perception_edge.core.errors import ConfigError, ModelError

ARCHS = ("unet", "ddrnet23-slim")


@dataclass
class SegConfig:
    arch: str = "unet"
    classes: int = 2
    data: str = ""
    synthetic: int = 0
    fresh_synthetic: bool = False
    synthetic_size: tuple[int, int] = (640, 360)  # (W, H) of rendered scenes
    val: int = 0  # validation samples (0: 10% of the data, at least 16)
    epochs: int = 10
    batch: int = 8
    img_size: tuple[int, int] = (320, 192)  # (W, H)
    resize_mode: str = "letterbox"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    out: str = "runs/seg"
    seed: int = 0
    unet_base: int = 16
    unet_depth: int = 4
    unet_stem_stride: int = 1
    aux_weight: float = 0.4
    threads: int = 0
    workers: int = 0
    augment: bool = True
    export: bool = True
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit)
    time_limit: float = 0.0  # minutes of training (0: no limit); the LR schedule follows the elapsed fraction
    init: str = ""
    quiet: bool = False
    class_names: list[str] = field(default_factory=list)

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.img_size[1]), int(self.img_size[0])

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
    if arch == "ddrnet23-slim":
        from perception_edge.models.ddrnet import ddrnet23_slim

        return ddrnet23_slim(out_ch, aux_head=aux)
    raise ConfigError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def load_checkpoint(path: str):
    """A train-seg checkpoint -> (model in eval mode, checkpoint dict)."""
    import torch

    if not Path(path).is_file():
        raise ModelError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "state_dict" not in ck or "config" not in ck:
        raise ModelError(f"{path} is not a train-seg checkpoint")
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


class _Progress:
    def __init__(self, total: int, desc: str, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.time()
        if not quiet:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def update(self, **info) -> None:
        self.n += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in info.items()},
                                 refresh=False)
            self.bar.update(1)
        elif self.n % max(1, self.total // 10) == 0 or self.n == self.total:
            items = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            print(f"{self.desc} {self.n}/{self.total} {items} ({time.time() - self.t0:.0f} s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _lr_at(step: int, progress: float, base: float, warmup: int = 50) -> float:
    """Linear warm-up over the first steps, then cosine decay to 2% over the training progress (0..1)."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _progress(step: int, total: int, t_start: float, time_limit_min: float) -> float:
    p = step / max(1, total)
    if time_limit_min > 0:
        p = max(p, (time.time() - t_start) / (60.0 * time_limit_min))
    return p


def _sources(cfg: SegConfig):
    from perception_edge.data.dataset import DatasetFolder, SampleSource, split_folder

    if cfg.data:
        folder = DatasetFolder(cfg.data, need_masks=True)
        train_idx, val_idx = split_folder(folder, 0.1)
        if cfg.val:
            val_idx = val_idx[:cfg.val]
        return (SampleSource(folder, train_idx), SampleSource(folder, val_idx) if val_idx else None,
                folder.seg_classes)
    if cfg.synthetic <= 0:
        raise ConfigError("give --data DIR or --synthetic N")
    drivable = cfg.classes >= 3
    n_val = cfg.val or max(16, cfg.synthetic // 10)
    train = SampleSource(synthetic=cfg.synthetic, seed=cfg.seed, size=cfg.synthetic_size, drivable=drivable)
    val = SampleSource(synthetic=n_val, seed=cfg.seed + 1_000_003, size=cfg.synthetic_size, drivable=drivable)
    from perception_edge.data.synthetic import SEG_CLASSES

    return train, val, SEG_CLASSES[:max(2, cfg.classes)]


def _train(cfg: SegConfig) -> dict[str, object]:
    """Train; returns {"history": [...], "best_iou": float, "best": path, "onnx": path or ""}."""
    import torch
    from torch.utils.data import DataLoader

    if cfg.arch not in ARCHS:
        raise ConfigError(f"unknown architecture {cfg.arch!r}; choose from {', '.join(ARCHS)}")
    if cfg.batch < 2:
        raise ConfigError("--batch must be >= 2 (BatchNorm statistics)")
    if cfg.resize_mode not in ("letterbox", "stretch"):
        raise ConfigError(f"unknown resize mode {cfg.resize_mode!r} (letterbox or stretch)")
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_src, val_src, names = _sources(cfg)
    if cfg.classes == 2:
        names = ["background", names[1] if len(names) > 1 else "lane_marking"]
    names = list(cfg.class_names) or list(names)
    if len(names) != cfg.classes:
        names = (names + [f"class_{i}" for i in range(len(names), cfg.classes)])[:cfg.classes]
    cfg.class_names = names
    model = build_model(cfg.arch, cfg.classes, cfg.unet_base, cfg.unet_depth, aux=cfg.arch != "unet",
                        unet_stem_stride=cfg.unet_stem_stride)
    if cfg.init:
        init_model, _ = load_checkpoint(cfg.init)
        model.load_state_dict(init_model.state_dict(), strict=False)
    n_params = sum(p.numel() for p in model.parameters())
    model = model.to(memory_format=torch.channels_last)  # oneDNN's fast layout on CPU
    steps_per_epoch = len(train_src) // cfg.batch
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_src)} training samples are fewer than one batch of {cfg.batch}")
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, object]] = []
    best_iou, step = -1.0, 0
    t_start = time.time()
    cpu_start = time.process_time()
    if not cfg.quiet:
        print(f"train-seg: {cfg.arch} ({n_params / 1e6:.2f} M parameters), {len(train_src)} training / "
              f"{len(val_src) if val_src else 0} validation samples, input {cfg.img_size[0]}x{cfg.img_size[1]} "
              f"{cfg.resize_mode}, {cfg.epochs} epochs x {steps_per_epoch} steps", flush=True)
    for epoch in range(cfg.epochs):
        if step >= total or _progress(step, total, t_start, cfg.time_limit) >= 1.0:
            break
        src = train_src
        if cfg.fresh_synthetic and not cfg.data and epoch > 0:
            from perception_edge.data.dataset import SampleSource

            src = SampleSource(synthetic=cfg.synthetic, seed=cfg.seed + 7919 * epoch, size=cfg.synthetic_size,
                               drivable=cfg.classes >= 3)
        loader = DataLoader(_TorchData(src, cfg, True, epoch), batch_size=cfg.batch, shuffle=True, drop_last=True,
                            num_workers=cfg.workers, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        model.train()
        bar = _Progress(min(steps_per_epoch, total - step), f"epoch {epoch + 1}/{cfg.epochs}", cfg.quiet)
        losses = []
        t0 = time.time()
        for x, y in loader:
            progress = _progress(step, total, t_start, cfg.time_limit)
            if step >= total or progress >= 1.0:
                break
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, progress, cfg.lr, min(50, max(1, total // 20)))
            out_ = model(x.contiguous(memory_format=torch.channels_last))
            if isinstance(out_, (list, tuple)):
                loss = seg_loss(out_[0], y, cfg.binary) + cfg.aux_weight * seg_loss(out_[1], y, cfg.binary)
            else:
                loss = seg_loss(out_, y, cfg.binary)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(loss=float(np.mean(losses[-20:])), lr=opt.param_groups[0]["lr"])
        bar.close()
        record: dict[str, object] = {"epoch": epoch + 1, "steps": step, "loss": float(np.mean(losses)) if losses else None,
                                     "train_s": round(time.time() - t0, 1)}
        fg_iou = float("nan")
        if val_src is not None and len(val_src):
            ious = evaluate(model, val_src, cfg)
            record["iou"] = {names[i]: (None if np.isnan(v) else round(float(v), 4)) for i, v in enumerate(ious)}
            fg = ious[1:]
            fg_iou = float(np.nanmean(fg)) if (~np.isnan(fg)).any() else float("nan")
            record["fg_iou"] = fg_iou
        history.append(record)
        ck = {"config": asdict(cfg), "state_dict": model.state_dict(), "epoch": epoch + 1, "metrics": record,
              "class_names": names}
        torch.save(ck, out / "last.pt")
        score = fg_iou if not np.isnan(fg_iou) else -float(record["loss"] or 0)
        if score > best_iou:
            best_iou = score
            torch.save(ck, out / "best.pt")
        if not cfg.quiet:
            iou_txt = "" if np.isnan(fg_iou) else f"  val IoU {record['iou']}"
            print(f"epoch {epoch + 1}: loss {record['loss']:.4f}{iou_txt}  ({time.time() - t_start:.0f} s)", flush=True)
    elapsed = time.time() - t_start
    cpu = time.process_time() - cpu_start  # all threads of this process: independent of other load
    (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history,
                                                  "train_seconds": round(elapsed, 1),
                                                  "cpu_seconds": round(cpu, 1)}, indent=1))
    onnx_path = ""
    if cfg.export:
        from perception_edge.models.seg_export import export_segmentation_onnx

        best, _ = load_checkpoint(str(out / "best.pt"))
        onnx_path = export_segmentation_onnx(best, str(out / "model.onnx"), cfg.input_hw, class_names=names,
                                             resize_mode=cfg.resize_mode, dynamic_batch=True)  # all cameras, one call
        if not cfg.quiet:
            print(f"exported {onnx_path}")
    return {"history": history, "best_iou": best_iou, "best": str(out / "best.pt"), "onnx": onnx_path,
            "train_seconds": elapsed, "cpu_seconds": cpu,
            "parameters": n_params}


def train(cfg: SegConfig) -> dict[str, object]:
    """Train; returns a dict with the history, best score, checkpoint and ONNX paths, timings.
    cfg.threads sets torch's CPU threads for the run (restored afterwards)."""
    import torch

    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(previous)


def _size(text: str) -> tuple[int, int]:
    from perception_edge.data.dataset import parse_size

    return parse_size(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-edge train-seg", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="data set folder (images/ + masks/)")
    src.add_argument("--synthetic", type=int, help="number of synthetic training scenes rendered on the fly")
    ap.add_argument("--arch", choices=ARCHS, default="unet")
    ap.add_argument("--classes", type=int, default=2, help="classes incl. background; 2 = binary lane marking")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img-size", default="320x192", help="model input WIDTHxHEIGHT")
    ap.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default="runs/seg", help="output folder (checkpoints, model.onnx)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=0, help="validation samples (default: 10%%)")
    ap.add_argument("--unet-base", type=int, default=16, help="U-Net width of the first level")
    ap.add_argument("--unet-depth", type=int, default=4, help="U-Net downsamplings")
    ap.add_argument("--unet-stem-stride", type=int, choices=(1, 2), default=1,
                    help="2: U-Net levels at half resolution with a full-resolution output branch")
    ap.add_argument("--time-limit", type=float, default=0.0, help="stop after this many minutes of training")
    ap.add_argument("--synthetic-size", default="640x360", help="rendered scene size WIDTHxHEIGHT")
    ap.add_argument("--fresh-synthetic", action="store_true", help="render new synthetic scenes every epoch")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--workers", type=int, default=0, help="data loader processes")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--init", default="", help="start from this train-seg checkpoint")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export at the end")
    args = ap.parse_args(argv)
    cfg = SegConfig(arch=args.arch, classes=args.classes, data=args.data or "", synthetic=args.synthetic or 0,
                    fresh_synthetic=args.fresh_synthetic, synthetic_size=_size(args.synthetic_size), val=args.val,
                    epochs=args.epochs, batch=args.batch, img_size=_size(args.img_size), resize_mode=args.resize_mode,
                    lr=args.lr, out=args.out, seed=args.seed, unet_base=args.unet_base, unet_depth=args.unet_depth,
                    unet_stem_stride=args.unet_stem_stride, time_limit=args.time_limit, threads=args.threads, workers=args.workers, augment=not args.no_augment,
                    export=not args.no_export, max_steps=args.max_steps, init=args.init)
    result = train(cfg)
    print(f"done in {result['train_seconds']:.0f} s; best validation foreground IoU {result['best_iou']:.4f}; "
          f"checkpoint {result['best']}" + (f"; ONNX {result['onnx']}" if result["onnx"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
