"""Threshold rules re-scored on kept runs: how much of a run's test F1 do its thresholds decide?

For every fold of the given run folders, the validation and test logits of its kept epoch
(``fold<k>/best_predictions.safetensors``) are read back. Per-AU thresholds are then chosen on the
validation subjects by each rule and applied to the test subjects. The figure is the test mean F1,
with counts summed over the fold, computed by the trainer's own ``aucli.metrics.evaluate``. Rules:

  fitted          the trainer's rule: the F1-optimal cut on validation (``aucli.metrics.fit_thresholds``)
  0.5             a fixed cut
  present         every AU predicted present (a trivial baseline, no model needed)
  within EPS      the lowest cut whose validation F1 is within EPS of the best one (leans to recall)
  1-SE            as ``within``, with EPS one standard error of the best validation F1 for that AU,
                  sqrt(F1 (1 - F1) / positives): wide for rare AUs, narrow where positives abound
  test-optimal    the F1-optimal cut on the test subjects themselves: an upper bound, never usable

Runs are grouped by budget and method (the run folder's two parents, e.g.
``steps600-batch32-cuda/auformer-pretrained-b9027047``), and
the table gives each group's mean over its folds and seeds. As a self-check, ``fitted`` must
reproduce the test mean F1 that the trainer stored in ``fold<k>/result.json``; a mismatch is
printed. Labels come from the store (``--store``; default: the path each run recorded). It must be
that very store: the logits index its rows, and a rebuild of it on another machine can detect a few
faces more or fewer (CenterFace under another onnxruntime build), so a fold whose test subjects'
rows differ stops the script with a plain message rather than scoring misaligned labels.

    python bench/threshold_rules.py bench/out/learnability/runs/store-s41-t8-f250-every5-centerface/steps600-batch32/*/seed*
    python bench/threshold_rules.py RUN [RUN ...] --store STORE.h5 --eps 0.02,0.05 --json rules.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aucli.metrics import f1_curve  # the trainer's F1 over every cut (fit_thresholds' own)


def lowest_cut_within(probs: np.ndarray, labels: np.ndarray, eps: float | Callable[[float, int], float]) -> np.ndarray:
    """Per AU, the lowest cut whose F1 on ``(probs, labels)`` is within ``eps`` of the best F1.

    ``eps`` is a number, or a function of (best F1, number of positives). An AU without both a
    positive and a negative known label keeps 0.5, as ``fit_thresholds`` does.
    """
    thresholds = np.full(labels.shape[1], 0.5)
    for i in range(labels.shape[1]):
        known = (labels[:, i] == 0) | (labels[:, i] == 1)
        p, y = probs[known, i], labels[known, i] == 1
        if y.sum() == 0 or y.sum() == y.size:
            continue
        cuts, f1 = f1_curve(p, y)
        margin = eps(float(f1.max()), int(y.sum())) if callable(eps) else eps
        thresholds[i] = cuts[np.flatnonzero(f1 >= f1.max() - margin)[-1]]  # the last of the curve: the lowest cut
    return thresholds


def one_standard_error(best_f1: float, positives: int) -> float:
    """The standard error of an F1 near ``best_f1`` measured on ``positives`` positive labels."""
    return float(np.sqrt(best_f1 * (1.0 - best_f1) / max(positives, 1)))


def rules(eps_values: Sequence[float]) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]]:
    """Rule name -> ``f(val_probs, val_labels, test_probs, test_labels) -> thresholds``."""
    from aucli.metrics import fit_thresholds

    out: dict[str, Callable[..., np.ndarray]] = {
        "fitted": lambda pv, yv, pt, yt: fit_thresholds(pv, yv),
        "0.5": lambda pv, yv, pt, yt: np.full(yv.shape[1], 0.5),
        "present": lambda pv, yv, pt, yt: np.zeros(yv.shape[1]),
    }
    for eps in eps_values:
        out[f"within {eps:g}"] = lambda pv, yv, pt, yt, eps=eps: lowest_cut_within(pv, yv, eps)
    out["1-SE"] = lambda pv, yv, pt, yt: lowest_cut_within(pv, yv, one_standard_error)
    out["test-optimal"] = lambda pv, yv, pt, yt: fit_thresholds(pt, yt)
    return out


def fold_predictions(run: Path, store: Path | None) -> list[dict[str, Any]]:
    """Every finished fold of ``run``: its validation and test probabilities and labels."""
    import yaml
    from safetensors.numpy import load_file

    from aucli.config import Recipe
    from aucli.engine.evaluate import sigmoid
    from aucli.engine.corpus import prepare_corpus

    recipe = Recipe.from_dict(yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8")))
    store = store or Path(json.loads((run / "run.json").read_text(encoding="utf-8"))["store"])
    corpus = prepare_corpus(store, recipe)
    labels = np.asarray(corpus.labels)
    folds = []
    for path in sorted(run.glob("fold*/best_predictions.safetensors")):
        tensors = load_file(str(path))
        split_file = path.parent / "split.json"
        if split_file.is_file():  # the logits index the store's rows: another build of it (other detections) misaligns them
            test_subjects = json.loads(split_file.read_text(encoding="utf-8"))["test"]
            expected = np.flatnonzero(np.isin(corpus.subjects, test_subjects))
            if not np.array_equal(np.sort(tensors["test_rows"]), expected):
                raise SystemExit(
                    f"{store} is not the store {run} was trained on: {path.parent.name}'s test subjects have "
                    f"{len(expected)} faces there, against {len(tensors['test_rows'])} rows of logits; pass that run's store with --store"
                )
        result = json.loads((path.parent / "result.json").read_text(encoding="utf-8")) if (path.parent / "result.json").is_file() else {}
        folds.append({
            "fold": path.parent.name, "au_names": list(recipe.model.au_names),
            "val_probs": sigmoid(tensors["validation_logits"]), "val_labels": labels[tensors["validation_rows"]],
            "test_probs": sigmoid(tensors["test_logits"]), "test_labels": labels[tensors["test_rows"]],
            "stored_test_f1": (result.get("test") or {}).get("mean_f1"),
        })  # fmt: skip
    return folds


def score_run(run: Path, store: Path | None, eps_values: Sequence[float]) -> list[dict[str, Any]]:
    """Per fold of ``run``: test mean F1 under every rule."""
    from aucli.metrics import evaluate

    scored = []
    for fold in fold_predictions(run, store):
        figures = {}
        for name, rule in rules(eps_values).items():
            thresholds = rule(fold["val_probs"], fold["val_labels"], fold["test_probs"], fold["test_labels"])
            figures[name] = evaluate(fold["test_probs"], fold["test_labels"], au_names=fold["au_names"], thresholds=thresholds).mean_f1
        stored = fold["stored_test_f1"]
        if stored is not None and abs(stored - figures["fitted"]) > 1e-6:
            print(f"warning: {run}/{fold['fold']}: re-scored fitted F1 {figures['fitted']:.4f} != stored {stored:.4f}", file=sys.stderr)
        scored.append({"run": str(run), "fold": fold["fold"], "f1": figures})
    return scored


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from aucli.console import console

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with fold<k>/best_predictions.safetensors)")
    parser.add_argument("--store", type=Path, help="the corpus store of the runs (default: the path each run recorded)")
    parser.add_argument("--eps", default="0.02,0.05", help="margins of the 'within' rules (comma-separated)")
    parser.add_argument("--json", type=Path, help="also write every fold's figures to this JSON file")
    args = parser.parse_args(argv)
    eps_values = [float(v) for v in args.eps.split(",") if v.strip()]
    scored = [row for run in args.runs if (run / "recipe.yaml").is_file() for row in score_run(run, args.store, eps_values)]
    if not scored:
        raise SystemExit("no fold predictions found under the given run folders (fold<k>/best_predictions.safetensors)")
    names = list(scored[0]["f1"])
    budgets = {Path(row["run"]).parent.parent.name for row in scored}
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in scored:
        parent = Path(row["run"]).parent
        groups.setdefault(f"{parent.parent.name}/{parent.name}", []).append(row)
    table = Table(title="Test mean F1 % by threshold rule (thresholds chosen on each fold's validation subjects)",
                  caption=f"runs under {next(iter(budgets))}" if len(budgets) == 1 else None)  # fmt: skip
    table.add_column("runs (folds)", overflow="fold", min_width=18)
    for name in names:
        table.add_column(name.replace(" ", "\n").replace("test-", "test-\n"), justify="right", no_wrap=True)
    summary = {}
    for group, rows in groups.items():
        means = {name: float(np.mean([r["f1"][name] for r in rows])) for name in names}
        summary[group] = {"folds": len(rows), **means}
        label = group.split("/", 1)[1] if len(budgets) == 1 else group
        table.add_row(f"{label} ({len(rows)})", *[f"{100 * means[n]:.1f}" for n in names])
    overall = {name: float(np.mean([r["f1"][name] for r in scored])) for name in names}
    table.add_section()
    table.add_row(f"all ({len(scored)})", *[f"{100 * overall[n]:.1f}" for n in names], style="bold")
    wide = console if console.is_terminal else Console(width=110)  # (a pipe gets 80 columns: too narrow for 7 rules)
    wide.print(table)
    payload = {"folds": scored, "groups": summary, "overall": overall}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return payload


if __name__ == "__main__":
    main()
