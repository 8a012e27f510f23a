"""``aucli train`` from the command line: a one-epoch run, its files, and users' mistakes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from engine_fixtures import TOY_AUS, make_toy_store, toy_override_args

from aucli.cli.main import cli
from aucli.engine.runs import load_tensors, read_json
from aucli.metrics import fit_thresholds


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("train_cli") / "toy.h5", subjects=6, frames=12)


@pytest.fixture(scope="module")
def smoke_run(toy_store, tmp_path_factory):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("runs") / "smoke"
    args = ["train", str(toy_store), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--seed", "1", "--quiet",
            *toy_override_args(), "--workers", "1"]  # one DataLoader process: the store is opened inside it
    result = CliRunner().invoke(cli, args)
    return result, out


def test_one_epoch_smoke_run_writes_the_run_folder(smoke_run):
    result, out = smoke_run
    assert result.exit_code == 0, result.output
    assert "Test F1 (%) per AU" in result.output and "AU10R" in result.output
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["optim"]["epochs"] == 1 and recipe["data"]["batch_size"] == 16 and recipe["train"]["seed"] == 1
    assert recipe["data"]["num_workers"] == 1  # the dedicated flag wins over --override data.num_workers=0
    assert recipe["model"]["au_names"] == list(TOY_AUS)
    run = read_json(out / "run.json")
    assert run["label_set"] == "manual" and run["au_columns"] == {a: a for a in TOY_AUS} and run["folds"] == [1]
    fold = out / "fold1"
    events = [json.loads(line) for line in (fold / "metrics.jsonl").read_text().splitlines()]
    assert {e["event"] for e in events} == {"train", "eval", "stop"}
    assert events[-1] == {**events[-1], "event": "stop", "stopped_by": "optim.epochs", "epoch": 1}
    evaluation = [e for e in events if e["event"] == "eval"][0]
    assert evaluation["epoch"] == 1 and len(evaluation["test_f1"]) == 4 and evaluation["best"] is True
    rows = list(csv.DictReader((fold / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and "test_f1_AU10L" in rows[0]
    meta = read_json(fold / "best.json")
    assert meta["method"] == "auformer" and meta["au_names"] == list(TOY_AUS) and len(meta["thresholds"]) == 4
    assert meta["recipe"]["optim"]["epochs"] == 1 and meta["backbone_in_checkpoint"] is True
    assert meta["training"]["fold"] == 1 and meta["parameters"]["trainable"] > 0
    assert (fold / "best.safetensors").is_file() and (fold / "state.json").is_file()
    summary = read_json(out / "summary.json")
    assert summary["folds"] == [1] and len(summary["f1_mean"]) == 4


def test_thresholds_are_fitted_on_validation_subjects_only(smoke_run):
    _, out = smoke_run
    fold = out / "fold1"
    split = read_json(fold / "split.json")
    result = read_json(fold / "result.json")
    predictions = load_tensors(fold / "best_predictions.safetensors")
    from aucli.store import CorpusStore

    with CorpusStore.open(read_json(out / "run.json")["store"]) as store:
        subjects = store.face_subjects()
        labels = store.read_labels("manual").occurrence
    val_rows = predictions["validation_rows"].numpy()
    test_rows = predictions["test_rows"].numpy()
    assert set(subjects[val_rows]) == set(split["validation"]) and set(subjects[test_rows]) == set(split["test"])
    assert set(split["validation"]).isdisjoint(split["test"]) and set(split["validation"]).isdisjoint(split["train"])
    probs = 1 / (1 + np.exp(-predictions["validation_logits"].numpy().astype(np.float64)))
    expected = fit_thresholds(probs, labels[val_rows])
    np.testing.assert_allclose(result["thresholds"], expected)
    test_probs = 1 / (1 + np.exp(-predictions["test_logits"].numpy().astype(np.float64)))
    assert not np.allclose(fit_thresholds(test_probs, labels[test_rows]), expected)


def test_json_output_and_resume_of_a_finished_run(smoke_run, runner, toy_store):
    _, out = smoke_run
    args = ["train", str(toy_store), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--seed", "1", "--resume", "--json",
            *toy_override_args()]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["folds"] == [1] and payload["method"] == "auformer" and len(payload["f1_mean"]) == 4
    first = read_json(out / "fold1" / "result.json")
    assert payload["mean_f1_per_fold"][0] == pytest.approx(first["test"]["mean_f1"])


def _train(runner, store, out, *extra):
    return runner.invoke(cli, ["train", str(store), "--out", str(out), "--quiet", *toy_override_args(), *extra])


def test_users_mistakes(runner, tmp_path, toy_store, smoke_run):
    result = _train(runner, toy_store, tmp_path / "a", "--labels", "human")
    assert result.exit_code == 1
    assert result.output.strip().endswith("no label set 'human' in " + str(toy_store) + "; available label sets: manual")
    result = _train(runner, toy_store, tmp_path / "b", "-o", "model.au_names=[AU1,AU24]")
    assert result.exit_code == 1
    assert "Error: the label set has no column for AU24 (its AUs: AU1, AU2, AU10L, AU10R)" in result.output
    bare = make_toy_store(tmp_path / "bare.h5", subjects=3, frames=2, label_set=None)
    result = _train(runner, bare, tmp_path / "c")
    assert result.exit_code == 1 and "has no label sets; import labels first" in result.output
    result = _train(runner, toy_store, tmp_path / "d", "-o", "optim.learning_rate=0.1")
    assert result.exit_code == 2
    assert "Error: unknown key 'optim.learning_rate'" in result.output
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  method: [lora\n")
    result = runner.invoke(cli, ["train", str(toy_store), "--out", str(tmp_path / "e"), "--recipe", str(recipe)])
    assert result.exit_code == 2 and f"Error: recipe {recipe} is not valid YAML" in result.output
    result = _train(runner, toy_store, tmp_path / "f", "--fold", "5")
    assert result.exit_code == 2 and "--fold 5 is out of range: the protocol has 3 folds (1..3 or all)" in result.output
    result = _train(runner, toy_store, tmp_path / "g", "--fold", "first")
    assert result.exit_code == 2 and "expected a fold number (1, 2, ...) or 'all', got 'first'" in result.output
    _, existing = smoke_run
    result = _train(runner, toy_store, existing, "--epochs", "1")
    assert result.exit_code == 2 and "already holds a training run; add --resume to continue it" in result.output
    result = _train(runner, toy_store, existing, "--epochs", "3", "--resume")
    assert result.exit_code == 2 and "cannot resume" in result.output and "optim.epochs: 1 -> 3" in result.output


def test_help_has_examples(runner):
    for command in ("train", "eval"):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output


def test_init_from_starts_a_run_from_a_checkpoint_and_refuses_another_model(smoke_run, toy_store, tmp_path):
    import torch
    from click.testing import CliRunner

    from aucli.config import Recipe
    from aucli.model.auformer import build_model
    from aucli.model.checkpoint import init_from_checkpoint

    result, out = smoke_run
    assert result.exit_code == 0, result.output
    best = out / "fold1" / "best.json"
    recipe = Recipe.from_dict(yaml.safe_load((out / "recipe.yaml").read_text()))
    model = build_model(recipe.model, weights="random")
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    init_from_checkpoint(model, best)
    saved = load_tensors(out / "fold1" / "best.safetensors")
    after = model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert all(torch.equal(after[k], saved[k]) for k in after)
    assert all(torch.equal(v, saved[f"backbone.{k}"]) for k, v in model.backbone.state_dict().items())

    # the CLI: fine-tune from the checkpoint; then a recipe that builds another model is refused in one line
    tuned = tmp_path / "tuned"
    args = ["train", str(toy_store), "--out", str(tuned), "--max-steps", "2", "--batch-size", "16", "--quiet",
            *toy_override_args(), "--workers", "0", "--init-from", str(best)]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert yaml.safe_load((tuned / "recipe.yaml").read_text())["train"]["init_from"] == str(best)
    other = CliRunner().invoke(cli, [*args[:3], str(tmp_path / "other"), *args[4:], "-o", "model.moke.bottleneck=2"])
    assert other.exit_code != 0 and "describes another model" in other.output and "Traceback" not in other.output
