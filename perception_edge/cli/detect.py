"""`perception-edge detect`: YOLOv5 detection on image files, results as files in --output.

Writes <stem>.json and <stem>.jpg (boxes drawn); with an instance-segmentation model also
<stem>_instances.png (16-bit, pixel value i + 1 = detection i of the JSON, 0 background)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from perception_edge import config
from perception_edge.core.drawing import draw
from perception_edge.core.errors import InputError
from perception_edge.core.image_conversion import to_rgb

DETECT_PARAMS = ["detection.labels", "detection.conf_threshold", "detection.iou_threshold",
                 "detection.max_detections", "detection.agnostic_nms", "detection.input_size", "detection.rect",
                 "backend", "num_threads"]
# short flags of the CLI contract (detect and segment), as aliases of the schema's names
ALIASES = {"detection.labels": "--labels", "detection.conf_threshold": "--conf-thres",
           "detection.iou_threshold": "--iou-thres", "detection.max_detections": "--max-det",
           "detection.agnostic_nms": "--agnostic", "segmentation.threshold": "--threshold",
           "detection.input_size": "--input-size"}


def parser(prog: str, names: list[str], help_: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"perception-edge {prog}", description=help_)
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--model", required=True, help="model file (.onnx, or .engine/.plan for TensorRT)")
    p.add_argument("--output", required=True, help="folder for the results (created)")
    p.add_argument("--config", help="parameter file (config/perception.yaml); flags override it")
    config.add_cli_arguments(p, names, aliases=ALIASES)
    return p


def read_image(path: str):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return bgr


def each_image(prog: str, names: list[str], help_: str, model_key: str, argv: list[str], make_model, handle) -> int:
    """Parse the shared flags, build the model from the schema's values, run `handle` per image."""
    args = parser(prog, names, help_).parse_args(argv)
    params = config.from_cli(args, names, args.config)
    params[model_key] = args.model
    model = make_model(params)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        bgr = read_image(path)
        handle(path, bgr, model([(bgr, "bgr")])[0], out / Path(path).stem)
    return 0


def tint_instances(rgb: np.ndarray, instance_mask: np.ndarray) -> np.ndarray:
    """Each instance blended with a colour of its own (for the annotated image)."""
    out = rgb.copy()
    ids = instance_mask.astype(np.int64)
    sel = ids > 0
    if sel.any():
        palette = np.random.default_rng(0).integers(40, 256, (int(ids.max()) + 1, 3)).astype(np.uint16)
        out[sel] = ((out[sel].astype(np.uint16) + palette[ids[sel]]) // 2).astype(np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    from perception_edge.pipeline import detector_from_config

    def write(path: str, bgr, dets, stem: Path) -> None:
        record = {"image": str(path), "width": bgr.shape[1], "height": bgr.shape[0], "detections": [
            {"class_id": int(c), "class_name": n, "score": round(float(s), 5),
             "box_xyxy": [round(float(v), 2) for v in b]}
            for b, s, c, n in zip(dets.boxes, dets.scores, dets.class_ids, dets.names())]}
        written = [f"{stem}.json", f"{stem}.jpg"]
        annotated = draw(to_rgb(bgr, "bgr"), dets)
        if dets.instance_mask is not None:  # instance segmentation: 16-bit PNG, value i + 1 = detection i
            counts = np.bincount(dets.instance_mask.ravel(), minlength=len(dets) + 1)
            for i, d in enumerate(record["detections"]):
                d["instance_id"], d["mask_pixels"] = i + 1, int(counts[i + 1])
            cv2.imwrite(f"{stem}_instances.png", dets.instance_mask)
            written.append(f"{stem}_instances.png")
            annotated = draw(tint_instances(to_rgb(bgr, "bgr"), dets.instance_mask), dets)
        Path(f"{stem}.json").write_text(json.dumps(record, indent=1))
        cv2.imwrite(f"{stem}.jpg", cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        print(f"{path}: {len(dets)} detections -> {', '.join(written)}")

    return each_image("detect", DETECT_PARAMS, "YOLOv5 detection on images", "detection.model", argv,
                       detector_from_config, write)
