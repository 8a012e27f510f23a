"""The audit's own fold training (a tiny model on a toy store), a checkpoint trained elsewhere, and stored
out-of-fold predictions reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from engine_fixtures import make_toy_store, toy_override_args

from aucli.cli.main import cli
from aucli.store import CorpusStore


def test_fold_training_checkpoint_and_reuse(runner, tmp_path: Path) -> None:
    from aucli.audit.run import read_audit

    store = make_toy_store(tmp_path / "toy.h5", colour=True)
    folds = tmp_path / "folds"
    args = toy_override_args(**{"optim.epochs": 1, "optim.max_steps": 3})
    result = runner.invoke(cli, ["audit", str(store), "--labels", "manual", *args, "--out", str(folds), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"]["kind"] == "training" and summary["source"]["folds"] == 3
    assert sorted(summary["checkpoints"]) == ["1", "2", "3"]
    # three optimiser steps teach a tiny model little: AUs it cannot rank get no flag, and the summary says why
    for au, auc in summary["skill"].items():
        assert (au in summary["skipped"]) == (auc is None or auc < 0.6)
        if au in summary["skipped"]:
            assert summary["counts"][au]["missed"] == summary["counts"][au]["spurious"] == 0
    with CorpusStore.open(store) as opened:
        assert opened.runs("predictions") == ["manual-oof"] and opened.runs("audit") == ["manual"]
        record = read_audit(opened, "manual")
        labelled = opened.read_labels("manual").labelled_rows()
        oof = opened.read_run("predictions", "manual-oof")
    # every labelled face judged once, by the fold whose test subjects hold it, with a calibration per fold
    assert sorted(record.rows.tolist()) == labelled.tolist()
    assert set(record.fold.tolist()) == {1, 2, 3} and sorted(record.calibrations) == ["1", "2", "3"]
    assert oof.attrs["out_of_fold"] is True and oof.arrays["calibrated"].shape == (labelled.size, 4)

    # the stored predictions audit again without training, with other thresholds
    again = runner.invoke(cli, ["audit", str(store), "--labels", "manual", "--predictions", "manual-oof", "--name", "strict",
                                "--missed-threshold", "0.6", "--spurious-threshold", "0.4", "--json"])
    assert again.exit_code == 0, again.output
    strict = json.loads(again.output)
    assert strict["thresholds"]["missed"] == [0.6] * 4 and strict["source"]["predictions"] == "manual-oof"

    # a checkpoint trained on this very store: only its test subjects are judged, calibration cross-fitted
    checkpoint = folds / "fold1" / "best.json"
    meta = json.loads(checkpoint.read_text())
    test_subjects = meta["training"]["subjects"]["test"]
    result = runner.invoke(cli, ["audit", str(store), "--labels", "manual", "--checkpoint", str(checkpoint), "--name", "ckpt",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert payload["source"]["kind"] == "checkpoint" and "only its" in payload["source"]["note"]
    with CorpusStore.open(store) as opened:
        record = read_audit(opened, "ckpt")
        subjects = opened.face_subjects()[record.rows]
    assert set(subjects.tolist()) == set(test_subjects) and len(record.calibrations) == 2
    assert np.all((record.probs >= 0) & (record.probs <= 1))
