"""The audit's own fold training finds a mistake a coder made; a checkpoint trained elsewhere and stored
out-of-fold predictions judge the same store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from engine_fixtures import make_toy_store, toy_override_args

from aucli.cli.main import cli
from aucli.store import CorpusStore

#: Ten epochs of batches of 8 at a high learning rate: the fold models learn the coloured squares of AU1 and
#: AU2 (9 subjects of 40 frames: each fold trains on 4 subjects and holds out 2 for thresholds and calibration).
LEARNING = {"model.au_names": ["AU1", "AU2"], "optim.epochs": 10, "optim.lr": 0.01, "data.batch_size": 8, "train.eval_every": 10}


def coded_with_a_missed_au(store: Path) -> np.ndarray:
    """Label set ``coded``: the true labels, except that the coder missed AU1 on every frame of subject
    S03 that shows it; returns those store rows (the injected mistakes)."""
    with CorpusStore.open(store, "a") as opened:
        truth = opened.read_labels("truth").occurrence
        injected = np.flatnonzero((opened.face_subjects() == "S03") & (truth[:, 0] == 1))
        coded = truth.copy()
        coded[injected, 0] = 0
        opened.write_labels("coded", ["AU1", "AU2"], coded, attrs={"format": "toy"})
    return injected


def test_fold_models_learn_and_flag_the_au_a_coder_missed_then_checkpoint_and_stored_predictions_judge(runner, tmp_path: Path) -> None:
    from aucli.audit.run import read_audit

    store = make_toy_store(tmp_path / "toy.h5", subjects=9, frames=40, colour=True, aus=("AU1", "AU2"), label_set="truth")
    injected = coded_with_a_missed_au(store)
    assert injected.size >= 8
    folds = tmp_path / "folds"
    args = toy_override_args(**LEARNING)
    result = runner.invoke(cli, ["audit", str(store), "--labels", "coded", *args, "--out", str(folds), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"]["kind"] == "training" and summary["source"]["folds"] == 3
    assert sorted(summary["checkpoints"]) == ["1", "2", "3"]
    # the fold models learned both AUs (out-of-fold AUC against the coded labels, chance 0.5): none is left out
    assert summary["skill"]["AU1"] > 0.8 and summary["skill"]["AU2"] > 0.8, summary["skill"]
    assert summary["skipped"] == {}
    with CorpusStore.open(store) as opened:
        record = read_audit(opened, "coded")
    flags = record.flags
    missed = [i for i in range(len(flags)) if flags.au[i] == "AU1" and flags.kind[i] == "missed"]
    flagged = np.concatenate([flags.rows_of(i) for i in missed]) if missed else np.zeros(0, np.int64)
    # the coder's mistake is found: nearly every frame of it is flagged as a missed AU1, and hardly anything else is
    assert np.isin(injected, flagged).mean() >= 0.8, (injected, flagged)
    assert np.isin(flagged, injected).mean() >= 0.9, (injected, flagged)

    with CorpusStore.open(store) as opened:
        assert opened.runs("predictions") == ["coded-oof"] and opened.runs("audit") == ["coded"]
        labelled = opened.read_labels("coded").labelled_rows()
        oof = opened.read_run("predictions", "coded-oof")
    # every labelled face judged once, by the fold whose test subjects hold it, with a calibration per fold
    assert sorted(record.rows.tolist()) == labelled.tolist()
    assert set(record.fold.tolist()) == {1, 2, 3} and sorted(record.calibrations) == ["1", "2", "3"]
    assert oof.attrs["out_of_fold"] is True and oof.arrays["calibrated"].shape == (labelled.size, 2)

    # the stored predictions audit again without training, with other thresholds
    again = runner.invoke(cli, ["audit", str(store), "--labels", "coded", "--predictions", "coded-oof", "--name", "strict",
                                "--missed-threshold", "0.6", "--spurious-threshold", "0.4", "--json"])
    assert again.exit_code == 0, again.output
    strict = json.loads(again.output)
    assert strict["thresholds"]["missed"] == [0.6] * 2 and strict["source"]["predictions"] == "coded-oof"

    # a checkpoint trained on this very store: only its test subjects are judged, calibration cross-fitted
    checkpoint = folds / "fold1" / "best.json"
    meta = json.loads(checkpoint.read_text())
    test_subjects = meta["training"]["subjects"]["test"]
    result = runner.invoke(cli, ["audit", str(store), "--labels", "coded", "--checkpoint", str(checkpoint), "--name", "ckpt",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert payload["source"]["kind"] == "checkpoint" and "only its" in payload["source"]["note"]
    with CorpusStore.open(store) as opened:
        record = read_audit(opened, "ckpt")
        subjects = opened.face_subjects()[record.rows]
    assert set(subjects.tolist()) == set(test_subjects) and len(test_subjects) == 3
    assert len(record.calibrations) == 3  # cross-fitted over 3 subject groups: here one test subject each
    assert np.all((record.probs >= 0) & (record.probs <= 1))
