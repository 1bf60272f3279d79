#!/usr/bin/env bash
# Build TensorRT engines (+ JSON sidecars) for the project's models with Jetson defaults.
# Engines only run on the TensorRT version and GPU that built them: run this on the target device.
#
#   engines/build_engines.sh                          # FP16 on the GPU, all project models
#   DLA_CORE=0 engines/build_engines.sh               # FP16 on DLA core 0 (Xavier/Orin), GPU fallback
#   MAX_BATCH=2 engines/build_engines.sh models/det_yolov5_synth.onnx
#
# Environment: PRECISION (fp16), DLA_CORE (unset: GPU only), BATCH (DLA: static batch, 1),
# MAX_BATCH (default: engine.max_batch of CONFIG), CONFIG (config/perception.yaml),
# OUT_DIR (models: next to the ONNX files), TIMING_CACHE (engines/timing.cache, shared by all builds).
set -euo pipefail
cd "$(dirname "$0")/.."

PRECISION="${PRECISION:-fp16}"
CONFIG="${CONFIG:-config/perception.yaml}"
OUT_DIR="${OUT_DIR:-models}"
TIMING_CACHE="${TIMING_CACHE:-engines/timing.cache}"

# colcon installs the CLI under lib/perception_edge (not on PATH): fall back to the module.
if command -v perception-edge >/dev/null 2>&1; then
  PE=(perception-edge)
else
  PE=(python3 -m perception_edge.cli)
fi

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=(models/det_yolov5_synth.onnx models/lane_unet.onnx)
fi

mkdir -p "$OUT_DIR" "$(dirname "$TIMING_CACHE")"
status=0
for model in "${models[@]}"; do
  if [ ! -f "$model" ]; then
    echo "skipping $model: not found" >&2
    continue
  fi
  args=(--precision "$PRECISION" --output "$OUT_DIR/$(basename "${model%.onnx}").engine"
        --timing-cache "$TIMING_CACHE")
  [ -f "$CONFIG" ] && args+=(--config "$CONFIG")
  if [ -n "${DLA_CORE:-}" ]; then
    # DLA runs static shapes only; a batch range would push layers back to the GPU.
    args+=(--dla-core "$DLA_CORE" --batch "${BATCH:-1}")
  elif [ -n "${MAX_BATCH:-}" ]; then
    args+=(--max-batch "$MAX_BATCH")
  fi
  echo "+ ${PE[*]} build-engine $model ${args[*]}"
  "${PE[@]}" build-engine "$model" "${args[@]}" || status=1
done
exit $status
