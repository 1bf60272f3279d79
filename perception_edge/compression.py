"""The model compression study: `perception-edge evaluate --table` (perception_edge.cli.evaluate).

For each model (ONNX FP32) it builds the variants

    fp32         float32 weights and compute (float16-stored weights unfolded)
    fp16         float16-stored weights, float32 compute (a Cast per weight: half the file)
    ptq_ort      ONNX Runtime static PTQ, QDQ, uint8 activations (U8S8: ONNX Runtime's fast path on
                 x86 without VNNI), int8 per-channel weights, calibrated (min-max)
    ptq_trt      TensorRT-style explicit INT8 Q/DQ (quantize --format tensorrt): symmetric int8
    ptq_dynamic  ONNX Runtime dynamic quantization (weights int8, activation ranges per call)
    qat          the model of train-det / train-seg --qat, when given

calibrated on synthetic scenes of their own seed (CALIB_SEED), and measures each in a fresh
subprocess (``python -m perception_edge.compression measure``): accuracy on held-out scenes
(perception_edge.evaluation.HELD_OUT_SEED; detection mAP@0.5 and mAP@0.5:0.95, lane-marking IoU),
file size, and the peak resident memory of that process (VmHWM) after loading the model and running
it at batch 1 and 3. CPU latency of the backend call at batch 1 and batch 3 (medians) comes from one
more process that loads all variants of a model and calls them in turn (``... latency``), so that on
a shared machine each variant sees the same background load.
The markdown table goes to stdout and, with ``readme``, between the markers TABLE_BEGIN / TABLE_END.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from perception_edge.core.errors import ConfigError

VARIANTS = ("fp32", "fp16", "ptq_ort", "ptq_trt", "ptq_dynamic", "qat")
LABELS = {"fp32": "FP32", "fp16": "FP16 weights", "ptq_ort": "PTQ static, ORT QDQ (U8S8)",
          "ptq_trt": "PTQ static, TensorRT Q/DQ (S8S8 sym.)", "ptq_dynamic": "PTQ dynamic (ORT)",
          "qat": "QAT (Model Optimizer, TensorRT Q/DQ)"}
CALIB_SEED = 777
TABLE_BEGIN = "<!-- compression-table:begin (perception-edge evaluate --table) -->"
TABLE_END = "<!-- compression-table:end -->"


def _vm_hwm_mb() -> float:
    """Peak resident set size of this process (Linux /proc VmHWM), MiB; nan elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_int8_note() -> str:
    """Whether this CPU has int8 dot-product instructions (what ONNX Runtime's S8S8 kernels need)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        return "CPU flags unknown"
    found = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512bw", "avx2") if f" {f}" in flags]
    vnni = any(f in found for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    return (f"{platform.machine()}, {os.cpu_count()} logical cores, flags {', '.join(found) or 'none of interest'}: "
            + ("int8 dot-product (VNNI) present" if vnni else "no VNNI (no int8 dot-product instructions)"))


# -- variants -----------------------------------------------------------------------------------

def calibration_batches(path: str, count: int = 64, seed: int = CALIB_SEED):
    """Synthetic scenes of the calibration seed through the runtime Preprocessor, at the model's size."""
    from perception_edge.backends import create_backend
    from perception_edge.core.calibration import CalibrationBatches
    from perception_edge.evaluation import held_out_scenes

    b = create_backend(path, "onnxruntime")
    hw, mode = b.input_hw, b.metadata.get("resize_mode", "letterbox")
    b.close()
    frames = ((s.image, "rgb", None, None) for s in held_out_scenes(count, seed))
    return CalibrationBatches(frames, hw, 8, count, mode=mode, last="repeat")


def make_variants(model: str, work: Path, qat: str = "", calib_count: int = 64,
                  log: Callable[[str], None] = print) -> dict[str, str]:
    """variant -> ONNX path (built into `work` unless there already)."""
    import onnx

    from perception_edge.models.quantize import _float_weights, quantize_dynamic_model, quantize_model
    from perception_edge.training.detection import store_weights_fp16

    work.mkdir(parents=True, exist_ok=True)
    stem = Path(model).stem
    out = {v: str(work / f"{stem}.{v}.onnx") for v in VARIANTS[:-1]}
    if not Path(out["fp32"]).is_file():
        proto = onnx.load(model)
        _float_weights(proto)
        onnx.save(proto, out["fp32"])
    if not Path(out["fp16"]).is_file():
        store_weights_fp16(out["fp32"], out["fp16"])
    if not Path(out["ptq_ort"]).is_file():
        quantize_model(out["fp32"], out["ptq_ort"], calibration_batches(model, calib_count), activations="uint8",
                       log=log)
    if not Path(out["ptq_trt"]).is_file():
        quantize_model(out["fp32"], out["ptq_trt"], calibration_batches(model, calib_count), fmt="tensorrt", log=log)
    if not Path(out["ptq_dynamic"]).is_file():
        quantize_dynamic_model(out["fp32"], out["ptq_dynamic"], log=log)
    if qat:
        if not Path(qat).is_file():
            raise ConfigError(f"QAT model not found: {qat}")
        out["qat"] = qat
    return out


# -- one measurement (run in its own process) ---------------------------------------------------

def _blobs(model, image) -> dict[int, np.ndarray]:
    out = {}
    for b in (1, 3):
        t, _ = model.preprocess([(image, "rgb")] * b, batch=model.backend.batch_sizes(b)[0])
        out[b] = t.copy()
    return out


def latency(paths: Sequence[str], runs: int, threads: int) -> list[dict[str, float]]:
    """Median backend-call time at batch 1 and 3 of each model, all loaded in this process and called
    in turn (model by model, batch 1 then 3, `runs` rounds, each timed call after an untimed one of
    the same model and batch): on a shared machine every variant sees the same background load."""
    from perception_edge.evaluation import held_out_scenes, load_model

    image = held_out_scenes(1)[0].image
    models = [load_model(p, "onnxruntime", threads) for p in paths]
    blobs = [_blobs(m, image) for m in models]
    for m, b in zip(models, blobs):  # warm-up: ONNX Runtime allocates and picks kernels on the first calls
        m.backend.run(b[1])
        m.backend.run(b[3])
    times = [{1: [], 3: []} for _ in models]
    for _ in range(runs):
        for m, b, t in zip(models, blobs, times):
            for n in (1, 3):
                # an untimed call first: ONNX Runtime's idle worker threads spin for a while after each
                # run, and those of the variant called before would take the cores from this one (on
                # 2 cores that doubled the times and changed the ratios); a model called repeatedly,
                # as in a node, does not pay that
                m.backend.run(b[n])
                t0 = time.perf_counter()
                m.backend.run(b[n])
                t[n].append((time.perf_counter() - t0) * 1e3)
    return [{"b1_ms": float(np.median(t[1])), "b3_ms": float(np.median(t[3]))} for t in times]


def measure(path: str, count: int, threads: int) -> dict[str, object]:
    """Peak memory after a run at batch 1 and 3, then accuracy on `count` held-out scenes. In a
    fresh process: VmHWM then describes this model. (Latency comes from latency(): all variants of
    a model in turn in one process.)"""
    from perception_edge.core.metrics import CocoDetectionMeter
    from perception_edge.evaluation import _run, ground_truth, held_out_scenes, load_model, score_segmenter
    from perception_edge.pipeline import Segmenter

    base_mb = _vm_hwm_mb()
    scenes = list(held_out_scenes(count))  # a SampleSource renders a scene on every read
    model = load_model(path, "onnxruntime", threads)
    blobs = _blobs(model, scenes[0].image)
    for b in (1, 3):
        model.backend.run(blobs[b])
    peak_mb = _vm_hwm_mb()
    images = [s.image for s in scenes]
    row: dict[str, object] = {"model": path, "size_mb": Path(path).stat().st_size / 2**20,
                              "peak_mb": peak_mb, "base_mb": base_mb, "scenes": count}
    if isinstance(model, Segmenter):
        row["iou"] = score_segmenter(model, images, ground_truth(model, scenes)).value
    else:
        coco = CocoDetectionMeter(len(model.class_names), class_names=model.class_names)
        for d, s in zip(_run(model, images, 4), scenes):
            coco.add(d.boxes, d.scores, d.class_ids, s.boxes, s.class_ids)
        res = coco.result()
        row["map50"], row["map50_95"] = res.map50, res.map50_95
    return row


def _subprocess(args: Sequence[str]):
    cmd = [sys.executable, "-m", "perception_edge.compression", *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_in_subprocess(path: str, count: int, threads: int) -> dict[str, object]:
    return _subprocess(["measure", path, "--count", str(count), "--threads", str(threads)])


def latency_in_subprocess(paths: Sequence[str], runs: int, threads: int) -> list[dict[str, float]]:
    return _subprocess(["latency", *paths, "--runs", str(runs), "--threads", str(threads)])


# -- the table ----------------------------------------------------------------------------------

def _pct(new: float, ref: float) -> str:
    if not ref or np.isnan(ref) or np.isnan(new):
        return "-"
    return f"{100.0 * (new - ref) / ref:+.0f} %"


def render_table(results: Sequence[tuple[str, str, dict]]) -> str:
    """Markdown rows: (model label, variant, measurement) in order, FP32 first for each model."""
    head = ("| model | variant | size MB (vs FP32) | accuracy (vs FP32, points) | mAP@0.5:0.95 (vs FP32) | "
            "batch 1 ms (speed-up) | batch 3 ms (speed-up) | peak RSS MB (vs FP32) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    ref: dict[str, dict] = {}
    for label, variant, r in results:
        if variant == "fp32":
            ref[label] = r
        f = ref.get(label, r)
        if "iou" in r:
            acc = f"IoU {r['iou']:.3f}"
            d_acc = 100.0 * (r["iou"] - f["iou"])
            coco = "-"
        else:
            acc = f"mAP@0.5 {r['map50']:.3f}"
            d_acc = 100.0 * (r["map50"] - f["map50"])
            d_coco = 100.0 * (r["map50_95"] - f["map50_95"])
            coco = f"{r['map50_95']:.3f}" + ("" if variant == "fp32" else f" ({d_coco:+.1f})")
        acc += "" if variant == "fp32" else f" ({d_acc:+.1f})"
        size = f"{r['size_mb']:.2f}" + ("" if variant == "fp32" else f" ({_pct(r['size_mb'], f['size_mb'])})")
        b1 = f"{r['b1_ms']:.1f}" + ("" if variant == "fp32" else f" ({f['b1_ms'] / r['b1_ms']:.2f}x)")
        b3 = f"{r['b3_ms']:.1f}" + ("" if variant == "fp32" else f" ({f['b3_ms'] / r['b3_ms']:.2f}x)")
        mem = f"{r['peak_mb']:.0f}" + ("" if variant == "fp32" else f" ({_pct(r['peak_mb'], f['peak_mb'])})")
        lines.append(f"| {label if variant == 'fp32' else ''} | {LABELS[variant]} | {size} | {acc} | {coco} | "
                     f"{b1} | {b3} | {mem} |")
    return "\n".join(lines)


def write_between_markers(path: str, text: str) -> None:
    """Replace what is between TABLE_BEGIN and TABLE_END in `path` (appended when the markers are absent)."""
    p = Path(path)
    doc = p.read_text() if p.is_file() else ""
    block = f"{TABLE_BEGIN}\n{text.rstrip()}\n{TABLE_END}"
    if TABLE_BEGIN in doc and TABLE_END in doc:
        a = doc.index(TABLE_BEGIN)
        b = doc.index(TABLE_END) + len(TABLE_END)
        doc = doc[:a] + block + doc[b:]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    p.write_text(doc)


def run_table(models: Sequence[str], qat_models: Sequence[str], work: str, count: int = 128, runs: int = 20,
              threads: int = 0, readme: str = "", json_path: str = "", variants: Sequence[str] = VARIANTS,
              log: Callable[[str], None] = print) -> list[tuple[str, str, dict]]:
    """Build the variants of every model, measure each in its own process, print (and write) the table."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad or "fp32" not in variants:
        raise ConfigError(f"variants must include fp32 and be among {', '.join(VARIANTS)}; got {list(variants)}")
    if qat_models and len(qat_models) != len(models):
        raise ConfigError(f"--qat-models: one per model ('-' for none), {len(models)} expected")
    if count < 1 or runs < 1:
        raise ConfigError("--count and --runs must be >= 1")
    t0 = time.time()
    results: list[tuple[str, str, dict]] = []
    for k, model in enumerate(models):
        if not Path(model).is_file():
            raise ConfigError(f"model not found: {model}")
        qat = qat_models[k] if qat_models and qat_models[k] != "-" else ""
        paths = make_variants(model, Path(work), qat, log=log)
        todo = [v for v in variants if v in paths]
        times = latency_in_subprocess([paths[v] for v in todo], runs, threads)
        for v, t in zip(todo, times):
            r = measure_in_subprocess(paths[v], count, threads)
            r.update(t)
            results.append((Path(model).stem, v, r))
            acc = f"IoU {r['iou']:.4f}" if "iou" in r else f"mAP@0.5 {r['map50']:.4f} @0.5:0.95 {r['map50_95']:.4f}"
            log(f"{Path(model).stem:<24} {v:<12} {r['size_mb']:6.2f} MB  b1 {r['b1_ms']:7.1f} ms  "
                f"b3 {r['b3_ms']:7.1f} ms  peak {r['peak_mb']:5.0f} MB  {acc}")
    table = render_table(results)
    note = (f"{count} held-out scenes (seed of perception_edge.evaluation.HELD_OUT_SEED), latency = median of "
            f"{runs} backend calls per batch size, the variants of a model called in turn in one process (each "
            f"timed call after an untimed one of the same variant), ONNX Runtime CPU, "
            f"{threads or 'default'} threads; {cpu_int8_note()}. Peak RSS: VmHWM of a fresh process that "
            f"loaded the model and ran batch 1 and 3 (an empty process with the imports: "
            f"{results[0][2]['base_mb']:.0f} MB). Generated in {time.time() - t0:.0f} s by "
            f"`perception-edge evaluate --table`.")
    print(table + "\n\n" + note)
    if readme:
        write_between_markers(readme, table + "\n\n" + note)
    if json_path:
        Path(json_path).write_text(json.dumps([{"model": m, "variant": v, **r} for m, v, r in results], indent=1))
    return results


def _main(argv: Sequence[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m perception_edge.compression")
    ap.add_argument("what", choices=("measure", "latency"))
    ap.add_argument("models", nargs="+")
    ap.add_argument("--count", type=int, default=128)
    ap.add_argument("--runs", type=int, default=20, help="latency: timed calls per batch size")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.what == "measure":
        print(json.dumps(measure(a.models[0], a.count, a.threads)))
    else:
        print(json.dumps(latency(a.models, a.runs, a.threads)))
    return 0


__all__ = ["VARIANTS", "LABELS", "make_variants", "measure", "render_table", "write_between_markers", "run_table",
           "cpu_int8_note"]


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
