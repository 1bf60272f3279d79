"""`perception-edge evaluate`: accuracy, size and CPU latency of models side by side.

The command line of perception_edge.evaluation (metrics, ground truth and reference scoring: see there):
- against ground truth: freshly generated held-out synthetic scenes (default) or a data set folder
  (images/ + masks/ and/or labels/, see perception_edge.data.dataset);
- against a reference model (``--reference FP32.onnx``): agreement instead of accuracy, which also
  works on unlabelled frames (``--frames`` folder, video or rosbag, e.g. the real dash-cam frames).

With ``--bag RESULTS`` it scores a results bag instead (perception_edge.bag_report).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from perception_edge.backends import BACKEND_NAMES
from perception_edge.core.errors import ConfigError
from perception_edge.core.image_conversion import to_rgb
from perception_edge.data.dataset import DatasetFolder, Sample, parse_size
from perception_edge.evaluation import (
    HELD_OUT_SEED, ground_truth, held_out_scenes, inference_ms, load_model, reference_truth, score)


def load_images(args) -> tuple[list[np.ndarray], list[Sample] | None]:
    if args.frames:
        from perception_edge.data.frame_sources import iter_frames

        images = [to_rgb(px, order) for px, order, _, _ in iter_frames(args.frames, args.topic or None,
                                                                        limit=args.count)]
        if not images:
            raise ConfigError(f"no frames in {args.frames}")
        return images, None
    if args.data:
        folder = DatasetFolder(args.data)
        samples = [folder[i] for i in range(min(len(folder), args.count))]
    else:
        samples = list(held_out_scenes(args.count, args.seed, parse_size(args.size)))
    return [s.image for s in samples], samples


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="perception-edge evaluate", description=__doc__.split("\n\n")[0],
                                 epilog="perception-edge evaluate --bag RESULTS [--ground-truth BAG] [--baseline OTHER] "
                                        "[--output DIR] [--no-video] scores a results bag instead "
                                        "(perception-edge evaluate --bag X --help).")
    ap.add_argument("models", nargs="+", help="models to score (ONNX, or engines with --backend tensorrt)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", help="data set folder with ground truth (images/ + masks/ or labels/)")
    src.add_argument("--frames", help="unlabelled frames (folder, video, rosbag): needs --reference")
    ap.add_argument("--topic", default="", help="image topic of a rosbag given with --frames")
    ap.add_argument("--count", type=int, default=64, help="frames or scenes to score (default 64)")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="seed of the held-out synthetic scenes")
    ap.add_argument("--size", default="640x360", help="synthetic scene size WIDTHxHEIGHT")
    ap.add_argument("--reference", default="", help="score agreement with this model instead of ground truth")
    ap.add_argument("--reference-conf", type=float, default=0.25,
                    help="confidence at which the reference's detections count as truth (default 0.25)")
    ap.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model for the latency median")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    ap.add_argument("--tables", action="store_true", help="print the per-class detection tables")
    t = ap.add_argument_group("compression table (perception_edge.compression): every model x FP32, FP16 weights, "
                              "PTQ static ORT / TensorRT Q/DQ, PTQ dynamic, QAT")
    t.add_argument("--table", action="store_true", help="build the variants of each model and measure them")
    t.add_argument("--qat-models", nargs="+", default=[], metavar="QAT", help="the QAT model of each model ('-': none)")
    t.add_argument("--work", default="runs/compression", help="folder for the variants (default runs/compression)")
    t.add_argument("--readme", default="", help="write the table between its markers into this markdown file")
    return ap


def bag_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="perception-edge evaluate --bag",
                                 description="Score a results bag (live or offline replay, or a CARLA run) against "
                                             "ground truth: mAP, per-class AP, lane IoU, latency, drops, rates; "
                                             "report.json, report.md, plots and an annotated MP4 "
                                             "(perception_edge.bag_report).")
    ap.add_argument("--bag", required=True, help="results bag (<ns>/detections, <ns>/lane_mask, ...)")
    ap.add_argument("--ground-truth", default=None,
                    help="bag with <ns>/ground_truth/* topics (default: the results bag's own, else its source bag)")
    ap.add_argument("--baseline", default=None, help="another results bag: both are shown, with the deltas")
    ap.add_argument("--output", default=None, help="report directory (default: the directory holding the bag)")
    ap.add_argument("--no-video", action="store_true", help="skip the annotated MP4")
    return ap


def main_bag(argv: list[str]) -> int:
    from perception_edge.bag_report import evaluate_bag

    args = bag_parser().parse_args(argv)
    report = evaluate_bag(args.bag, args.ground_truth, args.output, args.baseline, video=not args.no_video)
    det, lane = report.get("detection"), report.get("lane")
    print(f"results: {args.bag} (ground truth: {report.get('ground_truth') or 'none found'})")
    def f3(v):
        return "n/a" if v is None else f"{v:.3f}"

    if det:
        print(f"  detection mAP@0.5 {f3(det['map50'])}  mAP@0.5:0.95 {f3(det['map50_95'])}  P {f3(det['precision'])}  "
              f"R {f3(det['recall'])} at the published threshold ({det['frames']} frames)")
    if lane:
        print("  lane IoU " + ", ".join(f"{k} {f3(v)}" for k, v in lane["iou"].items()))
    for ns, cam in report["cameras"].items():
        lat = cam["latency_ms"]
        print(f"  {ns:<24} inputs {cam['inputs'] if cam['inputs'] is not None else 'n/a':>5}  dropped "
              f"{cam['dropped'] if cam['dropped'] is not None else 'n/a':>4}  latency "
              + (f"p50 {lat['p50']:.1f} p90 {lat['p90']:.1f} p99 {lat['p99']:.1f} ms" if lat else "n/a"))
    print(f"  report: {report['files']['report.md']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--bag" or a.startswith("--bag=") for a in argv):  # the results-bag mode
        return main_bag(argv)
    args = parser().parse_args(argv)
    if args.table:
        from perception_edge.compression import run_table

        run_table(args.models, args.qat_models, args.work, args.count, args.runs, args.threads, args.readme, args.json)
        return 0
    if args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.frames and not args.reference:
        raise ConfigError("--frames are unlabelled: give --reference MODEL to score agreement with it")
    images, samples = load_images(args)
    reference = load_model(args.reference, args.backend, args.threads) if args.reference else None
    reference_results = reference_truth(reference, images, args.reference_conf) if reference else None
    rows = []
    for path in args.models:
        model = load_model(path, args.backend, args.threads)
        if reference is not None and type(reference) is not type(model):
            raise ConfigError(f"{path} and the reference {args.reference} are not the same kind of model")
        truth = reference_results if reference else ground_truth(model, samples)
        s = score(model, images, truth, reference is not None)
        ms = inference_ms(model, images[0], args.runs)
        rows.append({"model": path, "size_mb": round(Path(path).stat().st_size / 2**20, 2), "metric": s.metric,
                     "value": round(s.value, 4), "per_class": {k: round(v, 4) for k, v in s.per_class.items()},
                     "inference_ms": round(ms, 2), "frames": len(images)})
        if args.tables and s.table:
            print(f"{path}\n{s.table}\n")
    width = max(len(r["model"]) for r in rows)
    print(f"{'model':<{width}}  {'MB':>6}  {'inference ms':>12}  metric")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['size_mb']:>6.2f}  {r['inference_ms']:>12.2f}  "
              f"{r['metric']} {r['value']:.4f}  ({len(images)} frames)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
