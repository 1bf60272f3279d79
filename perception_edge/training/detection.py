"""YOLOv5 detector training (perception_edge.models.yolov5) on CPU or GPU: the detection task of the
training loop (perception_edge.training.loop); `perception-edge train-det` is its command line.

Data: a data set folder with YOLO labels (images/ + labels/, see perception_edge.data.dataset) or
synthetic scenes rendered on the fly (``--synthetic N``, classes of perception_edge.data.synthetic).
Frames go through the runtime geometry (``perception_edge.core.transform`` letterbox, INTER_LINEAR,
pad 114, /255, RGB); validation runs the runtime Preprocessor and decode (``decode_raw`` + NMS,
``to_source``) and reports COCO-style mAP@0.5 in source pixels (perception_edge.core.metrics).

Loss: the official YOLOv5 ComputeLoss (utils/loss.py): targets assigned to every anchor whose
width and height ratios to the box are within ``anchor_t`` = 4.0, in the box's cell and the two
nearest neighbour cells (offset g = 0.5); CIoU box loss; objectness BCE against the detached IoU of
the matched prediction; class BCE; per-level objectness balance [4.0, 1.0, 0.4]; gains box 0.05,
obj 1.0 x (input area / 640^2), cls 0.5 x nc / 80 (for 3 levels). EMA of the weights as the
official trainer; optional scale-preserving mosaic. Output folder: last.pt, best.pt (best mAP@0.5,
EMA weights), model.onnx, history.json.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from perception_edge.core.errors import ConfigError
from perception_edge.training.loop import TrainConfig, Trainer, read_checkpoint
from perception_edge.training.qat import QAT_OPSET

BALANCE = (4.0, 1.0, 0.4)
ANCHOR_T = 4.0
OFFSET_G = 0.5


@dataclass
class DetConfig(TrainConfig):
    epochs: int = 30
    batch: int = 16
    img_size: tuple[int, int] = (384, 224)  # (W, H), multiples of 32
    lr: float = 0.01
    weight_decay: float = 5e-4
    out: str = "runs/det"
    variant: str = "n"
    width_multiple: float = 0.0  # 0: the variant's
    depth_multiple: float = 0.0
    optimizer: str = "sgd"
    mosaic: float = 0.0
    fp16_weights: bool = False  # store the exported weights as float16 (half the file, float32 compute)


# ------------------------------------------------------------------------------------------ loss

def bbox_ciou(box1, box2, eps: float = 1e-7):
    """CIoU of (N, 4) xywh boxes, elementwise (utils/metrics.py bbox_iou(..., CIoU=True))."""
    import torch

    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * \
            (torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return (iou - (rho2 / c2 + v * alpha)).squeeze(-1)


class YoloLoss:
    """The official YOLOv5 loss for a perception_edge YOLOv5 in training mode."""

    def __init__(self, model, input_hw: tuple[int, int], box: float = 0.05, obj: float = 1.0, cls: float = 0.5,
                 anchor_t: float = ANCHOR_T, balance: Sequence[float] = BALANCE):
        det = model.model[-1]
        self.det = det
        self.na, self.nc, self.nl = det.na, det.nc, det.nl
        scale = 3 / self.nl
        self.box_gain = box * scale
        self.cls_gain = cls * self.nc / 80 * scale
        self.obj_gain = obj * (input_hw[0] * input_hw[1]) / (640 * 640) * scale
        self.anchor_t = anchor_t
        self.balance = list(balance) if self.nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][:self.nl]

    def build_targets(self, preds, targets):
        """targets (nt, 6): image, class, cx, cy, w, h normalized to the input -> per level
        (class, box xywh in grid units relative to the cell, indices (b, a, gj, gi), anchors)."""
        import torch

        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=targets.device)
        ai = torch.arange(na, device=targets.device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[..., None]), 2)  # (na, nt, 7)
        g = OFFSET_G
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=targets.device).float() * g
        for i in range(self.nl):
            anchors = self.det.anchors[i]
            shape = preds[i].shape
            gain[2:6] = torch.tensor(shape, device=targets.device)[[3, 2, 3, 2]].float()
            t = targets * gain
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                j = torch.max(r, 1 / r).max(2)[0] < self.anchor_t
                t = t[j]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                l, m = ((gxi % 1 < g) & (gxi > 1)).T
                j = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
            else:
                t = targets[0]
                offsets = 0
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gi, gj = gij.T
            gj = gj.clamp(0, shape[2] - 1)
            gi = gi.clamp(0, shape[3] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch

    def __call__(self, preds, targets):
        """preds: the 3 raw maps [B, na, H, W, 5 + nc]; returns (loss * batch, [box, obj, cls])."""
        import torch
        import torch.nn.functional as F

        dev = targets.device
        lcls = torch.zeros(1, device=dev)
        lbox = torch.zeros(1, device=dev)
        lobj = torch.zeros(1, device=dev)
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=dev)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).type(tobj.dtype)
                if self.nc > 1:
                    t = torch.zeros_like(pcls)
                    t[torch.arange(n, device=dev), tcls[i]] = 1.0
                    lcls = lcls + F.binary_cross_entropy_with_logits(pcls, t)
            lobj = lobj + F.binary_cross_entropy_with_logits(pi[..., 4], tobj) * self.balance[i]
        lbox = lbox * self.box_gain
        lobj = lobj * self.obj_gain
        lcls = lcls * self.cls_gain
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()


# ------------------------------------------------------------------------------------------ data

class _DetData:
    """Samples -> (image tensor [3,H,W] in [0,1], targets (n, 5): class, cx, cy, w, h normalized)."""

    def __init__(self, source, cfg: DetConfig, train: bool, epoch_seed: int = 0):
        self.source, self.cfg, self.train, self.epoch_seed = source, cfg, train, epoch_seed

    def __len__(self) -> int:
        return len(self.source)

    def _fitted(self, i: int, rng):
        from perception_edge.data.dataset import augment, fit_to_input

        s = self.source[i]
        image, boxes, cls = s.image, s.boxes, s.class_ids
        if self.train and self.cfg.augment:
            image, _, boxes, cls = augment(image, None, boxes, cls, rng)
        fitted, _, mboxes, _ = fit_to_input(image, None, boxes, self.cfg.input_hw, "letterbox")
        return fitted, mboxes.reshape(-1, 4), np.asarray(cls, np.int64).reshape(-1)

    def __getitem__(self, i: int):
        import torch

        rng = np.random.default_rng([self.cfg.seed, self.epoch_seed, i, 17])
        image, boxes, cls = self._fitted(i, rng)
        if self.train and self.cfg.mosaic > 0 and rng.random() < self.cfg.mosaic:
            image, boxes, cls = self._mosaic(image, boxes, cls, rng)
        h, w = image.shape[:2]
        if len(boxes):
            b = boxes.astype(np.float64)
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
            ok = (b[:, 2] - b[:, 0] > 1) & (b[:, 3] - b[:, 1] > 1)
            b, cls = b[ok], cls[ok]
            t = np.stack([cls.astype(np.float64), (b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                          (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1)
        else:
            t = np.zeros((0, 5))
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
        return x, torch.from_numpy(t.astype(np.float32))

    def _mosaic(self, image, boxes, cls, rng):
        """Scale-preserving mosaic: four fitted frames, each contributing the quadrant around a
        random centre (objects keep their size, so the scale distribution stays the runtime's)."""
        h, w = image.shape[:2]
        cx, cy = int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h)
        out = image.copy()
        all_b, all_c = [], []
        quads = [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]
        srcs = [(image, boxes, cls)] + [self._fitted(int(rng.integers(0, len(self.source))), rng) for _ in range(3)]
        for (x0, y0, x1, y1), (img, b, c) in zip(quads, srcs):
            out[y0:y1, x0:x1] = img[y0:y1, x0:x1]
            if not len(b):
                continue
            cb = b.astype(np.float64).copy()
            area0 = (cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1])
            cb[:, [0, 2]] = cb[:, [0, 2]].clip(x0, x1)
            cb[:, [1, 3]] = cb[:, [1, 3]].clip(y0, y1)
            area1 = (cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1])
            keep = (area1 > 0.45 * area0) & (cb[:, 2] - cb[:, 0] > 2) & (cb[:, 3] - cb[:, 1] > 2)
            all_b.append(cb[keep])
            all_c.append(c[keep])
        if all_b:
            return out, np.concatenate(all_b).astype(np.float32), np.concatenate(all_c)
        return out, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)


def collate(batch):
    import torch

    images = torch.stack([b[0] for b in batch])
    targets = [torch.cat((torch.full((len(t), 1), float(i)), t), 1) for i, (_, t) in enumerate(batch)]
    return images, torch.cat(targets, 0) if targets else torch.zeros((0, 6))


def store_weights_fp16(path: str, out: str | None = None, min_elements: int = 256) -> str:
    """Halve an ONNX file: float32 initializers with at least min_elements values are stored as
    float16 and cast back to float32 by a Cast node, so the graph still computes in float32 (ONNX
    Runtime and TensorRT fold the Casts of constants when they load the model; the only change is
    the weights' rounding to float16)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    g = model.graph
    keep, casts = [], []
    for init in g.initializer:
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type == TensorProto.FLOAT and n >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "__to_fp32"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, out or path)
    return out or path


# ----------------------------------------------------------------------------------------- model

def build_model(cfg: DetConfig, nc: int, names: Sequence[str]):
    from perception_edge.models.yolov5 import YOLOv5

    return YOLOv5(nc=nc, variant=cfg.variant, width_multiple=cfg.width_multiple or None,
                  depth_multiple=cfg.depth_multiple or None, names=list(names))


def load_checkpoint(path: str):
    """A train-det checkpoint -> (YOLOv5 in eval mode, checkpoint dict)."""
    ck = read_checkpoint(path, "train-det")
    c = DetConfig(**{k: v for k, v in ck["config"].items() if k in DetConfig.__dataclass_fields__})
    model = build_model(c, len(ck["class_names"]), ck["class_names"])
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


class ModelEMA:
    """Exponential moving average of the weights (utils/torch_utils.py ModelEMA)."""

    def __init__(self, model, decay: float = 0.9999, tau: float = 2000):
        self.ema = copy.deepcopy(model).eval()
        self.updates = 0
        self.decay = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model) -> None:
        import torch

        self.updates += 1
        d = self.decay(self.updates)
        with torch.no_grad():
            msd = model.state_dict()
            for k, v in self.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(msd[k].detach(), alpha=1 - d)


def evaluate(model, source, cfg: DetConfig, names: Sequence[str], conf: float = 0.001, iou: float = 0.6,
             batch: int = 8):
    """mAP@0.5 in source pixels through the runtime Preprocessor + decode_raw + to_source."""
    import torch

    from perception_edge.core.detections import decode_raw, to_source
    from perception_edge.core.metrics import DetectionMeter
    from perception_edge.core.preprocess import Preprocessor

    meter = DetectionMeter(len(names), 0.5, class_names=names)
    pre = Preprocessor(cfg.input_hw)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(source), batch):
            samples = [source[i] for i in range(start, min(len(source), start + batch))]
            blob, transforms = pre([(s.image, "rgb") for s in samples])
            pred = model(torch.from_numpy(blob[:len(samples)].copy())).numpy()
            rows = decode_raw(pred, conf, iou, 300)
            for s, r, t in zip(samples, rows, transforms):
                d = to_source(r, t, names)
                meter.add(d.boxes, d.scores, d.class_ids, s.boxes, s.class_ids)
    return meter.result()


def _param_groups(model, weight_decay: float):
    import torch.nn as nn

    decay, no_decay, bias = [], [], []
    for m in model.modules():
        if hasattr(m, "bias") and isinstance(m.bias, nn.Parameter):
            bias.append(m.bias)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            no_decay.append(m.weight)
        elif hasattr(m, "weight") and isinstance(m.weight, nn.Parameter):
            decay.append(m.weight)
    return [{"params": no_decay, "weight_decay": 0.0, "kind": "bn"},
            {"params": decay, "weight_decay": weight_decay, "kind": "weight"},
            {"params": bias, "weight_decay": 0.0, "kind": "bias"}]


class DetTrainer(Trainer):
    """The official YOLOv5 loss, SGD (Nesterov) or AdamW with YOLOv5's parameter groups and warm-up,
    cosine learning rate, gradient clipping, EMA of the weights (validated and saved). Best: mAP@0.5."""

    task = "train-det"
    best_key = "best_map"
    collate = staticmethod(collate)

    def check(self) -> None:
        cfg = self.cfg
        h, w = cfg.input_hw
        if h % 32 or w % 32:
            raise ConfigError(f"--img-size {w}x{h}: both sides must be multiples of 32 (the largest YOLOv5 stride)")
        if cfg.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"unknown optimizer {cfg.optimizer!r} (sgd or adamw)")

    def open_folder(self, path: str):
        from perception_edge.data.dataset import DatasetFolder

        folder = DatasetFolder(path, need_labels=True)
        if not folder.classes:
            raise ConfigError(f"{path}: no classes.txt with the box class names")
        return folder, folder.classes

    def synthetic_source(self, count: int, seed: int):
        from perception_edge.data.dataset import SampleSource

        return SampleSource(synthetic=count, seed=seed, size=self.cfg.synthetic_size)

    def synthetic_names(self) -> list[str]:
        from perception_edge.data.synthetic import CLASSES

        return list(CLASSES)

    def make_model(self, names: Sequence[str]):
        return build_model(self.cfg, len(names), names)

    def load_checkpoint(self, path: str):
        return load_checkpoint(path)

    def setup(self, model, total: int) -> None:
        import torch

        cfg = self.cfg
        self.loss_fn = YoloLoss(model, cfg.input_hw)
        groups = _param_groups(model, cfg.weight_decay)
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.937, nesterov=True)
        else:
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.937, 0.999))
        self.ema = ModelEMA(model)
        self.warmup = max(1, min(300, total // 10))

    def dataset(self, source, epoch: int):
        return _DetData(source, self.cfg, True, epoch)

    def set_lr(self, step: int, progress: float) -> None:
        cfg = self.cfg
        lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        for g in self.opt.param_groups:
            if step < self.warmup:  # official warm-up: bias lr from 0.1 down, others from 0 up
                f = step / self.warmup
                g["lr"] = (0.1 * (1 - f) + lr * f) if (g["kind"] == "bias" and cfg.optimizer == "sgd") else lr * f
                if cfg.optimizer == "sgd":
                    g["momentum"] = 0.8 + (0.937 - 0.8) * f
            else:
                g["lr"] = lr

    def compute_loss(self, model, batch):
        import torch

        x, targets = batch
        preds = model(x.contiguous(memory_format=torch.channels_last))
        loss, items = self.loss_fn(preds, targets)
        return loss, loss.item() / self.cfg.batch, items.numpy()

    def optimizer_step(self, model) -> None:
        import torch

        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        self.opt.step()
        self.ema.update(model)

    def progress_info(self, losses, parts):
        return {"loss": float(np.mean(losses[-20:])), "box": float(np.mean([p[0] for p in parts[-20:]])),
                "obj": float(np.mean([p[1] for p in parts[-20:]])), "cls": float(np.mean([p[2] for p in parts[-20:]]))}

    def epoch_extras(self, losses, parts):
        return {"loss_parts": (np.mean(parts, 0).round(5).tolist() if parts else None)}

    def eval_model(self, model):
        return self.ema.ema

    def validate(self, model, source, names):
        res = evaluate(model, source, self.cfg, names)
        ap50 = {names[i]: (None if np.isnan(v) else round(float(v), 4)) for i, v in enumerate(res.ap)}
        return {"map50": round(res.map, 4), "ap50": ap50}, res.map

    def header(self, n_params, names, train_src, val_src, steps_per_epoch) -> str:
        cfg = self.cfg
        h, w = cfg.input_hw
        return (f"train-det: YOLOv5{cfg.variant} ({n_params / 1e6:.2f} M parameters, {len(names)} classes), "
                f"{len(train_src)} training / {len(val_src) if val_src else 0} validation samples, input {w}x{h}, "
                f"{cfg.epochs} epochs x {steps_per_epoch} steps")

    def summary(self, record) -> str:
        return f"  val mAP@0.5 {record['map50']:.4f} {record['ap50']}" if "map50" in record else ""

    def export(self, best, out: Path, names: Sequence[str]) -> str:
        from perception_edge.models.export import export_onnx

        cfg = self.cfg
        # dynamic batch: the camera fusion node sends all cameras of a step through one call
        onnx_path = export_onnx(best, str(out / "model.onnx"), img_size=cfg.input_hw, batch=1, dynamic_batch=True,
                                opset=QAT_OPSET if cfg.qat else 12)
        if cfg.fp16_weights and not cfg.qat:  # QAT weights are stored as int8
            store_weights_fp16(onnx_path)
        return onnx_path


def train(cfg: DetConfig) -> dict[str, object]:
    """Train; returns a dict with the history, best_map, checkpoint and ONNX paths, timings.
    cfg.threads sets torch's CPU threads for the run (restored afterwards)."""
    return DetTrainer(cfg).run()


__all__ = ["DetConfig", "DetTrainer", "YoloLoss", "bbox_ciou", "collate", "store_weights_fp16", "build_model",
           "load_checkpoint", "ModelEMA", "evaluate", "train"]
