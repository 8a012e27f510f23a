"""Out-of-fold predictions for audit: every labelled face judged by a model that never saw its subject."""

from __future__ import annotations

import numpy as np
from engine_fixtures import TOY_AUS, make_toy_store, toy_recipe

from aucli.calibration import fit_calibration
from aucli.engine import out_of_fold_predictions
from aucli.engine.runs import load_tensors, read_json
from aucli.store import CorpusStore


def test_out_of_fold_predictions_cover_every_labelled_face_once(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=6, unknown=0.3)
    recipe = toy_recipe(**{"optim.epochs": 1, "train.validation_fraction": 0.25})
    oof = out_of_fold_predictions(store, recipe, out=tmp_path / "oof", folds=3)
    with CorpusStore.open(store) as opened:
        labels = opened.read_labels("manual").occurrence
        subjects = opened.face_subjects()
    labelled = np.flatnonzero((labels >= 0).any(axis=1))
    assert np.array_equal(oof.rows, labelled)  # each labelled face once, sorted by row
    assert oof.logits.shape == oof.probs.shape == oof.calibrated.shape == (labelled.size, len(TOY_AUS))
    assert np.array_equal(oof.labels, labels[labelled]) and oof.au_names == list(TOY_AUS)
    np.testing.assert_allclose(oof.probs, 1 / (1 + np.exp(-oof.logits.astype(np.float64))), rtol=1e-6)
    assert sorted(oof.checkpoints) == [1, 2, 3] and all(p.is_file() for p in oof.checkpoints.values())
    for fold in (1, 2, 3):
        split = read_json(tmp_path / "oof" / f"fold{fold}" / "split.json")
        mine = oof.fold == fold
        # Judged by the fold whose test partition holds the subject: never trained or validated on it.
        assert set(subjects[oof.rows[mine]]) == set(split["test"])
        assert set(split["test"]).isdisjoint(split["train"] + split["validation"])
        # Calibration fitted on that fold's validation subjects, applied to its test faces.
        saved = load_tensors(tmp_path / "oof" / f"fold{fold}" / "best_predictions.safetensors")
        val_rows = saved["validation_rows"].numpy()
        assert set(subjects[val_rows]) == set(split["validation"])
        expected = fit_calibration(saved["validation_logits"].numpy(), labels[val_rows], au_names=list(TOY_AUS))
        assert oof.calibrations[fold].to_dict() == expected.to_dict()
        np.testing.assert_allclose(oof.calibrated[mine], expected.apply(oof.logits[mine]), rtol=1e-6)
    summary = oof.run.summary()
    assert summary["folds"] == [1, 2, 3] and len(summary["f1_std"]) == len(TOY_AUS)
    assert summary["mean_f1"] == np.mean([f.test.mean_f1 for f in oof.run.folds])
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(oof.run.table())
    text = console.export_text()
    assert "fold 3" in text and "std" in text and "AU10R" in text
    attrs = oof.attrs()
    assert attrs["label_set"] == "manual" and set(attrs["calibrations"]) == {"1", "2", "3"}
    arrays = oof.to_arrays()
    assert set(arrays) == {"rows", "fold", "labels", "logits", "probs", "calibrated"}
