"""``aucli eval``: a checkpoint on another store through AU names and maps; threshold re-fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_fixtures import make_toy_store, toy_recipe

from aucli.cli.main import cli
from aucli.engine import evaluate_checkpoint, train
from aucli.model.checkpoint import load_model_checkpoint
from aucli.engine.runs import read_json


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch checkpoint on AU1, AU2, AU10L, AU10R and a second corpus labelled with AU1, AU2 only."""
    folder = tmp_path_factory.mktemp("eval")
    source = make_toy_store(folder / "source.h5", subjects=6, frames=8)
    train(source, toy_recipe(**{"optim.epochs": 1}), out=folder / "run", show_progress=False)
    other = make_toy_store(folder / "other.h5", subjects=4, frames=8, seed=9, aus=("AU1", "AU2"), label_set="human")
    return folder / "run" / "fold1" / "best.safetensors", other


def test_cross_corpus_eval_scores_the_common_aus(trained, runner):
    checkpoint, other = trained
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["au_pairs"] == {"AU1": "AU1", "AU2": "AU2"} and payload["label_set"] == "human"
    assert payload["report"]["per_au"]["au"] == ["AU1", "AU2"] and payload["n_faces"] == 32
    thresholds = read_json(checkpoint.with_suffix(".json"))["thresholds"]
    assert payload["thresholds"] == thresholds[:2] and payload["refit_on"] == []
    table = runner.invoke(cli, ["eval", str(checkpoint), str(other)])
    assert table.exit_code == 0 and "AUs scored: AU1, AU2; faces: 32; subjects: 4" in table.output


def test_au_map_and_subjects(trained):
    checkpoint, other = trained
    swapped = evaluate_checkpoint(checkpoint, other, au_map="AU1=AU2,AU2=AU1", subjects=["S01", "S02"], device="cpu")
    assert swapped.au_pairs == {"AU1": "AU2", "AU2": "AU1"} and swapped.subjects == ["S01", "S02"] and swapped.n_faces == 16
    plain = evaluate_checkpoint(checkpoint, other, subjects=["S01", "S02"], device="cpu")
    assert plain.report.n_positive.tolist() == swapped.report.n_positive.tolist()[::-1]
    # A model AU mapped onto a label-set AU that has another name (AU10L scored against AU1's labels).
    mapped = evaluate_checkpoint(checkpoint, other, au_map={"AU10L": "AU1"}, device="cpu")
    assert mapped.au_pairs == {"AU2": "AU2", "AU10L": "AU1"}


def test_refit_thresholds_writes_a_new_checkpoint(trained, tmp_path, runner):
    checkpoint, other = trained
    out = tmp_path / "refit"
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--refit-thresholds", "--subjects", "S01,S02", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Thresholds re-fitted on S01, S02; scored on the other subjects." in result.output
    old = load_model_checkpoint(checkpoint)
    new = load_model_checkpoint(out)
    assert new.method == old.method and new.au_names == old.au_names
    assert np.array_equal(new.thresholds[2:], old.thresholds[2:]) and not np.array_equal(new.thresholds[:2], old.thresholds[:2])
    refit = new.meta["training"]["thresholds_refit"]
    assert refit["subjects"] == ["S01", "S02"] and refit["au_pairs"] == {"AU1": "AU1", "AU2": "AU2"}
    direct = evaluate_checkpoint(checkpoint, other, subjects=["S01", "S02"], refit_thresholds=True, out=tmp_path / "again")
    assert direct.subjects == ["S03", "S04"] and direct.thresholds.tolist() == new.thresholds[:2].tolist()


def test_eval_mistakes(trained, runner, tmp_path):
    checkpoint, other = trained
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--refit-thresholds"])
    assert result.exit_code == 2 and "--refit-thresholds needs --subjects" in result.output
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--subjects", "S09"])
    assert result.exit_code == 2 and "subjects S09 are not in" in result.output
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--out writes a checkpoint with re-fitted thresholds" in result.output
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--labels", "manual"])
    assert result.exit_code == 1 and "no label set 'manual'" in result.output and "available label sets: human" in result.output
    only_au4 = make_toy_store(tmp_path / "au4.h5", subjects=2, frames=2, aus=("AU4",))
    result = runner.invoke(cli, ["eval", str(checkpoint), str(only_au4)])
    assert result.exit_code == 1 and "no AU in common between the model (AU1, AU2, AU10L, AU10R) and the label set (AU4)" in result.output
    result = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--au-map", "AU1"])
    assert result.exit_code == 2 and "an AU map is written MODEL_AU=STORE_AU" in result.output
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"format": "something"}')
    (tmp_path / "bogus.safetensors").write_bytes(b"")
    result = runner.invoke(cli, ["eval", str(bogus), str(other)])
    assert result.exit_code == 1 and "is not an aucli checkpoint" in result.output


def test_event_f1_beside_frame_f1_and_smoothing(trained, runner):
    checkpoint, other = trained
    result = evaluate_checkpoint(checkpoint, other, device="cpu")
    events = result.events
    assert events is not None and result.events_smoothed is None
    assert events.frame_f1.tolist() == pytest.approx(result.report.f1.tolist(), nan_ok=True)
    # the true events, counted by hand: runs of 1s over each subject's frames (one source each, frames in order)
    from aucli.store import open_store

    with open_store(other) as opened:
        labels = opened.read_labels("human").occurrence
        source = opened.face_table(["source"])["source"]
    expected = []
    for k in range(labels.shape[1]):
        runs = 0
        for s in np.unique(source):
            column = labels[source == s, k]
            runs += int(np.sum((column == 1) & np.r_[True, column[:-1] != 1]))
        expected.append(runs)
    assert events.events.n_reference.tolist() == expected
    assert (events.events.matched <= np.minimum(events.events.n_reference, events.events.n_other)).all()

    missing_clock = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--smooth"])
    assert missing_clock.exit_code == 2 and "have no clock (frame folders); give --fps" in missing_clock.output
    smoothed = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--smooth", "--fps", "30", "--json"])
    assert smoothed.exit_code == 0, smoothed.output
    payload = json.loads(smoothed.output)
    assert payload["events"]["per_au"]["events_true"] == expected
    assert payload["events_smoothed"]["per_au"]["events_true"] == expected
    assert payload["events_smoothed"]["title"] == "Events after HMM smoothing"
    table = runner.invoke(cli, ["eval", str(checkpoint), str(other), "--min-iou", "0.3"])
    assert table.exit_code == 0 and "Events at the thresholds (temporal IoU >= 0.3)" in table.output
