"""Faults around training runs and checkpoints: a start that failed, a damaged or crafted run folder,
weights changed after they were saved, the epochs / max_steps rule, and an audit killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import make_toy_store, toy_override_args

from aucli.cli.main import cli
from aucli.config import OptimConfig
from aucli.engine.runs import load_state
from aucli.errors import ModelError, UsageError
from aucli.model.checkpoint import accepting_modified_weights, load_model_checkpoint, read_checkpoint_metadata

#: One fold, one epoch of the toy recipe (3 batches of 16 on the toy store's training subjects).
QUICK = {"optim.epochs": 1, "train.save_every": 1}


def _train_args(store: Path, out: Path, **extra: object) -> list[str]:
    return ["train", str(store), "--out", str(out), "--quiet", *toy_override_args(**{**QUICK, **extra})]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A toy store and a finished one-fold run on it: ``(store, run folder)``."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("faults_train")
    store = make_toy_store(folder / "toy.h5")
    result = CliRunner().invoke(cli, _train_args(store, folder / "run"))
    assert result.exit_code == 0, result.output
    return store, folder / "run"


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# ------------------------------------------------------------------------------------ a start that failed
def test_a_run_whose_start_failed_reruns_with_the_same_or_a_corrected_command(runner, tmp_path: Path, trained) -> None:
    store, _ = trained
    out = tmp_path / "run"
    missing = _train_args(store, out) + ["--backbone-weights", str(tmp_path / "absent.pth")]
    for attempt in range(2):  # the same command twice: the same error, not "add --resume"
        result = runner.invoke(cli, missing)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: backbone weight file not found") and "--resume" not in result.output
    assert (out / "recipe.yaml").exists()  # the failed start left its recipe behind
    (tmp_path / "bad.pth").write_text("not a weight file")
    result = runner.invoke(cli, _train_args(store, out) + ["--backbone-weights", str(tmp_path / "bad.pth"), "--resume"])
    assert result.exit_code == 1 and "not a readable" in result.output and "different recipe" not in result.output, result.output
    result = runner.invoke(cli, _train_args(store, out))  # corrected: the recipe's random backbone
    assert result.exit_code == 0, result.output
    assert (out / "fold1" / "result.json").exists()
    assert "backbone_weights: random" in (out / "recipe.yaml").read_text()
    # a folder with progress still needs --resume, and the same recipe with it
    result = runner.invoke(cli, _train_args(store, out))
    assert result.exit_code == 2 and "already holds a training run; add --resume" in result.output
    result = runner.invoke(cli, _train_args(store, out, **{"optim.lr": 0.5}) + ["--resume"])
    assert result.exit_code == 2 and "cannot resume" in result.output and "optim.lr" in result.output


def test_a_folder_that_is_not_a_run_is_still_refused(runner, tmp_path: Path, trained) -> None:
    store, _ = trained
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(cli, _train_args(store, out))
    assert result.exit_code == 2 and "is a folder that is not empty" in result.output
    assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------ weights changed after saving
def _flip_a_bit(path: Path) -> None:
    """Flip one bit in the tensor data (past the safetensors header), as a bad disk or copy would."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + (len(data) - 8 - header) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_refused_unless_accepted_on_purpose(runner, tmp_path: Path, trained) -> None:
    store, run = trained
    folder = _copy_run(run / "fold1", tmp_path / "fold1")
    meta = read_checkpoint_metadata(folder / "best.json")
    assert len(meta["weights_sha256"]) == 64
    _flip_a_bit(folder / "best.safetensors")

    with pytest.raises(ModelError, match=r"best\.safetensors does not match the sha256 recorded in .*best\.json.*--accept-modified-weights"):
        load_model_checkpoint(folder / "best")
    assert load_model_checkpoint(folder / "best", accept_modified_weights=True).au_names == meta["au_names"]
    with accepting_modified_weights():
        load_model_checkpoint(folder / "best")

    args = ["eval", str(folder / "best.json"), str(store), "--device", "cpu", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "best.safetensors does not match the sha256" in lines[0]
    result = runner.invoke(cli, [*args, "--accept-modified-weights"])
    assert result.exit_code == 0, result.output
    assert "differs from the sha256 recorded" in result.output  # a warning, not silence

    # train --init-from goes through the same check
    tuned = tmp_path / "tuned"
    result = runner.invoke(cli, _train_args(store, tuned) + ["--init-from", str(folder / "best.json")])
    assert result.exit_code == 1 and "does not match the sha256" in result.output, result.output
    assert not (tuned / "fold1" / "best.json").exists()


@pytest.mark.parametrize("keep", [0, 7, 200, -100])
def test_a_truncated_checkpoint_is_one_clear_error_even_when_accepted(runner, tmp_path: Path, trained, keep: int) -> None:
    """Cut short (empty, inside the header length, inside the header, inside the tensors): refused by
    the checksum, and with --accept-modified-weights by the loader, in one Error line each."""
    store, run = trained
    folder = _copy_run(run / "fold1", tmp_path / "fold1")
    weights = folder / "best.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    args = ["eval", str(folder / "best.json"), str(store), "--device", "cpu", "--json"]
    for extra in ([], ["--accept-modified-weights"]):
        result = runner.invoke(cli, [*args, *extra])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "best.safetensors" in errors[0], result.output


def test_a_checkpoint_without_a_recorded_sha256_still_loads(tmp_path: Path, trained) -> None:
    _, run = trained
    folder = _copy_run(run / "fold1", tmp_path / "fold1")
    meta = json.loads((folder / "best.json").read_text())
    del meta["weights_sha256"]  # written by an aucli that did not record it
    (folder / "best.json").write_text(json.dumps(meta))
    _flip_a_bit(folder / "best.safetensors")
    assert load_model_checkpoint(folder / "best").au_names == meta["au_names"]
    meta["weights_sha256"] = "not-a-digest"
    (folder / "best.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not 64 hex digits"):
        load_model_checkpoint(folder / "best")


def test_the_registered_checkpoint_records_the_sha256_of_its_shipped_weights() -> None:
    from aucli.fileio import file_sha256
    from aucli.model.registry import resolve_checkpoint

    meta_path = resolve_checkpoint("synthface-auformer")
    meta = read_checkpoint_metadata(meta_path)
    assert meta["weights_sha256"] == file_sha256(meta_path.with_suffix(".safetensors"))


def test_a_damaged_training_state_is_refused_on_resume(tmp_path: Path, trained) -> None:
    _, run = trained
    folder = _copy_run(run / "fold1", tmp_path / "fold1")
    payload, _ = load_state(folder)
    _flip_a_bit(folder / payload["tensors"])
    with pytest.raises(ModelError, match=r"state-\d+\.safetensors does not match the sha256 recorded in .*state\.json"):
        load_state(folder)
    assert load_state(folder, accept_modified_weights=True) is not None


# ------------------------------------------------------------------------------------ crafted run records
def test_run_records_naming_files_outside_the_run_are_refused(runner, tmp_path: Path, trained) -> None:
    store, run = trained
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"precious")
    crafted = _copy_run(run, tmp_path / "crafted")
    state = json.loads((crafted / "fold1" / "state.json").read_text())
    (crafted / "fold1" / "state.json").write_text(json.dumps(dict(state, tensors="../../victim.safetensors")))
    with pytest.raises(UsageError, match=r"names '\.\./\.\./victim\.safetensors', which lies outside"):
        load_state(crafted / "fold1")

    result_file = crafted / "fold1" / "result.json"
    record = json.loads(result_file.read_text())
    assert record["checkpoint"] == "best.safetensors"  # named inside the fold folder
    result_file.write_text(json.dumps(dict(record, checkpoint="../../victim.safetensors")))
    result = runner.invoke(cli, _train_args(store, crafted) + ["--resume"])
    assert result.exit_code == 2 and "lies outside" in result.output and "Traceback" not in result.output, result.output
    assert victim.read_bytes() == b"precious"


# ------------------------------------------------------------------------------------ epochs and max_steps
def test_training_stops_at_whichever_limit_comes_first(runner, tmp_path: Path, trained) -> None:
    assert OptimConfig(epochs=1, max_steps=3).schedule(2) == (2, "optim.epochs")
    assert OptimConfig(epochs=2, max_steps=3).schedule(2) == (3, "optim.max_steps")
    assert OptimConfig(epochs=2, max_steps=4).schedule(2) == (4, "optim.epochs")
    assert OptimConfig(epochs=2).schedule(5) == (10, "optim.epochs")

    store, run = trained
    per_epoch = json.loads((run / "fold1" / "result.json").read_text())["best_step"]  # one epoch of QUICK
    assert per_epoch >= 2
    for max_steps, steps, limit in ((per_epoch + 1, per_epoch, "optim.epochs"), (per_epoch - 1, per_epoch - 1, "optim.max_steps")):
        out = tmp_path / f"steps{max_steps}"
        result = runner.invoke(cli, _train_args(store, out) + ["--epochs", "1", "--max-steps", str(max_steps), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert summary["stopped_by"] == [limit] and summary["folds_detail"][0]["best_step"] == steps
        log = [json.loads(line) for line in (out / "fold1" / "metrics.jsonl").read_text().splitlines()]
        assert max(r["step"] for r in log if r["event"] == "train") == steps
        assert log[-1]["event"] == "stop" and log[-1]["stopped_by"] == limit and log[-1]["epoch"] == 1
        assert json.loads((out / "fold1" / "result.json").read_text())["stopped_by"] == limit


# ------------------------------------------------------------------------------------ audit killed with SIGKILL
AUDIT = {"model.au_names": ["AU1", "AU2"], "optim.epochs": 2, "train.save_every": 1, "data.batch_size": 8, "train.seed": 3}


def _step_of(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["position"]["step"])
    except (OSError, ValueError, KeyError):
        return -1


def test_a_killed_audit_resumes_to_the_flags_of_an_uninterrupted_one(runner, tmp_path: Path) -> None:
    from aucli.audit.run import read_audit
    from aucli.store import CorpusStore

    first = make_toy_store(tmp_path / "first.h5", subjects=6, frames=12, colour=True, aus=("AU1", "AU2"), label_set="coded")
    second = tmp_path / "second.h5"
    shutil.copyfile(first, second)
    args = ["--labels", "coded", *toy_override_args(**AUDIT), "--quiet"]
    reference = runner.invoke(cli, ["audit", str(first), "--out", str(tmp_path / "reference"), *args])
    assert reference.exit_code == 0, reference.output

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "aucli", "audit", str(second), "--out", str(killed), *args]
    # the same intra-op threads as this process (a test module may have changed them): CPU float
    # reductions are exact run to run only at one thread count (docs/reproducibility.md)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "fold2" / "state.json"
    deadline = time.monotonic() + 120
    while _step_of(state) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"the audit ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "fold1" / "result.json").exists() and not (killed / "fold2" / "result.json").exists()
    with CorpusStore.open(second) as opened:
        assert opened.runs("audit") == [] and opened.runs("predictions") == []  # nothing stored before the folds finish

    again = runner.invoke(cli, ["audit", str(second), "--out", str(killed), *args])
    assert again.exit_code == 2 and "already holds a training run; add --resume" in again.output
    resumed = runner.invoke(cli, ["audit", str(second), "--out", str(killed), "--resume", *args])
    assert resumed.exit_code == 0, resumed.output
    with CorpusStore.open(first) as a, CorpusStore.open(second) as b:
        expected, got = read_audit(a, "coded"), read_audit(b, "coded")
        assert a.runs("predictions") == b.runs("predictions") == ["coded-oof"]
    # The same steps on the same batches; CPU float rounding differs between processes (thread count,
    # load: docs/reproducibility.md), so probabilities agree to 1e-5 and everything discrete exactly.
    for name in ("rows", "fold"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    for name in ("probs", "raw_probs", "frame_scores"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-5, err_msg=name)
    assert got.flags.to_arrays().keys() == expected.flags.to_arrays().keys()
    for key, value in expected.flags.to_arrays().items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            np.testing.assert_allclose(got.flags.to_arrays()[key], value, rtol=0, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(got.flags.to_arrays()[key], value, err_msg=key)
