"""Resumable training: a run killed with SIGKILL and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_fixtures import make_toy_store, toy_override_args, toy_recipe

from aucli.cli.main import cli
from aucli.engine import train
from aucli.engine.runs import load_tensors, read_json

SETTINGS = {"optim.epochs": 3, "train.save_every": 1, "data.batch_size": 8, "train.seed": 5, "data.num_workers": 0}


def _eval_records(folder: Path) -> list[dict]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "eval"]


def _step_of(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["position"]["step"])
    except (OSError, ValueError, KeyError):
        return -1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A toy store and an uninterrupted run on it: ``(store, run folder, TrainResult)``."""
    folder = tmp_path_factory.mktemp("resume")
    store = make_toy_store(folder / "toy.h5", subjects=6, frames=10)
    return store, folder / "reference", train(store, toy_recipe(**SETTINGS), out=folder / "reference", show_progress=False)


def test_killed_run_resumes_to_the_same_metrics(tmp_path, runner, reference):
    store, reference_folder, _ = reference

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "aucli", "train", str(store), "--out", str(killed), "--quiet", *toy_override_args(**SETTINGS)]
    # the same intra-op threads as this process (a test module may have changed them): CPU float
    # reductions are exact run to run only at one thread count (docs/reproducibility.md)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "fold1" / "state.json"
    deadline = time.monotonic() + 120
    while _step_of(state) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    total_steps = _eval_records(reference_folder / "fold1")[-1]["step"]
    assert 3 <= _step_of(state) < total_steps
    assert not (killed / "fold1" / "result.json").exists()

    result = runner.invoke(cli, ["train", str(store), "--out", str(killed), "--resume", "--quiet", *toy_override_args(**SETTINGS)])
    assert result.exit_code == 0, result.output
    expected = read_json(reference_folder / "fold1" / "result.json")
    got = read_json(killed / "fold1" / "result.json")
    for key in ("best_epoch", "best_step", "thresholds", "test", "test_at_0.5", "validation"):
        assert got[key] == expected[key], key
    ignore = {"lr"}
    for a, b in zip(_eval_records(reference_folder / "fold1"), _eval_records(killed / "fold1"), strict=True):
        assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}
    first = load_tensors(reference_folder / "fold1" / "best.safetensors")
    second = load_tensors(killed / "fold1" / "best.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    train_steps = [json.loads(line)["step"] for line in (killed / "fold1" / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line)["event"] == "train"]
    assert train_steps == sorted(set(train_steps))  # lines logged after the saved state were dropped, not repeated
    assert len(list((killed / "fold1").glob("state-*.safetensors"))) == 1


def test_resume_from_an_exception_inside_a_step(tmp_path, reference):
    store, _, expected = reference
    recipe = toy_recipe(**SETTINGS)

    class Crash(Exception):
        pass

    def crash_at_step(step: int) -> None:
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        train(store, recipe, out=tmp_path / "crashed", show_progress=False, on_step=crash_at_step)
    saved = json.loads((tmp_path / "crashed" / "fold1" / "state.json").read_text())["position"]
    assert saved["step"] == 4 and saved["epoch"] == 1 and saved["batch"] == 1  # the middle of the second epoch
    resumed = train(store, recipe, out=tmp_path / "crashed", resume=True, show_progress=False)
    assert resumed.folds[0].test.to_dict() == expected.folds[0].test.to_dict()
    assert resumed.folds[0].best_epoch == expected.folds[0].best_epoch
    assert resumed.folds[0].thresholds.tolist() == expected.folds[0].thresholds.tolist()


def test_a_diverged_loss_stops_the_run_before_it_saves_broken_weights(tmp_path, runner, monkeypatch, reference):
    """A NaN loss at step 3 of epoch 1 ends the run with one plain message; no state with NaN weights is written."""
    import dataclasses

    import aucli.engine.fold as fold_module

    store, _, _ = reference
    real_from_rates = fold_module.AUFormerLoss.from_rates

    def poisoned(*args, **kwargs):
        criterion = real_from_rates(*args, **kwargs)
        calls = {"n": 0}
        real_forward = criterion.forward

        def forward(logits, targets, expert_logits=None):
            calls["n"] += 1
            parts = real_forward(logits, targets, expert_logits)
            if calls["n"] < 3:
                return parts
            return dataclasses.replace(parts, **{f.name: getattr(parts, f.name) * float("nan") for f in dataclasses.fields(parts)})

        criterion.forward = forward
        return criterion

    monkeypatch.setattr(fold_module.AUFormerLoss, "from_rates", poisoned)
    out = tmp_path / "diverged"
    settings = {**SETTINGS, "train.save_every": 0, "train.log_every": 100}
    result = runner.invoke(cli, ["train", str(store), "--out", str(out), "--quiet", *toy_override_args(**settings)])
    assert result.exit_code == 1
    assert "Error: fold 1: the training loss became NaN or infinite by step" in result.output
    assert "Train again with a lower learning rate (--lr)" in result.output and "Traceback" not in result.output
    assert not list((out / "fold1").glob("state-*.safetensors"))


def test_a_run_made_before_an_option_existed_resumes_while_the_option_keeps_its_default():
    from aucli.engine.trainer import _recipe_differences

    current = toy_recipe().to_dict()
    saved = json.loads(json.dumps(current))
    del saved["optim"]["moke_up_lr_scale"]  # a run folder written by an older aucli
    assert _recipe_differences(saved, current) == []
    changed = toy_recipe(**{"optim.moke_up_lr_scale": 0.5}).to_dict()
    assert _recipe_differences(saved, changed) == ["optim.moke_up_lr_scale: None -> 0.5"]
    changed["optim"]["lr"] = 1.0
    assert "optim.lr: " + repr(current["optim"]["lr"]) + " -> 1.0" in _recipe_differences(saved, changed)
