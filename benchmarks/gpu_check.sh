#!/usr/bin/env bash
# The GPU check: what psm-jax does on this machine's accelerator, in under 5 minutes on a GPU.
#
#     benchmarks/gpu_check.sh [OUTPUT_FOLDER]     (default: $OUT if set, else runs/gpu_check)
#
# Run from the repository root after `make cuda` (or with PYTHON=<a python whose jax sees the
# GPU>). Writes to OUTPUT_FOLDER: device.txt (nvidia-smi, jax.devices(), the jax, jaxlib and CUDA
# plugin versions), main_job.log (the main job, timed), layer_forms.log and efficientnet.log (model
# throughput, each layer form), summary.txt (the wall times). Nothing else goes there: the main
# job's data and checkpoints go to a temporary folder, deleted at the end.
#
#   1. device info;
#   2. the main job, timed: on a GPU the synthetic default that `make demo` runs (dataset build
#      included), stopped after MAIN_JOB_LIMIT_S seconds (default 150) so the check stays
#      short (its log then shows the stages it finished and their times); without a GPU the
#      tiny synthetic main job (the tests' tiny networks: 2-3 minutes on 2 busy cores);
#   3. train-step throughput of the encoder, the PSM network and the small universal network with
#      the layer forms tuned for XLA:CPU and with the plain forms (benchmarks/bench_layer_forms.py:
#      the papers' batch sizes on a GPU; on the CPU the PSM and universal networks at batch 4):
#      the library's choice on this backend (`psm_jax.models.layers.cpu_forms`) should be the
#      faster one;
#   4. EfficientNet-Lite0's forward pass (the universal model's backbone) with each depthwise form
#      (benchmarks/bench_efficientnet_lite.py: shifted sums, the CPU form; XLA's grouped
#      convolution, the plain form).
# Without a GPU it says "no GPU found: timing the CPU" and runs the same steps on the CPU, smaller.
set -uo pipefail
cd "$(dirname "$0")/.."

OUTPUT=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$OUTPUT"
PY=${PYTHON:-.venv/bin/python}
if [[ ! -x $PY ]]; then
  echo "gpu_check: $PY not found: run \`make cuda\` (GPU) or \`make demo\` (CPU) first, or set PYTHON" >&2
  exit 1
fi
LIMIT=${MAIN_JOB_LIMIT_S:-150}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
SUMMARY=$OUTPUT/summary.txt
: >"$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# Runs "$@" with its output in the log $1 (and on the console), notes its wall time and status.
timed() {
  local name=$1 log=$2
  shift 2
  local start end status
  start=$(date +%s.%N)
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  end=$(date +%s.%N)
  note "$(printf '%-26s %7.1f s  exit %s' "$name" "$(echo "$end - $start" | bc)" "$status")"
}

echo "== 1. device"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')  host: $(hostname)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  else
    echo "nvidia-smi: not found"
  fi
  "$PY" - <<'EOF'
import importlib.metadata as metadata

import jax

for name in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name}: not installed")
print("backend:", jax.default_backend())
print("devices:", jax.devices())
EOF
} 2>&1 | grep -v "Unable to initialize backend" | tee "$OUTPUT/device.txt"
BACKEND=$(sed -n 's/^backend: //p' "$OUTPUT/device.txt")
if [[ -z $BACKEND ]]; then
  echo "gpu_check: JAX did not start (see $OUTPUT/device.txt)" >&2
  exit 1
fi

if [[ $BACKEND == cpu ]]; then
  note "no GPU found: timing the CPU (smaller runs: the tiny main job, batch 4)"
  LIMIT=${MAIN_JOB_LIMIT_S:-180}
  MAIN_CONFIG=psm_jax/configs/main.py:synthetic_personal_saliency/tiny
  FORMS_FLAGS=(--models=psm_network,universal --batch=4 --steps=2)
  EFFICIENTNET_FLAGS=(--batch=2 --repeats=2 --sizes=240x320)
else
  note "backend: $BACKEND ($(grep -m1 -o "devices: .*" "$OUTPUT/device.txt"))"
  MAIN_CONFIG=psm_jax/configs/main.py
  FORMS_FLAGS=(--steps=3)
  EFFICIENTNET_FLAGS=(--batch=32 --repeats=5 --sizes=240x320,480x640)
fi

echo "== 2. the main job ($MAIN_CONFIG), at most $LIMIT s"
timed "main job" "$OUTPUT/main_job.log" timeout "$LIMIT" "$PY" launch/main.py \
  --config="$MAIN_CONFIG" --config.data_dir="$SCRATCH/data" --workdir="$SCRATCH/run"
if grep -q "^Report: " "$OUTPUT/main_job.log"; then
  cp "$SCRATCH"/run/report.md "$OUTPUT/main_job_report.md" 2>/dev/null || true
else
  note "  the main job did not finish: main_job.log has the stages it did"
fi

echo "== 3. train steps, the CPU layer forms against the plain ones"
timed "layer forms" "$OUTPUT/layer_forms.log" "$PY" benchmarks/bench_layer_forms.py "${FORMS_FLAGS[@]}"
grep "plain / cpu" "$OUTPUT/layer_forms.log" | tee -a "$SUMMARY"

echo "== 4. EfficientNet-Lite0's forward pass, each depthwise form"
for form in shifted_sum grouped_conv; do
  timed "efficientnet $form" "$OUTPUT/efficientnet_$form.log" "$PY" \
    benchmarks/bench_efficientnet_lite.py --depthwise="$form" "${EFFICIENTNET_FLAGS[@]}"
  grep "^  forward" "$OUTPUT/efficientnet_$form.log" | sed "s/^/  $form /" | tee -a "$SUMMARY"
done

echo "== summary ($SUMMARY)"
cat "$SUMMARY"
