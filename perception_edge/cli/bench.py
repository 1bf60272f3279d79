"""`perception-edge bench`: per-stage latency of the detection pipeline on 1280x720 frames.

Stages are timed exactly as the nodes run them (the Detector's own timings), plus message
conversion from a sensor_msgs/Image-shaped buffer. Prints medians and the share of pre- plus
post-processing relative to inference. For a model with dynamic height/width (the default model,
or any ``export --dynamic``) it also runs the same model with rectangular inference
(detection.rect) and prints square vs rectangular throughput.
"""
from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from perception_edge.core.image_conversion import compressed_to_pixels, image_to_pixels


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples)


def bench(model: str, frames: list[np.ndarray], iterations: int, batch: int, num_threads: int,
          rect: bool = False, input_size: int = 640) -> dict[str, list[float]]:
    from perception_edge.backends import create_backend
    from perception_edge.pipeline import Detector

    detector = Detector(create_backend(model, "onnxruntime", num_threads=num_threads), conf_threshold=0.25,
                        input_size=input_size, rect=rect)
    h, w = frames[0].shape[:2]
    # what a subscription callback receives: rgb8 bytes with a padded step, and a JPEG payload
    step = w * 3 + 64
    buffers = []
    for f in frames:
        padded = np.zeros((h, step), np.uint8)
        padded[:, :w * 3] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB).reshape(h, -1)
        buffers.append(padded.tobytes())
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    stats: dict[str, list[float]] = {k: [] for k in
                                     ("convert rgb8", "decode jpeg", "preprocess", "inference", "postprocess")}
    for i in range(iterations + 2):
        images = []
        t0 = time.perf_counter()
        for j in range(batch):
            images.append(image_to_pixels(w, h, "rgb8", step, 0, buffers[(i + j) % len(buffers)]))
        t1 = time.perf_counter()
        compressed_to_pixels("jpeg", jpegs[i % len(jpegs)])
        t2 = time.perf_counter()
        out = detector(images)
        if i < 2:
            continue  # warm-up: first runs allocate buffers and let the runtime pick kernels
        stats["convert rgb8"].append((t1 - t0) * 1e3)
        stats["decode jpeg"].append((t2 - t1) * 1e3)
        for k in ("preprocess", "inference", "postprocess"):
            stats[k].append(out.timings[k])
    stats["input_hw"] = [float(v) for v in detector.preprocess._blob_hw]
    return stats


def compare_rect(model: str, frames: list[np.ndarray], iterations: int, batch: int, num_threads: int,
                 input_size: int, square: dict[str, list[float]]) -> None:
    """Square vs rectangular inference on the same dynamic-H/W model: medians and ratios."""
    rect = bench(model, frames, iterations, batch, num_threads, rect=True, input_size=input_size)
    rows = []
    for name, st in (("square", square), ("rect", rect)):
        h, w = (int(v) for v in st["input_hw"])
        infer = _median_ms(st["inference"])
        total = _median_ms([a + b + c for a, b, c in zip(st["preprocess"], st["inference"], st["postprocess"])])
        rows.append((name, f"{w}x{h}", w * h, infer, total, 1e3 * batch / total))
    print(f"\nsquare vs rectangular inference (same model, detection.rect), batch {batch}:")
    print(f"{'input':<8}{'WxH':>10}{'pixels':>9}{'inference ms':>14}{'pipeline ms':>13}{'frames/s':>10}")
    for name, wh, px, infer, total, fps in rows:
        print(f"{name:<8}{wh:>10}{px:>9}{infer:>14.2f}{total:>13.2f}{fps:>10.1f}")
    (_, _, px_s, inf_s, tot_s, _), (_, _, px_r, inf_r, tot_r, _) = rows
    print(f"rect: {px_s / px_r:.2f}x fewer pixels, inference {inf_s / inf_r:.2f}x faster, "
          f"pipeline {tot_s / tot_r:.2f}x the throughput (medians of {iterations})")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="perception-edge bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="YOLOv5 ONNX model (default: a generated YOLOv5n at 640)")
    p.add_argument("--images", nargs="*", help="frames (default: ../shared/data/driving/*.jpg)")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--batch", type=int, default=1, help="frames per inference call (cameras)")
    p.add_argument("--num-threads", type=int, default=0)
    p.add_argument("--input-size", type=int, default=640,
                   help="square size for a model with dynamic H/W (rect scales frames the same way)")
    args = p.parse_args(argv)
    from perception_edge.model_cache import DRIVING, calibration_images, yolov5_onnx

    model = args.model or str(yolov5_onnx("n", 640, dynamic=True))
    if args.images:
        frames = [cv2.imread(x) for x in args.images]
    else:
        frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in calibration_images()]
    frames = [cv2.resize(f, (1280, 720)) if f.shape[:2] != (720, 1280) else f for f in frames]
    stats = bench(model, frames, args.iterations, args.batch, args.num_threads, input_size=args.input_size)
    input_hw = stats.pop("input_hw")
    med = {k: _median_ms(v) for k, v in stats.items()}
    print(f"model {model}, batch {args.batch}, {args.iterations} iterations, 1280x720 frames"
          f" ({'real, ' + str(DRIVING) if not args.images and DRIVING.is_dir() else 'given/synthetic'})")
    print(f"{'stage':<14}{'median ms':>10}{'p90 ms':>9}{'per frame':>11}")
    for k, v in stats.items():
        p90 = float(np.percentile(v, 90))
        print(f"{k:<14}{med[k]:>10.3f}{p90:>9.3f}{med[k] / (1 if k == 'decode jpeg' else args.batch):>11.3f}")
    overhead = med["convert rgb8"] + med["preprocess"] + med["postprocess"]
    print(f"pre+post (convert + preprocess + postprocess) = {overhead:.3f} ms = "
          f"{100 * overhead / med['inference']:.1f}% of inference ({med['inference']:.2f} ms); goal <= 10%")
    from perception_edge.backends import create_backend

    if not all(isinstance(d, int) for d in create_backend(model, "onnxruntime").input.shape[2:]):
        stats["input_hw"] = input_hw
        compare_rect(model, frames, args.iterations, args.batch, args.num_threads, args.input_size, stats)
    else:
        print(f"(model input fixed at {int(input_hw[1])}x{int(input_hw[0])}: no square vs rectangular comparison; "
              "export --dynamic for one)")
    return 0
