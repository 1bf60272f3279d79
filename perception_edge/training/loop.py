"""The one training loop: data sources, the epoch loop with its progress bar (tqdm), validation,
checkpoints (last.pt, best.pt), history.json and the ONNX export at the end. Detection and
segmentation (perception_edge.training.detection / .segmentation) are its two users: each overrides
the hooks of Trainer (model, loss, optimizer, learning-rate schedule, validation, export), as the
tasks of ultralytics' engine/trainer.py do.

Everything after `torch.manual_seed(cfg.seed)` runs in a fixed order, so a seed gives the same
weights run after run (with the same torch build and thread count).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perception_edge.core.errors import ConfigError, ModelError


class Progress:
    """Per-epoch progress: a tqdm bar with the running figures, or (without tqdm) a line every tenth."""

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


def warmup_cosine_lr(step: int, progress: float, base: float, warmup: int = 50) -> float:
    """Linear warm-up over the first steps, then cosine decay to 2% over the training progress (0..1)."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def training_progress(step: int, total: int, t_start: float, time_limit_min: float) -> float:
    """Fraction of the training done (0..1+): of the steps, or of the time limit when that is further."""
    p = step / max(1, total)
    if time_limit_min > 0:
        p = max(p, (time.time() - t_start) / (60.0 * time_limit_min))
    return p


@dataclass
class TrainConfig:
    """What the loop reads; each task's config extends it (and sets its own defaults)."""
    data: str = ""  # data set folder; else `synthetic` scenes rendered on the fly
    synthetic: int = 0
    fresh_synthetic: bool = False  # render new synthetic scenes every epoch
    synthetic_size: tuple[int, int] = (640, 360)  # (W, H) of rendered scenes
    val: int = 0  # validation samples (0: 10% of the data, at least 16)
    epochs: int = 10
    batch: int = 8
    img_size: tuple[int, int] = (320, 192)  # (W, H)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    out: str = "runs/train"
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)
    workers: int = 0  # data loader processes
    augment: bool = True
    export: bool = True
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit)
    time_limit: float = 0.0  # minutes of training (0: no limit); the LR schedule follows the elapsed fraction
    init: str = ""  # start from this checkpoint (with qat: a checkpoint or an ONNX model of the architecture)
    qat: bool = False  # quantization-aware training from `init` (perception_edge.training.qat)
    qat_float_layers: int = 0  # the most sensitive layers left in float
    qat_calib_batches: int = 8  # training batches calibrating the activation ranges
    quiet: bool = False
    class_names: list[str] = field(default_factory=list)

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.img_size[1]), int(self.img_size[0])


def read_checkpoint(path: str, task: str) -> dict[str, Any]:
    """The dict a Trainer saved (config, state_dict, epoch, metrics, class_names); ModelError otherwise."""
    import torch

    if not Path(path).is_file():
        raise ModelError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "state_dict" not in ck or "config" not in ck:
        raise ModelError(f"{path} is not a {task} checkpoint")
    return ck


class Trainer:
    """The loop over a TrainConfig; a task subclasses it and fills in the hooks below."""

    task = "train"  # command name in messages
    best_key = "best_score"  # the result key of the best validation score
    collate = None  # DataLoader collate_fn (None: torch's default)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.opt = None  # set by setup()

    # -- hooks ----------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse invalid settings (ConfigError) before anything is built."""

    def open_folder(self, path: str):
        """(DatasetFolder, class names) of a data set folder."""
        raise NotImplementedError

    def synthetic_source(self, count: int, seed: int):
        """A SampleSource of `count` synthetic scenes."""
        raise NotImplementedError

    def synthetic_names(self) -> list[str]:
        raise NotImplementedError

    def class_names(self, found: Sequence[str]) -> list[str]:
        return list(self.cfg.class_names) or list(found)

    def make_model(self, names: Sequence[str]):
        raise NotImplementedError

    def load_checkpoint(self, path: str):
        """A checkpoint of this task -> (model in eval mode, checkpoint dict)."""
        raise NotImplementedError

    def setup(self, model, total: int) -> None:
        """Loss, optimizer (self.opt) and whatever else the steps need, for `total` optimizer steps."""
        raise NotImplementedError

    def dataset(self, source, epoch: int):
        """The torch Dataset of one epoch's training samples."""
        raise NotImplementedError

    def set_lr(self, step: int, progress: float) -> None:
        raise NotImplementedError

    def compute_loss(self, model, batch) -> tuple[Any, float, np.ndarray | None]:
        """Forward pass: (loss to back-propagate, its value per sample, loss parts to log or None)."""
        raise NotImplementedError

    def optimizer_step(self, model) -> None:
        self.opt.step()

    def progress_info(self, losses: list[float], parts: list[np.ndarray]) -> dict[str, Any]:
        return {"loss": float(np.mean(losses[-20:]))}

    def epoch_extras(self, losses: list[float], parts: list[np.ndarray]) -> dict[str, Any]:
        """Entries of an epoch's record after its loss."""
        return {}

    def eval_model(self, model):
        """The weights that are validated and saved (e.g. an EMA of the trained ones)."""
        return model

    def validate(self, model, source, names: Sequence[str]) -> tuple[dict[str, Any], float]:
        """(record entries, score: higher is better, nan when there is nothing to score)."""
        raise NotImplementedError

    def header(self, n_params: int, names: Sequence[str], train_src, val_src, steps_per_epoch: int) -> str:
        raise NotImplementedError

    def summary(self, record: dict[str, Any]) -> str:
        """The validation part of an epoch's line ('' when nothing was validated)."""
        return ""

    def export(self, best, out: Path, names: Sequence[str]) -> str:
        """Write the ONNX model of the best weights; its path."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------------
    def sources(self):
        from perception_edge.data.dataset import SampleSource, split_folder

        cfg = self.cfg
        if cfg.data:
            folder, names = self.open_folder(cfg.data)
            train_idx, val_idx = split_folder(folder, 0.1)
            if cfg.val:
                val_idx = val_idx[:cfg.val]
            return SampleSource(folder, train_idx), (SampleSource(folder, val_idx) if val_idx else None), names
        if cfg.synthetic <= 0:
            raise ConfigError("give --data DIR or --synthetic N")
        n_val = cfg.val or max(16, cfg.synthetic // 10)
        return (self.synthetic_source(cfg.synthetic, cfg.seed), self.synthetic_source(n_val, cfg.seed + 1_000_003),
                self.synthetic_names())

    def run(self) -> dict[str, object]:
        """Train; returns a dict with the history, best score, checkpoint and ONNX paths, timings.
        cfg.threads sets torch's CPU threads for the run (restored afterwards)."""
        import torch

        previous = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(previous)

    def _fit(self) -> dict[str, object]:
        import torch
        from torch.utils.data import DataLoader

        cfg = self.cfg
        self.check()
        torch.manual_seed(cfg.seed)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        train_src, val_src, names = self.sources()
        names = self.class_names(names)
        cfg.class_names = names
        model = self.make_model(names)
        self.best_model = None
        if cfg.qat:  # fake-quantized from the FP32 weights of cfg.init
            from perception_edge.training.qat import prepare

            model = prepare(self, model, train_src, log=(lambda s: None) if cfg.quiet else print)
        elif cfg.init:
            init_model, _ = self.load_checkpoint(cfg.init)
            model.load_state_dict(init_model.state_dict(), strict=False)
        n_params = sum(p.numel() for p in model.parameters())
        model = model.to(memory_format=torch.channels_last)  # oneDNN's fast layout on CPU
        steps_per_epoch = len(train_src) // cfg.batch
        if steps_per_epoch < 1:
            raise ConfigError(f"{len(train_src)} training samples are fewer than one batch of {cfg.batch}")
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        self.setup(model, total)
        history: list[dict[str, object]] = []
        best, step = -1.0, 0
        t_start = time.time()
        cpu_start = time.process_time()
        if not cfg.quiet:
            print(self.header(n_params, names, train_src, val_src, steps_per_epoch), flush=True)
        for epoch in range(cfg.epochs):
            if step >= total or training_progress(step, total, t_start, cfg.time_limit) >= 1.0:
                break
            src = train_src
            if cfg.fresh_synthetic and not cfg.data and epoch > 0:
                src = self.synthetic_source(cfg.synthetic, cfg.seed + 7919 * epoch)
            loader = DataLoader(self.dataset(src, epoch), batch_size=cfg.batch, shuffle=True, drop_last=True,
                                num_workers=cfg.workers, collate_fn=self.collate,
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            model.train()
            bar = Progress(min(steps_per_epoch, total - step), f"epoch {epoch + 1}/{cfg.epochs}", cfg.quiet)
            losses: list[float] = []
            parts: list[np.ndarray] = []
            t0 = time.time()
            for batch in loader:
                progress = training_progress(step, total, t_start, cfg.time_limit)
                if step >= total or progress >= 1.0:
                    break
                self.set_lr(step, progress)
                loss, value, part = self.compute_loss(model, batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_step(model)
                step += 1
                losses.append(value)
                if part is not None:
                    parts.append(part)
                bar.update(**self.progress_info(losses, parts))
            bar.close()
            record: dict[str, object] = {"epoch": epoch + 1, "steps": step,
                                         "loss": float(np.mean(losses)) if losses else None}
            record.update(self.epoch_extras(losses, parts))
            record["train_s"] = round(time.time() - t0, 1)
            kept = self.eval_model(model)
            score = float("nan")
            if val_src is not None and len(val_src):
                metrics, score = self.validate(kept, val_src, names)
                record.update(metrics)
            if np.isnan(score):  # nothing validated (or nothing to score): the lowest loss is best
                score = -float(record["loss"] or 0)
            history.append(record)
            ck = {"config": asdict(cfg), "state_dict": kept.state_dict(), "epoch": epoch + 1, "metrics": record,
                  "class_names": names}
            torch.save(ck, out / "last.pt")
            if score > best:
                best = score
                torch.save(ck, out / "best.pt")
                if cfg.qat:  # a fake-quantized model is exported as it is in memory
                    self.best_model = copy.deepcopy(kept)
            if not cfg.quiet:
                print(f"epoch {epoch + 1}: loss {record['loss']:.4f}{self.summary(record)}  "
                      f"({time.time() - t_start:.0f} s)", flush=True)
        elapsed = time.time() - t_start
        cpu = time.process_time() - cpu_start  # all threads of this process: independent of other load
        (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history,
                                                      "train_seconds": round(elapsed, 1),
                                                      "cpu_seconds": round(cpu, 1)}, indent=1))
        onnx_path = ""
        if cfg.export:
            if self.best_model is not None:
                best_model = self.best_model.eval()
            else:
                best_model, _ = self.load_checkpoint(str(out / "best.pt"))
            onnx_path = self.export(best_model, out, names)
            if cfg.qat:
                from perception_edge.training.qat import finish_export

                finish_export(onnx_path, getattr(self, "qat_report", None), cfg.init)
            if not cfg.quiet:
                print(f"exported {onnx_path}")
        result = {"history": history, self.best_key: best, "best": str(out / "best.pt"), "onnx": onnx_path,
                "train_seconds": elapsed, "cpu_seconds": cpu, "parameters": n_params}
        if cfg.qat:
            result["qat"] = getattr(self, "qat_report", None)
        return result


__all__ = ["TrainConfig", "Trainer", "Progress", "read_checkpoint", "warmup_cosine_lr", "training_progress"]
