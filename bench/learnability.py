"""Learnability check of the synthetic world (issue 4): are AUs learnable on the synthetic-world backbone?

On a synthetic corpus (``aucli synth``: BP4D layout, 41 subjects as in BP4D, on its official
3-fold partitions of 14, 14 and 13 subjects, 8 tasks of 250 frames at 224 px) put into a store the way a user does it
(CenterFace detection and alignment, every 5th frame, label set ``synth_clean``), three methods
are trained on this CPU for the same fixed budget of optimiser steps, on every fold, for each seed:

- ``AUFormer, synthface``: AUFormer (recipes/synthetic.yaml) on the backbone pretrained by
  ``aucli pretrain`` and shipped in the package (``embedded:synthface``);
- ``linear, synthface``: a linear probe (``train.method linear``) on the same frozen backbone;
- ``AUFormer, random``: AUFormer on a random-init backbone of the same architecture.

The table gives per-AU test F1 (thresholds fitted on validation subjects) as the mean over seeds
of each seed's 3-fold mean, with the standard deviation over seeds; the last row is the mean F1
over AUs and folds. Goal (issue 4): AUFormer on synthface at least 0.10 mean F1 ahead of both others.

Run:
    python bench/learnability.py                 (the full check: 27 fold runs of 600 steps x 32 faces; on 2 CPU
                                                  cores seed 0 took 2 h 38 min (AUFormer 75, linear 13, random
                                                  backbone 70): about 8 h; on one H100, 11 min with the store)
    python bench/learnability.py --quick         (end-to-end in minutes: 8 subjects, 1 seed, tiny budget;
                                                  its figures say nothing about learnability)
    python bench/learnability.py --json out.json (also write every figure as JSON)
    python bench/learnability.py --device cuda --loader-workers 4
                                                 (the same check, fp32 (TF32 matmuls) on a GPU; its runs are kept
                                                  apart from the CPU check's, under steps600-batch32-cuda)
    python bench/learnability.py --store-only --render-workers 14     (render and store the corpus, then stop)
    python bench/learnability.py --methods random --seeds 1 &         (part of the grid per process: runs are
    python bench/learnability.py --methods auformer --seeds 2 &        locked, so processes never train one twice)
    python bench/learnability.py --report-only   (the table of the finished runs, training nothing)
    python bench/learnability.py -o optim.lr=5e-3 -o optim.moke_up_lr_scale=0.25
                                                 (a recipe variant for every method; runs kept apart under -o<hash>)

Corpora, stores and runs are kept under ``--work`` (default ``bench/out/learnability``); a rerun
reuses them and resumes unfinished training runs, so the command can be stopped and run again. A
run whose loss turns NaN (the trainer's guard) is recorded as diverged (``diverged.json`` in its
folder), counted in the table and left out of its means; a rerun does not train it again (delete
the file to retry).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib.learning import (
    METHODS,
    backbone,
    make_store,
    parse_args,
    recipe_for,
    run_folder,
    train_or_report,
    weights_tag,
)

#: The check's goal: AUFormer on the pretrained backbone at least this far ahead (mean F1) of both others.
GOAL = 0.10


def run_all(args: argparse.Namespace, store: Path, faces: int) -> dict[str, Any]:
    weights_path, model_config = backbone(args.weights)
    tag = weights_tag(weights_path)
    results: dict[str, Any] = {}
    for label, method, source in METHODS:
        if label not in args.method_labels:
            continue
        per_seed = []
        for seed in args.seed_list:
            folder = run_folder(args, store, method, "random" if source == "random" else tag, seed)
            recipe = recipe_for(args, method, source, weights_path, model_config, faces, seed)
            print(f"== {label}, seed {seed}: {folder}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            outcome = train_or_report(store, recipe, folder, report_only=args.report_only)
            entry: dict[str, Any] = {"seed": seed, "status": outcome.status, "reason": outcome.reason, "folder": str(folder)}
            if outcome.status == "done":
                run = outcome.run
                entry.update(f1=run.f1_matrix().tolist(), mean_f1=run.mean_f1(), seconds=round(time.perf_counter() - started, 1),
                             wall_s=float(sum(f.wall_time_s for f in run.folds)),
                             mean_auc=float(np.nanmean([f.test.mean_auc for f in run.folds])))  # fmt: skip
            per_seed.append(entry)
        results[label] = {"method": method, "backbone": source, "runs": per_seed}
    return {"au_names": list(recipe.model.au_names), "methods": results, "weights": weights_path, "weights_tag": tag,
            "model_config": model_config}  # fmt: skip


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    """Per method, over its finished runs: per-AU F1 (mean, std over seeds of the fold means) and mean F1 (mean, std over seeds).

    Diverged and missing runs are counted, never averaged in.
    """
    n_aus = len(figures["au_names"])
    out = {}
    for label, entry in figures["methods"].items():
        done = [r for r in entry["runs"] if r["status"] == "done"]
        counts = {status: sum(r["status"] == status for r in entry["runs"]) for status in ("done", "diverged", "missing")}
        if not done:
            out[label] = {"f1_mean": [float("nan")] * n_aus, "f1_std": [float("nan")] * n_aus, "mean_f1": float("nan"),
                          "mean_f1_std": float("nan"), "mean_auc": float("nan"), "wall_s": 0.0, **counts}  # fmt: skip
            continue
        per_au = np.stack([np.nanmean(np.asarray(r["f1"], dtype=float), axis=0) for r in done])  # (seeds, aus)
        means = np.asarray([r["mean_f1"] for r in done])
        out[label] = {"f1_mean": np.nanmean(per_au, axis=0).tolist(), "f1_std": np.nanstd(per_au, axis=0).tolist(),
                      "mean_f1": float(np.mean(means)), "mean_f1_std": float(np.std(means)),
                      "mean_auc": float(np.mean([r["mean_auc"] for r in done])), "wall_s": float(sum(r["wall_s"] for r in done)),
                      **counts}  # fmt: skip
    return out


def print_table(figures: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from rich.table import Table

    from aucli.console import console

    seeds = len(args.seed_list)
    title = "Learnability check (issue 4): test F1 % per AU, 3-fold subject-independent" + (
        " [QUICK: pipeline check only]" if args.quick else ""
    )
    device = args.device if args.device == "cpu" else f"{args.device} ({args.precision})"
    caption = (f"mean ± std over {seeds} seed(s) of the 3-fold mean; {args.steps} steps x {args.batch} faces per fold on {device}; "
               f"{args.subjects} subjects, {args.tasks} tasks x {args.frames} frames, 1 frame in {args.every} stored")  # fmt: skip
    table = Table(title=title, caption=caption)
    table.add_column("AU")
    for label in summary:
        table.add_column(label, justify="right")

    def cell(mean: float, std: float) -> str:
        return "-" if not np.isfinite(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    for i, au in enumerate(figures["au_names"]):
        table.add_row(au, *[cell(s["f1_mean"][i], s["f1_std"][i]) for s in summary.values()])
    table.add_section()
    table.add_row("mean F1", *[cell(s["mean_f1"], s["mean_f1_std"]) for s in summary.values()], style="bold")
    table.add_row("mean AUC", *[f"{100 * s['mean_auc']:.1f}" if np.isfinite(s["mean_auc"]) else "-" for s in summary.values()])
    table.add_row("seeds done", *[f"{s['done']}/{seeds}" for s in summary.values()])
    if any(s["diverged"] or s["missing"] for s in summary.values()):
        table.add_row("diverged / missing", *[f"{s['diverged']} / {s['missing']}" for s in summary.values()])
    table.add_row("train+eval time", *[f"{s['wall_s'] / 60:.1f} min" for s in summary.values()])
    console.print(table)
    for label, entry in figures["methods"].items():
        for r in entry["runs"]:
            if r["status"] != "done":
                console.print(f"{label}, seed {r['seed']}: {r['status']} ({r['reason']})", highlight=False)
    ours = summary.get("AUFormer, synthface", {}).get("mean_f1", float("nan"))
    others = [summary[k]["mean_f1"] for k in ("linear, synthface", "AUFormer, random") if k in summary]
    if np.isfinite(ours) and others and all(np.isfinite(others)):
        gap = ours - max(others)
        complete = all(s["done"] == seeds for s in summary.values()) and len(summary) == len(METHODS)
        verdict = ("no verdict: --quick checks the pipeline only" if args.quick else "no verdict: runs are missing or diverged" if not complete
                   else "met" if gap >= GOAL else "NOT met")  # fmt: skip
        console.print(f"AUFormer on synthface leads the better of the others by {gap:+.3f} mean F1 (goal +{GOAL:.2f}: {verdict}).")
    console.print(f"Command: {command}")


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    command = " ".join(
        ["python", "bench/learnability.py", *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))]
    )
    print(f"Command: {command}", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    store, data = make_store(args)
    if args.store_only:
        print(json.dumps(data), flush=True)
        return
    figures = run_all(args, store, data["faces"])
    summary = summarise(figures)
    print_table(figures, summary, args, command)
    payload = {"command": command, "quick": args.quick, "data": data, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")},
               "figures": figures, "summary": summary}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
