#!/usr/bin/env bash
# How the registered checkpoint `synthface-auformer` was made: AUFormer on the synthetic-world backbone
# (embedded:synthface), trained on a noise-free synthetic corpus whose identities the demo never sees
# (corpus seed 1000; the demo renders seeds 0, 1, 2, ...). Fold 1 of 3 balanced subject folds: the
# card's figures are on the fold's held-out subjects; thresholds are fitted on its validation subjects.
#
#   OUT=/some/folder bash models/make_synthface_auformer.sh          # on a GPU (DEVICE=cuda), ~6 min on one H200
#   SMOKE=1 OUT=/tmp/x bash models/make_synthface_auformer.sh        # the same stages, tiny, on the CPU
#
# Settings (environment): SUBJECTS (60), TASKS (8), FRAMES per task (100), EVERY (keep every 4th frame),
# SEED (1000), STEPS (optimiser steps of each training run: "3000 6000" trains two runs at once and keeps
# the one with the better validation mean F1), BATCH (64), DEVICE (cuda), WORKERS (nproc), BUDGET_S (540:
# training stops at this many seconds after the start, keeping each run's best evaluation so far).
# Outputs in $OUT: synthface_auformer.safetensors + .json (the checkpoint), make_synthface_auformer.log,
# runs.tar.gz (every run's metrics, split and recipe; no weights).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
START=$(date +%s)
if [ "${SMOKE:-0}" = 1 ]; then
    SUBJECTS=${SUBJECTS:-6} TASKS=${TASKS:-1} FRAMES=${FRAMES:-30} EVERY=${EVERY:-3} STEPS=${STEPS:-4 6} BATCH=${BATCH:-8}
    DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=0 EVAL_EVERY=1
else
    SUBJECTS=${SUBJECTS:-60} TASKS=${TASKS:-8} FRAMES=${FRAMES:-100} EVERY=${EVERY:-4} STEPS=${STEPS:-3000 6000} BATCH=${BATCH:-64}
    DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-$(nproc)} LOADERS=6 EVAL_EVERY=4
fi
SEED=${SEED:-1000} BUDGET_S=${BUDGET_S:-540}
WORK=${WORK:-$OUT/work}
LOG=$OUT/make_synthface_auformer.log
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 AUCLI_PROGRESS_INTERVAL=${AUCLI_PROGRESS_INTERVAL:-20}
aucli() { python3 -m aucli "$@"; }
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

say "synthface-auformer: $SUBJECTS subjects x $TASKS tasks x $FRAMES frames (seed $SEED), every $EVERY, steps $STEPS, batch $BATCH, $DEVICE"
say "aucli $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
aucli synth --out "$WORK/corpus" --subjects "$SUBJECTS" --seed "$SEED" --tasks "$TASKS" --frames "$FRAMES" --workers "$WORKERS" >>"$LOG" 2>&1
say "corpus rendered"
aucli preprocess "$WORK/corpus/videos" --out "$WORK/corpus.h5" --labels "$WORK/corpus/BP4D/AUCoding/AU_OCC_clean" --label-format bp4d \
    --as synth_clean --every "$EVERY" --crop-size 128 --workers "$WORKERS" >>"$LOG" 2>&1
say "store made: $(python3 -m aucli info "$WORK/corpus.h5" --json | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d["faces"], "faces of", len(d["subjects"]), "subjects")')"

pids=()
for steps in $STEPS; do
    run=$WORK/run-$steps
    left=$((BUDGET_S - ($(date +%s) - START)))
    ((left > 10)) || { say "no time left for run $steps"; continue; }
    timeout --signal=INT "$left" python3 -m aucli train "$WORK/corpus.h5" --recipe recipes/synthetic.yaml --out "$run" --labels synth_clean \
        --max-steps "$steps" --batch-size "$BATCH" --workers "$LOADERS" --device "$DEVICE" --seed 0 \
        -o optim.epochs=100000 -o train.eval_every="$EVAL_EVERY" -o train.log_every=50 >"$WORK/train-$steps.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || say "a training run stopped early (exit $?): its best evaluation so far is kept"; done

best=$(python3 - "$WORK" 2>>"$LOG" <<'PY'
import json, sys
from pathlib import Path
runs = []
for meta in sorted(Path(sys.argv[1]).glob("run-*/fold1/best.json")):
    training = json.loads(meta.read_text())["training"]
    finished = (meta.parent / "result.json").is_file()
    runs.append((finished, training["validation_mean_f1"], meta))
    print(f"{meta.parent.parent.name}: step {training['step']}, validation F1 {100 * training['validation_mean_f1']:.1f}, "
          f"test F1 {100 * training['test_mean_f1']:.1f}, finished {finished}", file=sys.stderr)
print(max(runs)[2] if runs else "")
PY
)
[ -n "$best" ] || { say "no run reached an evaluation"; exit 1; }
say "kept $best"
cp "${best%.json}.safetensors" "$OUT/synthface_auformer.safetensors"
cp "$best" "$OUT/synthface_auformer.json"
tar -czf "$OUT/runs.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.h5' $(cd "$WORK" && ls -d run-* train-*.log)
say "done in $(($(date +%s) - START)) s"
