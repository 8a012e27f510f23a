"""Learning checks of issue 5: AUFormer against the baselines, and data efficiency, on the synthetic world.

Methods table (the default). On the corpus and store of ``bench/learnability.py`` (BP4D layout, 41
subjects on the official 3-fold partitions, 8 tasks of 250 frames at 224 px, CenterFace, every 5th
frame, label set ``synth_clean``), each of ``auformer``, ``linear``, ``adaptformer``, ``lora`` and
``full`` is trained through :func:`aucli.engine.train` with recipes/synthetic.yaml on the
synthetic-world backbone (``embedded:synthface``: frozen, except that ``full`` unfreezes it), on
every fold, for each seed. Every method gets the same tuning budget: the same optimiser steps
(600, learnability.py's budget), batch (32), warm-up (about 10% of the steps), cosine schedule and
augmentation.

Learning rate: by default the recipe's (AdamW peak 2.5e-3) for every method; ``full`` trains its
backbone at lr x ``optim.backbone_lr_scale`` (0.1 in the recipe) and its head at lr. ``--lr
3e-4,1e-3,3e-3`` gives every method the same small grid instead; each method's learning rate is
then chosen by its mean *validation* F1 (validation subjects of the training folds, over seeds and
folds), never by the test folds, and the table reports the test figures of that choice.

The table gives per-AU test F1 (thresholds fitted on validation subjects) as the mean over seeds of
each seed's 3-fold mean, with the standard deviation over seeds; mean F1 (mean ± std over seeds);
mean AUC; trainable parameters; the summed train+evaluation wall time of a seed's 3 folds (as
stored by the trainer: for a resumed fold, its last segment only); and the median time of an
optimiser step measured while training in this invocation (or an earlier one, kept beside the run).
Goal (issue 5): AUFormer's mean F1 at least the best of linear, adaptformer and lora, with far fewer
trainable parameters than full (reported for reference).

Data efficiency (``--data-efficiency``). ``auformer`` and ``full`` at 10%, 30% and 100% of the
training subjects of each fold (``train.train_fraction``: a seeded draw, the same subjects for both
methods), same budget, on a corpus of its own: 60 subjects (official BP4D ids, then F024, M019, ...;
more than BP4D's 41, so the folds are a balanced 3-fold split, drawn by the seed), all 8 tasks of
75 frames (3 s) each, every 5th frame stored: 7,200 faces, 120 per subject (the methods corpus has
400 per subject; the same task mix, in shorter recordings). A fold trains on 34 subjects
(40 minus 6 for validation); 10% is 3 of them, 30% 10.

Run (one method or seed at a time is fine: what is finished is reused):
    python bench/method_comparison.py --quick --threads 1 --loader-workers 0   (pipeline check and step times, ~11 min; figures mean nothing)
    python bench/method_comparison.py --quick --data-efficiency --threads 1 --loader-workers 0   (the same, ~15 min)
    python bench/method_comparison.py                                          (the methods table: 5 methods x 3 seeds x 3 folds)
    python bench/method_comparison.py --methods lora,full --seeds 2            (part of the grid; a later run does the rest)
    python bench/method_comparison.py --data-efficiency                        (the data-efficiency table)
    python bench/method_comparison.py --lr 3e-4,1e-3,3e-3 --json grid.json     (a learning-rate grid, selected on validation)

CPU time (measured with the two ``--quick ... --threads 1 --loader-workers 0`` runs above, batch
32 at 112 px, on the 2-core machine while learnability.py and another benchmark ran on it: the
figures are high-side; each quick run prints this estimate from its own step times). Median seconds
per optimiser step: auformer 3.45, linear 0.55, adaptformer 1.68, lora 1.43, full 1.63 (data-
efficiency quick run at 30% / 100%: auformer 3.29 / 3.17, full 1.70 / 1.61). The methods table is
5 methods x 3 seeds x 3 folds x 600 steps: 13.2 h of training steps on 1 thread (auformer 5.2,
linear 0.8, adaptformer 2.6, lora 2.2, full 2.4), plus evaluation of each fold's ~7,000
validation and test faces (not timed here; about 2 h in all, extrapolated from the step times):
some 15 h, or about 9 h where learnability.py has already made the auformer and linear runs
(same recipe, same folders: reused). The data-efficiency table is 2 methods x 3 fractions x 3 seeds
x 3 folds x 600 steps: 21.4 h of training steps (auformer 14.2, full 7.2), plus about 1 h of
evaluation and its corpus (36,000 frames rendered and detected, once): some 23 h. On a GPU
(``bench/gpu_learning.sh``) each table takes minutes. Two threads or a
quiet machine were not measured.

Corpora, stores and runs are kept under ``--work`` (default ``bench/out/learnability``, shared with
learnability.py: same store, and for auformer and linear at the recipe's learning rate the same run
folders). A rerun reuses finished runs and resumes unfinished ones. Two processes of this script
never train the same run (a lock file beside it); do not run learnability.py on the same seeds at
the same time, nor build the same corpus from two processes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import learning  # (the corpus, store, backbone and fixed-budget recipe of issue 4's check)
from aucli.resources import recipe_path

METHODS = ("auformer", "linear", "adaptformer", "lora", "full")
EFFICIENCY_METHODS = ("auformer", "full")
PEFT_BASELINES = ("linear", "adaptformer", "lora")
RECIPE = recipe_path("synthetic")


# ------------------------------------------------------------------------------------ arguments
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny corpora, 1 seed, 20 steps of 32 faces: checks the pipeline and times the steps, not the figures")  # fmt: skip
    parser.add_argument("--data-efficiency", action="store_true",
                        help="the data-efficiency table (auformer and full at --fractions of the training subjects) instead of the methods table")  # fmt: skip
    parser.add_argument("--work", type=Path, default=learning.ROOT / "bench" / "out" / "learnability",
                        help="folder for corpora, stores and runs (kept, reused; shared with learnability.py)")  # fmt: skip
    parser.add_argument("--methods", help=f"comma-separated subset (default: {','.join(METHODS)}; with --data-efficiency: {','.join(EFFICIENCY_METHODS)})")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    parser.add_argument("--lr", default="recipe", help="peak learning rate(s) of every method: recipe, or a comma-separated grid chosen on validation F1")
    parser.add_argument("--steps", type=int, default=learning.BUDGET_STEPS, help="optimiser steps per fold (the same budget for every method)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--subjects", type=int, default=41, help="methods table: corpus subjects (learnability.py's corpus)")
    parser.add_argument("--tasks", type=int, default=8, help="methods table: BP4D tasks per subject")
    parser.add_argument("--frames", type=int, default=250, help="methods table: frames per task")
    parser.add_argument("--de-subjects", type=int, default=60, help="data efficiency: corpus subjects")
    parser.add_argument("--de-tasks", type=int, default=8, help="data efficiency: tasks per subject")
    parser.add_argument("--de-frames", type=int, default=75, help="data efficiency: frames per task")
    parser.add_argument("--fractions", default="0.1,0.3,1.0", help="data efficiency: fractions of the training subjects")
    parser.add_argument("--every", type=int, default=5, help="store every N-th frame")
    parser.add_argument("--detector", choices=["centerface", "none"], default="centerface", help="face detector of the stores")
    parser.add_argument("--weights", default="embedded:synthface", help="the pretrained backbone (embedded:NAME, a registered name, or a file)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader worker processes")
    learning.add_run_options(parser)
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.tasks, args.frames, args.every, args.steps, args.batch = 8, 2, 60, 3, 20, 32
        args.de_subjects, args.de_tasks, args.de_frames = 12, 1, 60
        if args.seeds == "0,1,2":
            args.seeds = "0"
    args.seed_list = _int_list(args.seeds, "--seeds")
    args.method_list = _names(args.methods, METHODS, EFFICIENCY_METHODS if args.data_efficiency else METHODS, "--methods")
    args.lr_list = [None] if args.lr.strip() == "recipe" else _float_list(args.lr, "--lr")
    args.fraction_list = _float_list(args.fractions, "--fractions") if args.data_efficiency else [1.0]
    if any(not 0.0 < f <= 1.0 for f in args.fraction_list):
        parser.error(f"--fractions must lie in (0, 1], found {args.fractions}")
    return args


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{flag} takes comma-separated integers, e.g. 0,1,2 (found {text!r})") from None
    if not values:
        raise SystemExit(f"{flag} is empty")
    return values


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{flag} takes comma-separated numbers, e.g. 3e-4,1e-3 (found {text!r})") from None
    if not values:
        raise SystemExit(f"{flag} is empty")
    return values


def _names(text: str | None, allowed: Sequence[str], default: Sequence[str], flag: str) -> list[str]:
    if text is None:
        return list(default)
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SystemExit(f"{flag} takes a subset of {','.join(allowed)} (found {text!r})")
    return [n for n in allowed if n in names]


def corpus_args(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments :func:`learnability.make_store` and ``recipe_for`` read, for this mode's corpus."""
    corpus = argparse.Namespace(**vars(args))
    if args.data_efficiency:
        corpus.subjects, corpus.tasks, corpus.frames = args.de_subjects, args.de_tasks, args.de_frames
    return corpus


# ------------------------------------------------------------------------------------ runs
def recipe_lr() -> float:
    """The peak learning rate of recipes/synthetic.yaml."""
    from aucli.config import load_recipe

    return float(load_recipe(RECIPE).optim.lr)


def method_recipe(
    args: argparse.Namespace,
    method: str,
    weights_path: str,
    model_config: dict[str, Any],
    faces: int,
    seed: int,
    *,
    lr: float | None = None,
    fraction: float = 1.0,
):
    """learnability.py's fixed-budget recipe for ``method`` on the pretrained backbone, with ``lr`` and ``fraction``.

    At the recipe's learning rate and all training subjects it is learnability.py's recipe itself,
    so the two scripts share those runs. The warm-up stays about 10% of the steps at any fraction.
    """
    from aucli.config import Recipe, recipe_data

    base = learning.recipe_for(args, method, "pretrained", weights_path, model_config, max(round(faces * fraction), 1), seed)
    overrides: dict[str, Any] = {}
    if lr is not None and lr != base.optim.lr:
        overrides["optim.lr"] = lr
    if fraction != 1.0:
        overrides["train.train_fraction"] = fraction
    if not overrides:
        return base
    return Recipe.from_dict(recipe_data(base.to_dict(), overrides))


def run_folder(
    work: Path, store: Path, args: argparse.Namespace, method: str, seed: int, *, lr: float | None, fraction: float, weights: str
) -> Path:
    """``runs/<store>/steps<S>-batch<B>[-cuda]/<method>-pretrained-<sha8>[-lr<lr>][-frac<f>]/seed<seed>`` (learnability.py's layout;
    ``<sha8>`` names the backbone file, :func:`learnability.weights_tag`)."""
    name = f"{method}-{learning.weights_tag(weights)}"
    if lr is not None and lr != recipe_lr():
        name += f"-lr{lr:g}"
    if fraction != 1.0:
        name += f"-frac{fraction:g}"
    return work / "runs" / store.stem / learning.budget_name(args) / name / f"seed{seed}"


run_lock = learning.run_lock  # (one lock for both scripts: they share run folders)


def step_timing(marks: Sequence[tuple[int, float]]) -> dict[str, Any] | None:
    """Median seconds of an optimiser step from ``(step, perf_counter)`` marks taken after each step.

    Only consecutive steps of one fold count (step n+1 right after step n): the first step of a
    fold (model build, loader start) and fold boundaries (evaluation) are left out.
    """
    intervals = [t1 - t0 for (s0, t0), (s1, t1) in itertools.pairwise(marks) if s1 == s0 + 1]
    if not intervals:
        return None
    return {"median_step_s": float(np.median(intervals)), "mean_step_s": float(np.mean(intervals)), "timed_steps": len(intervals)}


TIMING_FILE = "bench_step_timing.json"


def merge_timing(folder: Path, timing: dict[str, Any] | None, threads: int) -> dict[str, Any] | None:
    """The run's step timing: this invocation's when it timed at least as many steps as the one kept, which it replaces."""
    from aucli.fileio import atomic_write_json

    path = folder / TIMING_FILE
    kept = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if timing is None:
        return kept
    timing = {**timing, "threads": threads}
    if kept is not None and kept.get("timed_steps", 0) > timing["timed_steps"]:
        return kept
    atomic_write_json(path, timing)
    return timing


def run_one(store: Path, recipe: Any, folder: Path, *, threads: int, show_progress: bool = True, report_only: bool = False) -> dict[str, Any]:
    """Train (or reuse, or resume) one run of all folds and return its figures (see :func:`aggregate`).

    ``status`` is ``done``, ``diverged`` (recorded, not retrained) or ``missing`` (``report_only`` and unfinished).
    """
    marks: list[tuple[int, float]] = []
    outcome = learning.train_or_report(store, recipe, folder, report_only=report_only, show_progress=show_progress,
                                           on_step=lambda step: marks.append((step, time.perf_counter())))  # fmt: skip
    if outcome.status != "done":
        return {"folder": str(folder), "status": outcome.status, "reason": outcome.reason, "steps_this_run": len(marks)}
    timing = merge_timing(folder, step_timing(marks), threads)
    run = outcome.run
    folds = run.folds
    return {
        "folder": str(folder),
        "status": "done",
        "au_names": run.au_names,
        "f1": run.f1_matrix().tolist(),
        "mean_f1": run.mean_f1(),
        "mean_auc": float(np.nanmean([f.test.mean_auc for f in folds])),
        "val_mean_f1": float(np.nanmean([f.validation.mean_f1 if f.validation is not None else np.nan for f in folds])),
        "trainable": int(folds[0].parameters["trainable"]),
        "total_parameters": int(folds[0].parameters["total"]),
        "wall_s": float(sum(f.wall_time_s for f in folds)),
        "train_subjects": [len(f.split.train) for f in folds],
        "steps_this_run": len(marks),
        "timing": timing,
    }


def run_grid(
    args: argparse.Namespace,
    store: Path,
    faces: int,
    *,
    runner: Callable[..., dict[str, Any]] = run_one,
) -> list[dict[str, Any]]:
    """Every (method, lr, fraction, seed) of the selection, in that order; one dict per run."""
    weights_path, model_config = learning.backbone(args.weights)
    runs = []
    for method in args.method_list:
        for lr in args.lr_list:
            for fraction in args.fraction_list:
                for seed in args.seed_list:
                    recipe = method_recipe(args, method, weights_path, model_config, faces, seed, lr=lr, fraction=fraction)
                    folder = run_folder(args.work, store, args, method, seed, lr=lr, fraction=fraction, weights=weights_path)
                    print(f"== {method}, lr {recipe.optim.lr:g}, {fraction:.0%} of the training subjects, seed {seed}: {folder}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    figures = runner(store, recipe, folder, threads=args.threads, report_only=args.report_only)
                    runs.append({"method": method, "lr": float(recipe.optim.lr), "fraction": fraction, "seed": seed, **figures})
    return runs


# ------------------------------------------------------------------------------------ summaries
def _nan_stats(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    return (float(np.mean(finite)), float(np.std(finite))) if finite.size else (float("nan"), float("nan"))


def _fold_mean(f1: Sequence[Sequence[float]]) -> np.ndarray:
    """``(n_folds, n_aus)`` F1 -> ``(n_aus,)`` mean over the folds where it is defined (NaN where it never is)."""
    array = np.asarray(f1, dtype=float)
    defined = np.isfinite(array)
    counts = defined.sum(axis=0)
    sums = np.where(defined, array, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures of one group of runs (one per seed): per-AU F1 and mean F1 as mean and std over seeds.

    Each run's ``f1`` is ``(n_folds, n_aus)``; a seed's per-AU F1 is its mean over folds.
    """
    per_au = np.stack([_fold_mean(r["f1"]) for r in runs])  # (seeds, aus)
    f1_mean, f1_std = zip(*(_nan_stats(column) for column in per_au.T)) if per_au.size else ((), ())
    mean_f1, mean_f1_std = _nan_stats([r["mean_f1"] for r in runs])
    step_times = [r["timing"]["median_step_s"] for r in runs if r.get("timing")]
    return {
        "seeds": [r["seed"] for r in runs],
        "f1_mean": list(f1_mean),
        "f1_std": list(f1_std),
        "mean_f1": mean_f1,
        "mean_f1_std": mean_f1_std,
        "mean_auc": _nan_stats([r["mean_auc"] for r in runs])[0],
        "val_mean_f1": _nan_stats([r["val_mean_f1"] for r in runs])[0],
        "trainable": runs[0]["trainable"],
        "total_parameters": runs[0]["total_parameters"],
        "wall_s_per_seed": float(np.mean([r["wall_s"] for r in runs])),
        "median_step_s": float(np.median(step_times)) if step_times else None,
        "train_subjects": float(np.mean([np.mean(r["train_subjects"]) for r in runs])),
    }


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Groups by (method, lr, fraction) and, per (method, fraction), the lr of best validation F1.

    Returns ``{"groups": [{method, lr, fraction, **aggregate}], "chosen": {method: {fraction: lr}}}``.
    """
    keys: list[tuple[str, float, float]] = []
    for run in runs:
        key = (run["method"], run["lr"], run["fraction"])
        if key not in keys:
            keys.append(key)
    groups = []
    for m, lr, f in keys:
        members = [r for r in runs if (r["method"], r["lr"], r["fraction"]) == (m, lr, f)]
        done = [r for r in members if r.get("status", "done") == "done"]
        if done:  # a group with no finished run has no figures; main() lists its runs
            groups.append({"method": m, "lr": lr, "fraction": f, **aggregate(done),
                           "diverged": sum(r.get("status") == "diverged" for r in members),
                           "missing": sum(r.get("status") == "missing" for r in members)})  # fmt: skip
    chosen: dict[str, dict[str, float]] = {}
    for method, fraction in dict.fromkeys((g["method"], g["fraction"]) for g in groups):
        candidates = [g for g in groups if (g["method"], g["fraction"]) == (method, fraction)]
        best = max(candidates, key=lambda g: g["val_mean_f1"] if np.isfinite(g["val_mean_f1"]) else -math.inf)  # first of ties
        chosen.setdefault(method, {})[str(fraction)] = best["lr"]
    return {"groups": groups, "chosen": chosen}


def chosen_groups(summary: dict[str, Any], fraction: float = 1.0) -> dict[str, dict[str, Any]]:
    """Method -> its group at the chosen learning rate, for ``fraction``."""
    out = {}
    for group in summary["groups"]:
        if group["fraction"] == fraction and summary["chosen"][group["method"]][str(fraction)] == group["lr"]:
            out[group["method"]] = group
    return out


def verdict(summary: dict[str, Any]) -> dict[str, Any] | None:
    """AUFormer's mean F1 against the best of linear, adaptformer and lora, and full's parameters over AUFormer's."""
    chosen = chosen_groups(summary)
    baselines = [m for m in PEFT_BASELINES if m in chosen]
    if "auformer" not in chosen or not baselines:
        return None
    best = max(baselines, key=lambda m: chosen[m]["mean_f1"])
    gap = chosen["auformer"]["mean_f1"] - chosen[best]["mean_f1"]
    out = {"best_baseline": best, "gap": gap, "met": bool(gap >= 0)}
    if "full" in chosen:
        out["full_over_auformer_parameters"] = chosen["full"]["trainable"] / chosen["auformer"]["trainable"]
    return out


def cpu_estimate(summary: dict[str, Any], defaults: argparse.Namespace, methods: Sequence[str], fractions: int) -> dict[str, float] | None:
    """Hours of training steps of the default grid (steps x 3 folds x seeds x fractions) per method.

    At the median over the method's measured groups of their median seconds per step.
    """
    measured: dict[str, list[float]] = {}
    for group in summary["groups"]:
        if group["median_step_s"] is not None and group["method"] in methods:
            measured.setdefault(group["method"], []).append(group["median_step_s"])
    if not measured:
        return None
    steps = defaults.steps * 3 * len(defaults.seed_list) * fractions
    return {m: float(np.median(times)) * steps / 3600 for m, times in measured.items()}


# ------------------------------------------------------------------------------------ tables
def _cell(mean: float, std: float) -> str:
    return "-" if not np.isfinite(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def methods_table(summary: dict[str, Any], au_names: Sequence[str], args: argparse.Namespace, setting: str):
    from rich.table import Table

    chosen = chosen_groups(summary)
    title = "Methods (issue 5): test F1 % per AU, 3-fold subject-independent, synthface backbone" + (
        " [QUICK: pipeline check only]" if args.quick else ""
    )
    table = Table(title=title, caption=setting, padding=(0, 1), collapse_padding=True)
    table.add_column("AU", no_wrap=True)
    for method in chosen:
        table.add_column(method, justify="right", no_wrap=True)
    groups = list(chosen.values())
    for i, au in enumerate(au_names):
        table.add_row(au, *[_cell(g["f1_mean"][i], g["f1_std"][i]) for g in groups])
    table.add_section()
    table.add_row("mean F1", *[_cell(g["mean_f1"], g["mean_f1_std"]) for g in groups], style="bold")
    table.add_row("mean AUC", *[f"{100 * g['mean_auc']:.1f}" if np.isfinite(g["mean_auc"]) else "-" for g in groups])
    table.add_row("lr", *[f"{g['lr']:g}" for g in groups])
    table.add_row("seeds done", *[f"{len(g['seeds'])}/{len(args.seed_list)}" for g in groups])
    if any(g.get("diverged") for g in groups):
        table.add_row("diverged", *[str(g.get("diverged", 0)) for g in groups])
    table.add_row("trainable", *[_count(g["trainable"]) for g in groups])
    table.add_row("trainable %", *[f"{100 * g['trainable'] / g['total_parameters']:.1f}" for g in groups])
    table.add_row("min / seed", *[f"{g['wall_s_per_seed'] / 60:.1f}" for g in groups])
    table.add_row("s / step", *[f"{g['median_step_s']:.2f}" if g["median_step_s"] is not None else "-" for g in groups])
    return table


def lr_table(summary: dict[str, Any]):
    from rich.table import Table

    table = Table(title="Learning-rate grid: mean F1 % (validation chooses, test reported)")
    for name in ("method", "lr", "validation F1", "test F1", "chosen"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for g in summary["groups"]:
        mark = "*" if summary["chosen"][g["method"]][str(g["fraction"])] == g["lr"] else ""
        table.add_row(g["method"], f"{g['lr']:g}", f"{100 * g['val_mean_f1']:.1f}", _cell(g["mean_f1"], g["mean_f1_std"]), mark)
    return table


def efficiency_table(summary: dict[str, Any], args: argparse.Namespace, setting: str):
    from rich.table import Table

    title = "Data efficiency (issue 5): test mean F1 % by share of training subjects" + (" [QUICK: pipeline check only]" if args.quick else "")
    table = Table(title=title, caption=setting)
    table.add_column("training subjects")
    methods = list(dict.fromkeys(g["method"] for g in summary["groups"]))
    for method in methods:
        table.add_column(f"{method} F1", justify="right")
        table.add_column(f"{method} AUC", justify="right")
    table.add_column("seeds done", justify="right")
    fractions = list(dict.fromkeys(g["fraction"] for g in summary["groups"]))
    for fraction in fractions:
        chosen = chosen_groups(summary, fraction)
        present = [chosen[m] for m in methods if m in chosen]
        subjects = f"{fraction:.0%} ({present[0]['train_subjects']:.1f} per fold)" if present else f"{fraction:.0%}"
        cells = []
        for method in methods:
            g = chosen.get(method)
            cells += ["-", "-"] if g is None else [_cell(g["mean_f1"], g["mean_f1_std"]), f"{100 * g['mean_auc']:.1f}"]
        done = " / ".join(f"{len(chosen[m]['seeds']) if m in chosen else 0}/{len(args.seed_list)}" for m in methods)
        table.add_row(subjects, *cells, done)
    return table


def print_report(figures: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from aucli.console import console

    summary = figures["summary"]
    corpus = corpus_args(args)
    setting = (f"mean ± std over the finished seeds (of {len(args.seed_list)}) of the 3-fold mean; {args.steps} steps x {args.batch} faces per fold; "
               f"{corpus.subjects} subjects, {corpus.tasks} tasks x {corpus.frames} frames, 1 frame in {args.every} stored "
               f"({figures['data']['faces']} faces)")  # fmt: skip
    if len(args.lr_list) > 1:
        console.print(lr_table(summary))
    if args.data_efficiency:
        console.print(efficiency_table(summary, args, setting))
    else:
        console.print(methods_table(summary, figures["au_names"], args, setting))
        result = figures.get("verdict")
        if result is not None:
            state = "no verdict: --quick checks the pipeline only" if args.quick else "met" if result["met"] else "NOT met"
            line = f"AUFormer - best of the PEFT baselines ({result['best_baseline']}) = {result['gap']:+.3f} mean F1 (goal >= 0: {state})"
            if "full_over_auformer_parameters" in result:
                line += f"; full trains {result['full_over_auformer_parameters']:.1f}x AUFormer's parameters"
            console.print(line + ".")
    estimate = figures.get("cpu_estimate_h")
    if estimate:
        defaults = parse_args(["--data-efficiency"] if args.data_efficiency else [])
        parts = ", ".join(f"{m} {h:.1f} h" for m, h in estimate.items())
        where = f"{args.threads} thread(s)" if args.device == "cpu" else f"{args.device}, {args.precision}"
        console.print(f"At the step times measured here ({where}, batch {args.batch}), the default grid "
                      f"({defaults.steps} steps x 3 folds x {len(defaults.seed_list)} seeds x {len(defaults.fraction_list)} fraction(s) "
                      f"per method, batch {defaults.batch}) needs in training steps alone: {parts}; total {sum(estimate.values()):.1f} h.")  # fmt: skip
    console.print(f"Command: {command}")


# ------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    args = parse_args(argv)
    argv = list(argv) if argv is not None else sys.argv[1:]
    command = " ".join(["python", "bench/method_comparison.py", *(shlex.quote(a) for a in argv)])
    print(f"Command: {command}", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = corpus_args(args)
    store, data = learning.make_store(corpus)
    if args.store_only:
        print(json.dumps(data), flush=True)
        return {"data": data}
    runs = run_grid(corpus, store, data["faces"])
    for run in runs:
        if run["status"] != "done":
            print(f"{run['method']}, lr {run['lr']:g}, {run['fraction']:.0%}, seed {run['seed']}: {run['status']} ({run['reason']})",
                  file=sys.stderr, flush=True)  # fmt: skip
    summary = summarise(runs)
    defaults = parse_args(["--data-efficiency"] if args.data_efficiency else [])
    figures: dict[str, Any] = {
        "command": command, "quick": args.quick, "mode": "data_efficiency" if args.data_efficiency else "methods", "data": data,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")}, "au_names": next((r["au_names"] for r in runs if r["status"] == "done"), []),
        "runs": runs, "summary": summary, "verdict": None if args.data_efficiency else verdict(summary),
        "cpu_estimate_h": cpu_estimate(summary, defaults, defaults.method_list, len(defaults.fraction_list)),
    }  # fmt: skip
    print_report(figures, args, command)
    if args.json:
        from aucli.fileio import atomic_write_json

        atomic_write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
