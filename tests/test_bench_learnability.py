"""bench/learnability.py: the check's recipe and run folders (CPU by default, a GPU budget kept apart)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchlib import learning
import learnability
from engine_fixtures import make_toy_store, toy_recipe


def test_the_check_trains_on_the_cpu_unless_told_and_keeps_gpu_runs_apart(tmp_path):
    weights, model_config = learning.backbone("embedded:synthface")
    store = tmp_path / "store-x.h5"

    cpu = learning.parse_args(["--work", str(tmp_path)])
    recipe = learning.recipe_for(cpu, "auformer", "pretrained", weights, model_config, 6000, 2)
    assert (recipe.train.device, recipe.optim.max_steps, recipe.data.batch_size, recipe.train.seed) == ("cpu", 600, 32, 2)
    assert recipe.model.backbone_weights == weights
    assert learning.run_folder(cpu, store, "auformer", "pretrained", 2) == (
        tmp_path / "runs" / "store-x" / "steps600-batch32" / "auformer-pretrained" / "seed2"
    )

    gpu = learning.parse_args(["--work", str(tmp_path), "--device", "cuda:0", "--steps", "3000"])
    recipe = learning.recipe_for(gpu, "auformer", "random", weights, model_config, 6000, 0)
    assert (recipe.train.device, recipe.optim.max_steps, recipe.model.backbone_weights) == ("cuda:0", 3000, "random")
    assert learning.run_folder(gpu, store, "auformer", "random", 0).parent.parent.name == "steps3000-batch32-cuda"


def test_methods_and_precision_select_part_of_the_grid_and_name_the_runs(tmp_path):
    args = learning.parse_args(["--methods", "random,auformer", "--seeds", "1"])
    assert args.method_labels == ["AUFormer, synthface", "AUFormer, random"] and args.seed_list == [1]
    with pytest.raises(SystemExit):
        learning.parse_args(["--methods", "auformer,lora"])
    assert learning.budget_name(learning.parse_args([])) == "steps600-batch32"
    assert learning.budget_name(learning.parse_args(["--device", "cuda"])) == "steps600-batch32-cuda"
    bf16 = learning.parse_args(["--device", "cuda", "--precision", "bf16"])
    assert learning.budget_name(bf16) == "steps600-batch32-cuda-bf16"
    weights, model_config = learning.backbone("embedded:synthface")
    assert learning.recipe_for(bf16, "linear", "pretrained", weights, model_config, 6000, 0).train.precision == "bf16"
    # on the CPU the recipe keeps its own precision (auto), so the CPU check's runs keep resuming
    cpu = learning.recipe_for(learning.parse_args([]), "linear", "pretrained", weights, model_config, 6000, 0)
    assert cpu.train.precision == "auto"


def test_a_run_is_trained_once_read_back_without_training_and_a_diverged_run_is_recorded(tmp_path, monkeypatch):
    import aucli.engine
    from aucli.errors import TrainingDivergedError

    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=6)
    recipe = toy_recipe(**{"optim.epochs": 1, "optim.max_steps": 2, "data.batch_size": 4, "train.method": "linear", "train.fold": "all"})
    folder = tmp_path / "runs" / "linear" / "seed0"

    missing = learning.train_or_report(store, recipe, folder, report_only=True)
    assert missing.status == "missing" and missing.reason == "not started" and not folder.exists()

    done = learning.train_or_report(store, recipe, folder, show_progress=False)
    assert done.status == "done" and len(done.run.folds) == 3
    read_back = learning.finished_run(folder, recipe)  # from the files alone
    assert read_back.status == "done"
    assert np.array_equal(read_back.run.f1_matrix(), done.run.f1_matrix(), equal_nan=True)
    assert read_back.run.mean_f1() == pytest.approx(done.run.mean_f1(), nan_ok=True)
    other = toy_recipe(**{"optim.epochs": 1, "optim.max_steps": 3, "data.batch_size": 4, "train.method": "linear", "train.fold": "all"})
    assert learning.finished_run(folder, other).status == "missing" and "another recipe" in learning.finished_run(folder, other).reason

    calls = []

    def diverging_train(*args, **kwargs):
        calls.append(kwargs["out"])
        raise TrainingDivergedError("the training loss is nan at step 7")

    monkeypatch.setattr(aucli.engine, "train", diverging_train)
    second = tmp_path / "runs" / "linear" / "seed1"
    outcome = learning.train_or_report(store, recipe, second, show_progress=False)
    assert outcome.status == "diverged" and "nan at step 7" in outcome.reason and calls == [second]
    assert json.loads((second / learning.DIVERGED_FILE).read_text())["error"] == "the training loss is nan at step 7"
    assert not second.with_name("seed1.lock").exists()
    again = learning.train_or_report(store, recipe, second, show_progress=False)  # recorded: not trained again
    assert again.status == "diverged" and calls == [second]


def test_the_summary_and_table_count_diverged_and_missing_runs_and_average_only_finished_ones(capsys):
    def run(seed, status, f1=None):
        entry = {"seed": seed, "status": status, "reason": "" if status == "done" else f"{status} because", "folder": "x"}
        if status == "done":
            entry.update(f1=f1, mean_f1=float(np.mean(f1)), mean_auc=0.7, wall_s=60.0)
        return entry

    figures = {"au_names": ["AU1", "AU2"], "methods": {
        "AUFormer, synthface": {"runs": [run(0, "done", [[0.6, 0.4]] * 3), run(1, "diverged"), run(2, "done", [[0.8, 0.6]] * 3)]},
        "linear, synthface": {"runs": [run(0, "done", [[0.3, 0.3]] * 3), run(1, "done", [[0.3, 0.3]] * 3), run(2, "missing")]},
        "AUFormer, random": {"runs": [run(0, "missing"), run(1, "missing"), run(2, "missing")]},
    }}  # fmt: skip
    summary = learnability.summarise(figures)
    ours = summary["AUFormer, synthface"]
    assert ours["mean_f1"] == pytest.approx(0.6) and ours["mean_f1_std"] == pytest.approx(0.1)
    assert ours["f1_mean"] == pytest.approx([0.7, 0.5]) and (ours["done"], ours["diverged"], ours["missing"]) == (2, 1, 0)
    assert not np.isfinite(summary["AUFormer, random"]["mean_f1"]) and summary["AUFormer, random"]["missing"] == 3

    args = learning.parse_args([])
    learnability.print_table(figures, summary, args, "python bench/learnability.py")
    out = capsys.readouterr().out
    assert "2/3" in out and "0/3" in out and "AUFormer, synthface, seed 1: diverged (diverged because)" in out
    assert "leads the better" not in out  # the random row has no figure: no gap, no verdict


def test_a_finished_store_is_marked_and_then_reused_without_being_opened(tmp_path, monkeypatch):
    import aucli.preprocess

    args = learning.parse_args(["--work", str(tmp_path), "--subjects", "6", "--tasks", "1", "--frames", "10", "--every", "5",
                             "--detector", "none"])  # fmt: skip
    store, info = learning.make_store(args)
    marker = store.with_name(store.stem + ".done.json")
    assert store.is_file() and marker.is_file() and info["faces"] == 6 * 2 and info["failed_sources"] == 0
    assert json.loads(marker.read_text())["faces"] == info["faces"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a marked store is reused as it is")

    monkeypatch.setattr(aucli.preprocess, "run_preprocess", must_not_run)
    again, reused = learning.make_store(args)
    assert again == store and reused["reused"] and reused["faces"] == info["faces"]


def test_recipe_overrides_reach_every_method_and_keep_their_runs_apart(tmp_path):
    weights, model_config = learning.backbone("embedded:synthface")
    plain = learning.parse_args(["--device", "cuda"])
    variant = learning.parse_args(["--device", "cuda", "-o", "optim.lr=5e-3", "-o", "optim.moke_up_lr_scale=0.25"])
    swapped = learning.parse_args(["--device", "cuda", "-o", "optim.moke_up_lr_scale=0.25", "-o", "optim.lr=5e-3"])
    for method, source in (("auformer", "pretrained"), ("linear", "pretrained"), ("auformer", "random")):
        recipe = learning.recipe_for(variant, method, source, weights, model_config, 6000, 0)
        assert (recipe.optim.lr, recipe.optim.moke_up_lr_scale, recipe.optim.max_steps) == (5e-3, 0.25, 600)
        assert recipe.train.method == method
    assert learning.budget_name(plain) == "steps600-batch32-cuda"
    assert learning.budget_name(variant).startswith("steps600-batch32-cuda-o") and len(learning.budget_name(variant)) == len("steps600-batch32-cuda-o") + 8
    assert learning.budget_name(variant) == learning.budget_name(swapped)  # the order of the flags does not matter
