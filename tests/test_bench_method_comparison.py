"""bench/method_comparison.py: recipes per method, run folders, locks, step timing, summaries and tables."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchlib import learning
import method_comparison
from engine_fixtures import make_toy_store, toy_recipe

from aucli.errors import UsageError


def test_every_method_gets_the_same_budget_and_the_default_is_learnabilitys_recipe(tmp_path):
    args = method_comparison.parse_args(["--work", str(tmp_path)])
    weights, model_config = learning.backbone(args.weights)
    recipes = {m: method_comparison.method_recipe(args, m, weights, model_config, 6000, seed=1) for m in method_comparison.METHODS}
    for method, recipe in recipes.items():
        assert recipe.train.method == method
        assert (recipe.optim.max_steps, recipe.data.batch_size, recipe.optim.lr) == (600, 32, method_comparison.recipe_lr())
        assert recipe.optim.warmup_epochs == recipes["auformer"].optim.warmup_epochs
        assert recipe.model.backbone_weights == weights and recipe.train.train_fraction == 1.0 and recipe.train.seed == 1
    # the recipe's learning rate and all subjects: learnability.py's recipe and run folder, so the two scripts share runs
    shared = learning.recipe_for(args, "linear", "pretrained", weights, model_config, 6000, 1)
    assert recipes["linear"].to_dict() == shared.to_dict()
    store = tmp_path / "store-x.h5"
    tag = learning.weights_tag(weights)  # the backbone file's sha256, as learnability.py names its runs
    assert tag == "pretrained-" + json.loads(Path(weights).with_suffix(".json").read_text())["weights"]["sha256"][:8]
    assert method_comparison.run_folder(tmp_path, store, args, "linear", 1, lr=None, fraction=1.0, weights=weights) == (
        tmp_path / "runs" / "store-x" / "steps600-batch32" / f"linear-{tag}" / "seed1"
    )
    assert learning.run_folder(
        learning.parse_args(["--work", str(tmp_path)]), store, "linear", tag, 1
    ) == method_comparison.run_folder(tmp_path, store, args, "linear", 1, lr=method_comparison.recipe_lr(), fraction=1.0, weights=weights)
    assert method_comparison.run_folder(tmp_path, store, args, "full", 0, lr=3e-3, fraction=0.1, weights=weights).parent.name == (
        f"full-{tag}-lr0.003-frac0.1"
    )

    small = method_comparison.method_recipe(args, "full", weights, model_config, 6000, seed=0, lr=3e-3, fraction=0.1)
    assert (small.optim.lr, small.train.train_fraction, small.optim.max_steps) == (3e-3, 0.1, 600)
    # warm-up stays ~10% of the 600 steps: ~2/3 x 85% of 600 faces (10% of 6,000) / 32 = 10.6 batches per epoch
    assert small.optim.warmup_epochs * (600 * (2 / 3) * 0.85 / 32) == pytest.approx(60, rel=1e-3)


def test_arguments_select_part_of_the_grid():
    args = method_comparison.parse_args(["--methods", "full,lora", "--seeds", "2", "--lr", "1e-3,3e-3"])
    assert args.method_list == ["lora", "full"] and args.seed_list == [2] and args.lr_list == [1e-3, 3e-3]
    assert args.fraction_list == [1.0]
    efficiency = method_comparison.parse_args(["--data-efficiency"])
    assert efficiency.method_list == ["auformer", "full"] and efficiency.fraction_list == [0.1, 0.3, 1.0]
    corpus = method_comparison.corpus_args(efficiency)
    assert (corpus.subjects, corpus.tasks, corpus.frames) == (60, 8, 75)
    assert method_comparison.parse_args(["--data-efficiency", "--methods", "lora"]).method_list == ["lora"]
    with pytest.raises(SystemExit, match="subset of auformer,linear,adaptformer,lora,full"):
        method_comparison.parse_args(["--methods", "lora,prompt"])


def test_step_timing_leaves_out_fold_starts():
    marks = [(1, 0.0), (2, 1.0), (3, 2.5), (1, 30.0), (2, 31.0), (3, 32.0)]  # fold 2 starts after a 27.5 s evaluation
    timing = method_comparison.step_timing(marks)
    assert timing["timed_steps"] == 4 and timing["median_step_s"] == 1.0 and timing["mean_step_s"] == pytest.approx(1.125)
    assert method_comparison.step_timing([(1, 0.0)]) is None


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_ones(tmp_path):
    folder = tmp_path / "runs" / "seed0"
    lock = tmp_path / "runs" / "seed0.lock"
    with method_comparison.run_lock(folder):
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(UsageError, match=r"process \d+ is training"), method_comparison.run_lock(folder):
            pass
    assert not lock.exists()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    lock.write_text(finished.stdout.strip())
    with method_comparison.run_lock(folder):
        assert lock.read_text() != finished.stdout.strip()


def _run(method, lr, seed, f1, val, *, auc=0.7, trainable=1000, total=10000, fraction=1.0, step=None):
    return {"method": method, "lr": lr, "fraction": fraction, "seed": seed, "au_names": ["AU1", "AU2"], "f1": f1,
            "mean_f1": float(np.mean([np.nanmean(row) for row in f1])), "mean_auc": auc, "val_mean_f1": val, "trainable": trainable,
            "total_parameters": total, "wall_s": 600.0, "train_subjects": [10, 10, 11],
            "timing": {"median_step_s": step, "timed_steps": 50} if step else None}  # fmt: skip


def test_summary_chooses_the_learning_rate_on_validation_and_reports_its_test_figures():
    runs = [
        # auformer: lr 1e-3 wins on validation (0.50 > 0.40) although 3e-3 is better on test
        _run("auformer", 1e-3, 0, [[0.4, 0.2], [0.6, np.nan], [0.5, 0.3]], 0.50, step=2.0),
        _run("auformer", 1e-3, 1, [[0.6, 0.4], [0.6, 0.2], [0.5, 0.3]], 0.50, step=1.0),
        _run("auformer", 3e-3, 0, [[0.9, 0.9], [0.9, 0.9], [0.9, 0.9]], 0.40),
        _run("auformer", 3e-3, 1, [[0.9, 0.9], [0.9, 0.9], [0.9, 0.9]], 0.40),
        _run("lora", 1e-3, 0, [[0.3, 0.3], [0.3, 0.3], [0.3, 0.3]], 0.2, trainable=3000),
        _run("full", 1e-3, 0, [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], 0.6, trainable=50000, total=50000),
    ]
    summary = method_comparison.summarise(runs)
    assert summary["chosen"] == {"auformer": {"1.0": 1e-3}, "lora": {"1.0": 1e-3}, "full": {"1.0": 1e-3}}
    auformer = method_comparison.chosen_groups(summary)["auformer"]
    # seed 0 per AU: AU1 (0.4+0.6+0.5)/3 = 0.5, AU2 (0.2+0.3)/2 = 0.25 (an undefined fold is left out); seed 1: 0.5667, 0.3
    assert auformer["f1_mean"] == pytest.approx([(0.5 + 1.7 / 3) / 2, 0.275])
    assert auformer["f1_std"] == pytest.approx([abs(0.5 - 1.7 / 3) / 2, 0.025])
    seed0, seed1 = (0.3 + 0.6 + 0.4) / 3, (0.5 + 0.4 + 0.4) / 3
    assert auformer["mean_f1"] == pytest.approx((seed0 + seed1) / 2) and auformer["mean_f1_std"] == pytest.approx(abs(seed0 - seed1) / 2)
    assert auformer["median_step_s"] == 1.5 and auformer["wall_s_per_seed"] == 600.0

    result = method_comparison.verdict(summary)
    assert result["best_baseline"] == "lora" and result["gap"] == pytest.approx((seed0 + seed1) / 2 - 0.3) and result["met"]
    assert result["full_over_auformer_parameters"] == 50.0

    defaults = method_comparison.parse_args([])
    assert method_comparison.cpu_estimate(summary, defaults, method_comparison.METHODS, 1) == {"auformer": pytest.approx(1.5 * 600 * 3 * 3 / 3600)}


def _body(table) -> list[list[str]]:
    """A rendered rich table's body rows, as lists of cells."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return [[c.strip() for c in line.split("│")[1:-1]] for line in out.getvalue().splitlines() if line.startswith("│")]


def _rows(table) -> dict[str, list[str]]:
    """First cell -> the other cells."""
    return {row[0]: row[1:] for row in _body(table)}


def test_tables_show_the_figures_of_the_runs():
    runs = [_run("auformer", 1e-3, 0, [[0.5, 0.25]] * 3, 0.5, step=1.25), _run("linear", 1e-3, 0, [[0.2, 0.1]] * 3, 0.3, trainable=24)]
    args = method_comparison.parse_args(["--seeds", "0"])
    rows = _rows(method_comparison.methods_table(method_comparison.summarise(runs), ["AU1", "AU2"], args, "setting"))
    assert rows["AU1"] == ["50.0 ± 0.0", "20.0 ± 0.0"] and rows["AU2"] == ["25.0 ± 0.0", "10.0 ± 0.0"]
    assert rows["mean F1"] == ["37.5 ± 0.0", "15.0 ± 0.0"] and rows["mean AUC"] == ["70.0", "70.0"]
    assert rows["trainable"] == ["1.0 k", "24"] and rows["trainable %"] == ["10.0", "0.2"]
    assert rows["min / seed"] == ["10.0", "10.0"] and rows["s / step"] == ["1.25", "-"] and rows["lr"] == ["0.001", "0.001"]

    efficiency = [_run(m, 1e-3, s, [[f * k, f * k]] * 3, 0.5, fraction=f) for m, k in (("auformer", 1.0), ("full", 0.5))
                  for f in (0.1, 1.0) for s in (0, 1)]  # fmt: skip
    three_seeds = method_comparison.parse_args(["--seeds", "0,1,2"])  # seed 2 unfinished: the table says so
    rows = _rows(method_comparison.efficiency_table(method_comparison.summarise(efficiency), three_seeds, "setting"))
    assert rows["10% (10.3 per fold)"] == ["10.0 ± 0.0", "70.0", "5.0 ± 0.0", "70.0", "2/3 / 2/3"]
    assert rows["100% (10.3 per fold)"] == ["100.0 ± 0.0", "70.0", "50.0 ± 0.0", "70.0", "2/3 / 2/3"]

    grid = [_run("lora", lr, 0, [[v, v]] * 3, val) for lr, v, val in ((1e-3, 0.4, 0.5), (3e-3, 0.6, 0.3))]
    assert _body(method_comparison.lr_table(method_comparison.summarise(grid))) == [["lora", "0.001", "50.0", "40.0 ± 0.0", "*"], ["lora", "0.003", "30.0", "60.0 ± 0.0", ""]]


def test_run_one_trains_then_reuses_a_finished_run_with_its_step_timing(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=6)
    recipe = toy_recipe(**{"optim.epochs": 1, "optim.max_steps": 3, "data.batch_size": 4, "train.method": "linear", "train.fold": "all"})
    folder = tmp_path / "runs" / "linear" / "seed0"
    first = method_comparison.run_one(store, recipe, folder, threads=1, show_progress=False)
    assert first["steps_this_run"] == 9 and first["timing"]["timed_steps"] == 6  # 3 folds x 3 steps, the first of each untimed
    assert np.asarray(first["f1"]).shape == (3, 4) and first["trainable"] == 32 * 4 + 4 < first["total_parameters"]
    assert not (tmp_path / "runs" / "linear" / "seed0.lock").exists()
    again = method_comparison.run_one(store, recipe, folder, threads=1, show_progress=False)
    assert again["steps_this_run"] == 0 and again["timing"] == first["timing"] and again["f1"] == first["f1"]
