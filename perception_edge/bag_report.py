"""Evaluation of a results bag (the library of `perception-edge evaluate --bag RESULTS`).

A results bag holds what the container published (perception_edge.data.bags layout: per camera
namespace ``<ns>/detections``, ``<ns>/lane_mask``, ``<ns>/label_info`` and the inputs' headers on
``<ns>/replay/input``), written by the live or the offline replay, or by a CARLA run (which also
carries the frames and the ground truth). The report pairs predictions with ground truth by
(namespace, header stamp) and gives:

- detection: COCO mAP@0.5 and mAP@0.5:0.95 (core.metrics.CocoDetectionMeter: 101-point AP, IoU
  0.50:0.05:0.95, area "all", 100 detections per image and class), per-class AP, and
  precision / recall at IoU 0.5 at the operating threshold (the label_info threshold: the
  detections as published). Published detections are already cut at that threshold, so the mAP is
  that of the deployed operating point, below the `evaluate MODEL` figure (scored at conf 0.001);
- lane: IoU per class over all pixels of all paired frames, and per frame over time;
- timing per camera: end-to-end latency p50/p90/p99 (log time of the frame's last output minus the
  log time of its replay/input -- or, in a bag without replay/input such as a CARLA run, of the
  camera frame itself; n/a for offline bags, whose outputs are logged at the input stamp), dropped
  frames (inputs without every output) and output rates (Hz, from log times).

Ground truth comes from --ground-truth, else the results bag itself, else the source bag named in
its custom_data. Written to the output directory (default: the directory holding the results bag):
report.json, report.md, PNG plots (matplotlib, Agg backend) and an annotated MP4 of the replay
(boxes and lane overlay, cameras tiled; frames from whichever bag has them). A baseline results bag
(`baseline=`) is scored against the same ground truth and the report shows both and the deltas.

Memory: detections of the whole bag (small) and the lane masks PNG-encoded (a few KB per frame).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.drawing import draw
from perception_edge.core.errors import ConfigError
from perception_edge.core.metrics import CocoDetectionMeter, SegmentationMeter, percentiles
from perception_edge.data import bags

OUTPUTS = ("detections", "lane_mask")
SEG_NAMES = ("background", "lane_marking", "drivable_area")  # class ids of the lane masks (data.synthetic)
TILE_WIDTH = 640  # video: each camera scaled to at most this width


def _png(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ConfigError("PNG encoding of a lane mask failed")
    return buf.tobytes()


def _unpng(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _output_ns(topic: str, name: str) -> str | None:
    """The camera namespace of a result topic <ns>/<name> (ground-truth topics are not results)."""
    if topic.endswith("/" + name) and not topic.endswith("/ground_truth/" + name):
        return topic[: -len(name) - 1]
    return None


@functools.lru_cache(maxsize=8)
def _info(path: str) -> bags.BagInfo:
    """bags.info, once per bag and evaluation (rosbags parses metadata.yaml's QoS profiles slowly:
    ~0.4 s per opening of a 13-topic bag)."""
    return bags.info(path)


def _has_truth(info: bags.BagInfo) -> bool:
    return any(t.endswith("/" + bags.GT_DETECTIONS) or t.endswith("/" + bags.GT_LANE_MASK) for t in info.topics)


def truth_bag(results: bags.BagInfo, ground_truth: str | None) -> str | None:
    """Where the ground truth is: --ground-truth, else the results bag, else its source bag."""
    if ground_truth:
        gt = _info(str(ground_truth))
        if not _has_truth(gt):
            raise ConfigError(f"{ground_truth}: no <ns>/{bags.GT_DETECTIONS} or <ns>/{bags.GT_LANE_MASK} topics; "
                              f"topics: {gt.listing()}")
        return str(ground_truth)
    if _has_truth(results):
        return results.path
    source = results.custom_data.get("perception_edge.source_bag")
    if source and Path(source).exists():
        try:
            if _has_truth(_info(source)):
                return source
        except ConfigError:
            return None
    return None


def _rate(logs: Sequence[int]) -> float | None:
    if len(logs) < 2:
        return None
    span = (max(logs) - min(logs)) / 1e9
    return round((len(logs) - 1) / span, 2) if span > 0 else None


def _clean(x: Any) -> Any:
    """JSON-safe: nan/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass
class Collected:
    """What one results bag holds, keyed by (namespace, stamp)."""
    info: bags.BagInfo
    class_names: list[str]
    threshold: float | None
    detections: dict[tuple[str, int], Detections] = field(default_factory=dict)
    masks: dict[tuple[str, int], bytes] = field(default_factory=dict)  # PNG
    output_logs: dict[str, dict[tuple[str, int], int]] = field(default_factory=lambda: {k: {} for k in OUTPUTS})
    inputs: dict[tuple[str, int], int] = field(default_factory=dict)  # replay/input log times
    namespaces: list[str] = field(default_factory=list)


def collect(results: str, progress: bool = False) -> Collected:
    """One pass over a results bag: detections, lane masks (PNG), log times, the label_info."""
    info = _info(str(results))
    want: dict[str, tuple[str, str]] = {}
    for t, ty in info.topics.items():
        for kind, msgtype in (("detections", bags.DETECTIONS), ("lane_mask", bags.IMAGE),
                              (bags.INPUT_HEADER, bags.HEADER), ("label_info", bags.LABEL_INFO)):
            ns = _output_ns(t, kind)
            if ns is not None and ty == msgtype:
                want[t] = (ns, kind)
    with_inputs = {ns for ns, k in want.values() if k == bags.INPUT_HEADER}
    for t in info.image_topics():  # no replay/input (a CARLA run): the camera frames are the inputs
        ns = bags.namespace_of(t)
        if ns not in with_inputs and any(k in OUTPUTS and n == ns for n, k in want.values()):
            want[t] = (ns, "frame")
    if not any(k in OUTPUTS for _, k in want.values()):
        raise ConfigError(f"{results}: no <ns>/detections or <ns>/lane_mask topics (not a results bag); "
                          f"topics: {info.listing()}")
    seen: list[str] = []  # class names in the order the detections name them
    labels: list[str] | None = None
    out = Collected(info, seen, None)
    out.namespaces = sorted({ns for ns, k in want.values() if k != "label_info"})
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(info.counts[t] for t in want), desc="results bag", unit="msg")
    for t, _, log_ns, msg in bags.messages(results, list(want)):
        ns, kind = want[t]
        if bar is not None:
            bar.update(1)
        if kind == "label_info":
            if labels is None:
                labels = [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)]
                out.threshold = float(msg.threshold)
            continue
        stamp = msg.stamp if kind == bags.INPUT_HEADER else msg.header.stamp  # a Header, or a message with one
        key = (ns, int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))
        if kind in (bags.INPUT_HEADER, "frame"):
            out.inputs[key] = log_ns
        elif kind == "detections":
            out.detections[key] = bags.detections_from_msg(msg, seen)
            out.output_logs[kind][key] = log_ns
        else:
            out.masks[key] = _png(bags.mono8_from_msg(msg))
            out.output_logs[kind][key] = log_ns
    if bar is not None:
        bar.close()
    if labels is not None:  # class ids as the model numbers them (label_info), names it lacks after
        names = labels + [n for n in seen if n not in labels]
        remap = np.array([names.index(n) for n in seen] or [0], np.int64)
        out.detections = {k: Detections(d.boxes, d.scores, remap[d.class_ids] if len(d) else d.class_ids, names)
                          for k, d in out.detections.items()}
        out.class_names = names
    return out


def score(c: Collected, truth: dict[tuple[str, int], bags.Truth] | None) -> dict[str, Any]:
    """The report's figures for one results bag (plot data under the "_plot" key)."""
    report: dict[str, Any] = {"results": c.info.path, "mode": c.info.custom_data.get("perception_edge.mode", ""),
                              "models": {k.split(".", 1)[1]: v for k, v in c.info.custom_data.items()
                                         if k.endswith("_model")},
                              "threshold": c.threshold}
    plot: dict[str, Any] = {}
    # -- detection
    if truth is not None and c.detections:
        names = c.class_names
        paired = sorted(k for k in c.detections if k in truth and truth[k].detections is not None)
        meter = CocoDetectionMeter(len(names), class_names=names)
        for k in paired:  # the detections as published: already cut at the operating threshold
            d, g = c.detections[k], truth[k].detections
            meter.add(d.boxes, d.scores, d.class_ids, g.boxes, g.class_ids)
        res = meter.result() if paired else None
        if res is not None:
            prec, rec = res.precision(), res.recall()
            p_all, r_all = res.overall_precision_recall()
            report["detection"] = {
                "frames": len(paired), "frames_without_truth": len(c.detections) - len(paired),
                "map50": res.map50, "map50_95": res.map50_95, "precision": p_all, "recall": r_all,
                "per_class": {names[i]: {"gt": int(res.n_gt[i]), "predictions": int(res.n_pred[i]),
                                         "ap50": res.ap50[i], "ap50_95": res.ap50_95[i],
                                         "precision": prec[i], "recall": rec[i]}
                              for i in range(len(names)) if res.n_gt[i] > 0 or res.n_pred[i] > 0}}
            plot["pr"] = {names[i]: (r, p) for i, (r, p, _) in res.curves.items()}
    # -- lane
    if truth is not None and c.masks:
        paired = sorted(k for k in c.masks if k in truth and truth[k].lane_mask is not None)
        meter = SegmentationMeter(256)  # mono8 class ids; IoU reported for the classes the ground truth labels
        over_time: dict[str, list[tuple[int, float]]] = {}
        for k in paired:
            g = _unpng(truth[k].lane_mask)
            p = _unpng(c.masks[k])
            if p.shape != g.shape:
                raise ConfigError(f"{c.info.path}: {k[0]}/lane_mask at stamp {k[1]} is {p.shape[1]}x{p.shape[0]}, "
                                  f"its ground truth {g.shape[1]}x{g.shape[0]}")
            meter.add(p, g)
            inter = np.count_nonzero((p == 1) & (g == 1))
            union = np.count_nonzero((p == 1) | (g == 1))
            over_time.setdefault(k[0], []).append((k[1], inter / union if union else 1.0))
        if paired:
            iou = meter.iou()
            labelled = [i for i in range(1, 256) if meter.confusion[i].sum() > 0] or [1]
            report["lane"] = {"frames": len(paired), "frames_without_truth": len(c.masks) - len(paired),
                              "iou": {(SEG_NAMES[i] if i < len(SEG_NAMES) else f"class_{i}"): iou[i]
                                      for i in labelled}}
            plot["lane_iou"] = over_time
    # -- timing per camera
    offline = report["mode"] == "offline"
    cams: dict[str, Any] = {}
    latency_plot: dict[str, list[tuple[int, float]]] = {}
    present = {kind: {ns for ns, _ in c.output_logs[kind]} for kind in OUTPUTS}
    for ns in c.namespaces:
        expected = [kind for kind in OUTPUTS if ns in present[kind]]
        inputs = {k: v for k, v in c.inputs.items() if k[0] == ns}
        entry: dict[str, Any] = {"inputs": len(inputs) if inputs else None}
        for kind in OUTPUTS:
            logs = [v for k, v in c.output_logs[kind].items() if k[0] == ns]
            entry[kind] = len(logs)
            entry[f"{kind}_hz"] = _rate(logs)
        entry["input_hz"] = _rate(list(inputs.values()))
        lat = []
        dropped = 0
        for k, t_in in sorted(inputs.items()):
            outs = [c.output_logs[kind].get(k) for kind in expected]
            if not expected or any(o is None for o in outs):
                dropped += 1
                continue
            lat.append((k[1], (max(outs) - t_in) / 1e6))
        entry["dropped"] = dropped if inputs else None
        entry["latency_ms"] = None if offline or not lat or all(v == 0 for _, v in lat) else \
            percentiles([v for _, v in lat], count=True)
        if entry["latency_ms"] is not None:
            latency_plot[ns] = lat
        cams[ns] = entry
    report["cameras"] = cams
    if latency_plot:
        plot["latency"] = latency_plot
    report["_plot"] = plot
    return report


def _delta(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = {k: _delta(a[k], b[k]) for k in a if k in b}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return None
        return round(a - b, 6) if isinstance(a, float) or isinstance(b, float) else a - b
    return None


def deltas(report: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """this - baseline for every figure both reports have."""
    keys = ("detection", "lane", "cameras")
    return _delta({k: report[k] for k in keys if k in report}, {k: baseline[k] for k in keys if k in baseline})


# -- plots and video ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, axes: Sequence[Any] = ()) -> str:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def plots(report: dict[str, Any], out: Path, baseline: dict[str, Any] | None = None) -> list[str]:
    """PNG plots of the report's plot data; returns the file names written."""
    data = report.get("_plot", {})
    base = (baseline or {}).get("_plot", {})
    if not data:
        return []
    plt = _pyplot()
    written = []
    if data.get("pr"):
        names = sorted(data["pr"])
        cols = min(len(names), 4)
        rows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
        for ax, name in zip(axes.ravel(), names):
            r, p = data["pr"][name]
            ap = report["detection"]["per_class"][name]["ap50"]
            ax.plot(r, p, label=f"this (AP@.5 {ap:.3f})")
            if name in base.get("pr", {}):
                br, bp = base["pr"][name]
                bap = baseline["detection"]["per_class"][name]["ap50"]
                ax.plot(br, bp, "--", label=f"baseline ({bap:.3f})")
            pc = report["detection"]["per_class"][name]
            ax.plot([pc["recall"]], [pc["precision"]], "o", color="k", label="operating point")
            ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        for ax in axes.ravel()[len(names):]:
            ax.axis("off")
        fig.suptitle(f"precision-recall at IoU 0.5 (mAP@0.5 {report['detection']['map50']:.3f})")
        written.append(_save(plt, fig, out / "pr_curves.png"))
    if data.get("latency"):
        fig, (hist, time_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
        for ns, series in sorted(data["latency"].items()):
            values = [v for _, v in series]
            hist.hist(values, bins=30, alpha=0.5, label=ns)
            t0 = series[0][0]
            time_ax.plot([(s - t0) / 1e9 for s, _ in series], values, ".-", ms=3, label=ns)
        hist.set(title="end-to-end latency", xlabel="ms", ylabel="frames")
        time_ax.set(title="latency over time", xlabel="stamp (s from first frame)", ylabel="ms")
        written.append(_save(plt, fig, out / "latency.png", (hist, time_ax)))
    if data.get("lane_iou"):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        t0 = min(s for series in data["lane_iou"].values() for s, _ in series)
        for ns, series in sorted(data["lane_iou"].items()):
            ax.plot([(s - t0) / 1e9 for s, _ in series], [v for _, v in series], ".-", ms=3, label=ns)
        ax.set(title=f"lane-marking IoU per frame (all frames: {report['lane']['iou'].get('lane_marking', 0):.3f})",
               xlabel="stamp (s from first frame)", ylabel="IoU", ylim=(0, 1.02))
        written.append(_save(plt, fig, out / "lane_iou.png", (ax,)))
    return written


def video_source(c: Collected, truth_path: str | None) -> str | None:
    """The bag that has the frames: the results bag, the ground-truth bag, or the source bag."""
    candidates = [c.info.path, truth_path, c.info.custom_data.get("perception_edge.source_bag")]
    for path in candidates:
        if not path or not Path(path).exists():
            continue
        try:
            info = c.info if path == c.info.path else _info(str(path))
        except ConfigError:
            continue
        if info.image_topics():
            return path
    return None


def _tile(rgb: np.ndarray, caption: str, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w != width:
        rgb = cv2.resize(rgb, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
    cv2.putText(rgb, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(rgb, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


def write_video(c: Collected, frames_bag: str, path: Path, progress: bool = False) -> int:
    """Annotated MP4 (mp4v) of the replay: per time step the cameras side by side with their
    detections and lane masks drawn; returns the frames written."""
    info = c.info if frames_bag == c.info.path else _info(str(frames_bag))
    frames = info.image_topics()
    topics = [t for t in frames if bags.namespace_of(t) in set(c.namespaces)] or frames
    namespaces = [bags.namespace_of(t) for t in topics]
    steps_total = max(info.counts.get(t, 0) for t in topics)
    fps = 10.0
    if steps_total > 1 and info.end_ns > info.start_ns:
        fps = min(60.0, max(1.0, (steps_total - 1) / ((info.end_ns - info.start_ns) / 1e9)))
    writer = None
    size = None
    written = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps_total, desc="video", unit="step")
    try:
        for step in bags.camera_steps(frames_bag, topics):
            tiles: dict[str, np.ndarray] = {}
            width = None
            for t, msgtype, _, msg in step:
                ns, stamp = bags.namespace_of(t), bags.stamp_ns(msg)
                pixels, order = bags.pixels_from_msg(msg, msgtype)
                rgb = np.ascontiguousarray(pixels if order == "rgb" else pixels[..., ::-1])
                mask = c.masks.get((ns, stamp))
                shown = draw(rgb, c.detections.get((ns, stamp)), _unpng(mask) if mask is not None else None)
                width = width or min(TILE_WIDTH, shown.shape[1])
                tiles[ns] = _tile(shown, f"{ns}  {stamp / 1e9:.2f} s", width)
            if size is None:
                first = next(iter(tiles.values()))
                size = (first.shape[1], first.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (size[0] * len(namespaces), size[1]))
                if not writer.isOpened():
                    raise ConfigError(f"cannot write {path}: OpenCV has no mp4v encoder here")
            row = [cv2.resize(tiles[ns], size) if ns in tiles else np.zeros((size[1], size[0], 3), np.uint8)
                   for ns in namespaces]
            writer.write(cv2.cvtColor(np.concatenate(row, axis=1), cv2.COLOR_RGB2BGR))
            written += 1
            if bar is not None:
                bar.update(1)
    finally:
        if writer is not None:
            writer.release()
        if bar is not None:
            bar.close()
    return written


# -- markdown ------------------------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _signed(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    return f"{v:+.{digits}f}" if isinstance(v, float) else f"{v:+d}"


def markdown(report: dict[str, Any]) -> str:
    base = report.get("baseline")
    d = report.get("deltas", {})
    lines = [f"# Replay report: {report['results']}", ""]
    lines.append(f"- ground truth: {report.get('ground_truth') or 'none found (accuracy not scored)'}")
    if report.get("mode"):
        lines.append(f"- replay: {report['mode']}")
    for k, v in report.get("models", {}).items():
        lines.append(f"- {k.replace('_', ' ')}: {v}")
    if report.get("threshold") is not None:
        lines.append(f"- operating threshold (label_info): {report['threshold']:.3f}")
    if base:
        lines.append(f"- baseline: {base['results']}")
    lines.append("")
    head = "| metric | value |" + (" baseline | delta |" if base else "")
    rule = "| --- | --- |" + (" --- | --- |" if base else "")
    rows = []

    def row(label: str, path: Sequence[str], digits: int = 3):
        def get(r):
            for p in path:
                r = (r or {}).get(p)
            return r
        line = f"| {label} | {_fmt(get(report), digits)} |"
        if base:
            line += f" {_fmt(get(base), digits)} | {_signed(get(d), digits)} |"
        rows.append(line)

    if "detection" in report:
        row("detection mAP@0.5", ("detection", "map50"))
        row("detection mAP@0.5:0.95", ("detection", "map50_95"))
        row("precision @ threshold", ("detection", "precision"))
        row("recall @ threshold", ("detection", "recall"))
    if "lane" in report:
        for name in report["lane"]["iou"]:
            row(f"lane IoU {name}", ("lane", "iou", name))
    if rows:
        lines += ["## Accuracy", "", head, rule] + rows + [""]
    if "detection" in report:
        det = report["detection"]
        lines += [f"Detection: {det['frames']} frames paired with ground truth"
                  + (f" ({det['frames_without_truth']} without)" if det["frames_without_truth"] else "")
                  + ", COCO AP (101 points, IoU 0.50:0.05:0.95); precision/recall at IoU 0.5 of the published "
                    "detections.", "",
                  "| class | gt | predictions | AP@0.5 | AP@0.5:0.95 | precision | recall |"
                  + (" AP@0.5 baseline | delta |" if base else ""),
                  "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if base else "")]
        for name, pc in det["per_class"].items():
            line = (f"| {name} | {pc['gt']} | {pc['predictions']} | {_fmt(pc['ap50'])} | {_fmt(pc['ap50_95'])} | "
                    f"{_fmt(pc['precision'])} | {_fmt(pc['recall'])} |")
            if base:
                bpc = base.get("detection", {}).get("per_class", {}).get(name, {})
                dpc = d.get("detection", {}).get("per_class", {}).get(name, {})
                line += f" {_fmt(bpc.get('ap50'))} | {_signed(dpc.get('ap50'))} |"
            lines.append(line)
        lines.append("")
    lines += ["## Cameras", "", "| camera | inputs | detections | lane masks | dropped | output Hz | "
              "latency p50 / p90 / p99 ms |" + (" baseline p50 / p99 ms | delta p50 ms | delta dropped |" if base else ""),
              "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if base else "")]
    for ns, cam in report["cameras"].items():
        lat = cam["latency_ms"]
        lat_s = f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f}" if lat else "n/a"
        hz = cam.get("detections_hz") or cam.get("lane_mask_hz")
        line = (f"| {ns} | {_fmt(cam['inputs'])} | {cam['detections']} | {cam['lane_mask']} | "
                f"{_fmt(cam['dropped'])} | {_fmt(hz, 2)} | {lat_s} |")
        if base:
            bc = base.get("cameras", {}).get(ns, {})
            bl = bc.get("latency_ms")
            dc = d.get("cameras", {}).get(ns, {})
            base_lat = f"{bl['p50']:.1f} / {bl['p99']:.1f}" if bl else "n/a"
            line += (f" {base_lat} | "
                     f"{_signed((dc.get('latency_ms') or {}).get('p50'), 1)} | {_signed(dc.get('dropped'))} |")
        lines.append(line)
    if report.get("mode") == "offline":
        lines += ["", "Latency: n/a for an offline replay (outputs are logged at their input's stamp)."]
    files = report.get("files", {})
    if files:
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()]
    return "\n".join(lines) + "\n"


# -- the whole report ------------------------------------------------------------------------------------

def _bag_dir(path: str) -> Path:
    p = Path(path)
    return p if p.is_dir() else p.parent


def _scored(results: str, ground_truth: str | None, progress: bool) -> tuple[Collected, dict[str, Any], str | None]:
    c = collect(results, progress)
    truth_path = truth_bag(c.info, ground_truth)
    truth = bags.ground_truth(truth_path, c.class_names, _png, progress) if truth_path else None
    report = score(c, truth)
    report["ground_truth"] = truth_path
    return c, report, truth_path


def evaluate_bag(results: str, ground_truth: str | None, output: str | Path | None, baseline: str | None = None,
                 video: bool = True, progress: bool = True) -> dict:
    """Score a results bag (and a baseline results bag against the same ground truth); write
    report.json, report.md, plots and replay.mp4 to `output` (default: the directory holding the
    results bag); returns the report (as written to report.json)."""
    c, report, truth_path = _scored(str(results), ground_truth, progress)
    out = Path(output) if output is not None else _bag_dir(str(results)).parent
    out.mkdir(parents=True, exist_ok=True)
    base = None
    if baseline:
        _, base, _ = _scored(str(baseline), ground_truth or truth_path, progress)
        report["baseline"] = {k: v for k, v in base.items() if k != "_plot"}
        report["deltas"] = deltas(_clean(report), _clean(base))
    files = {"report.json": str(out / "report.json"), "report.md": str(out / "report.md")}
    for name in plots(report, out, base):
        files[name] = str(out / name)
    if video:
        frames_bag = video_source(c, truth_path)
        if frames_bag is not None:
            n = write_video(c, frames_bag, out / "replay.mp4", progress)
            if n:
                files["replay.mp4"] = str(out / "replay.mp4")
                report["video_frames_from"] = frames_bag
    report["files"] = files
    report.pop("_plot", None)
    report = _clean(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    return report
