"""Out-of-fold predictions: every labelled face judged by a model that never trained on its subject.

``aucli audit`` needs, for each (face, AU), a probability from a model that did not see that face,
calibrated on held-out data (asymmetric losses push raw probabilities upwards; DESIGN.md section 3).
:func:`out_of_fold_predictions` trains one model per subject fold with :func:`aucli.engine.train`
(each fold's best epoch selected on its validation subjects), takes the test-fold logits of every
fold, and fits a per-AU calibration (:func:`aucli.calibration.fit_calibration`) on each fold's
validation subjects: the calibration of a face's probability never saw that face either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from aucli.calibration import Calibration, fit_calibration
from aucli.config import Recipe
from aucli.engine.evaluate import sigmoid
from aucli.engine.runs import load_tensors
from aucli.engine.results import TrainResult
from aucli.engine.trainer import train

__all__ = ["OOFResult", "out_of_fold_predictions"]


@dataclass
class OOFResult:
    """Out-of-fold predictions of every labelled face of a store (rows sorted by store row).

    Attributes:
        rows: ``(n,)`` store face rows.
        fold: ``(n,)`` the fold whose test partition holds the face (1-based).
        subjects: ``(n,)`` subject of each face.
        labels: ``(n, n_aus)`` int8 labels (1 / 0 / -1 unknown) of the label set, model AU order.
        logits: ``(n, n_aus)`` float32 logits of the fold's best model.
        probs: ``(n, n_aus)`` ``sigmoid(logits)``.
        calibrated: ``(n, n_aus)`` probabilities after the fold's calibration.
        au_names: model AUs; ``au_columns`` maps them to the label set's columns.
        calibrations: fold -> per-AU calibration fitted on that fold's validation subjects.
        thresholds: fold -> per-AU thresholds fitted on validation subjects (raw probabilities).
        checkpoints: fold -> best checkpoint (``.safetensors``; its ``.json`` beside it).
        run: the training run (folder, per-fold reports).
    """

    rows: np.ndarray
    fold: np.ndarray
    subjects: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    calibrated: np.ndarray
    au_names: list[str]
    au_columns: dict[str, str]
    label_set: str
    calibrations: dict[int, Calibration]
    thresholds: dict[int, np.ndarray]
    checkpoints: dict[int, Path]
    run: TrainResult

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The per-row arrays by name (for ``CorpusStore.write_run``)."""
        return {"rows": self.rows, "fold": self.fold, "labels": self.labels, "logits": self.logits,
                "probs": self.probs, "calibrated": self.calibrated}

    def attrs(self) -> dict[str, Any]:
        """JSON-safe description: AUs, label set, per-fold calibrations, thresholds and checkpoints."""
        return {
            "au_names": self.au_names, "au_columns": self.au_columns, "label_set": self.label_set,
            "run": str(self.run.folder), "method": self.run.recipe.train.method,
            "calibrations": {str(k): v.to_dict() for k, v in self.calibrations.items()},
            "thresholds": {str(k): [float(t) for t in v] for k, v in self.thresholds.items()},
            "checkpoints": {str(k): str(v) for k, v in self.checkpoints.items()},
        }


def out_of_fold_predictions(
    store: str | Path,
    recipe: Recipe,
    *,
    out: str | Path,
    label_set: str | None = None,
    folds: int | None = None,
    protocol: str | None = None,
    calibration: str = "platt",
    resume: bool = False,
    weights: str | None = None,
    show_progress: bool = False,
) -> OOFResult:
    """Train k subject-fold models and return each labelled face's out-of-fold logits and probabilities.

    Args:
        store: the corpus store.
        recipe: the training recipe (its ``train.fold`` is ignored: every fold is trained).
        out: the run folder (fold checkpoints, metrics; resumable with ``resume=True``).
        label_set: label set to learn and judge (default: ``recipe.data.labels``, or the store's only set).
        folds: number of subject folds (default ``recipe.train.n_folds``; with the official BP4D or
            DISFA partitions the protocol's 3).
        protocol: ``auto``, ``balanced``, ``bp4d`` or ``disfa`` (default: the recipe's).
        calibration: ``platt`` or ``isotonic`` (:func:`aucli.calibration.fit_calibration`).
        resume: continue an interrupted run in ``out``.
        weights: backbone weights instead of ``model.backbone_weights``.
    """
    train_cfg = replace(recipe.train, fold="all", n_folds=folds or recipe.train.n_folds, protocol=protocol or recipe.train.protocol)
    data_cfg = replace(recipe.data, labels=label_set if label_set is not None else recipe.data.labels)
    recipe = replace(recipe, train=train_cfg, data=data_cfg)
    run = train(store, recipe, out=out, resume=resume, weights=weights, show_progress=show_progress)

    from aucli.engine.data import store_dataset

    columns: dict[str, str] = _read_columns(run)
    dataset = store_dataset(store, labels=run.label_set, label_aus=list(columns.values()))
    position = {int(row): i for i, row in enumerate(dataset.rows)}
    au_names = list(recipe.model.au_names)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("rows", "fold", "logits", "calibrated")}
    calibrations: dict[int, Calibration] = {}
    thresholds: dict[int, np.ndarray] = {}
    checkpoints: dict[int, Path] = {}
    for result in run.folds:
        predictions = load_tensors(result.folder / "best_predictions.safetensors")
        val_rows = predictions["validation_rows"].numpy()
        val_logits = predictions["validation_logits"].numpy()
        test_rows = predictions["test_rows"].numpy()
        test_logits = predictions["test_logits"].numpy()
        if val_rows.size:
            val_labels = dataset.labels[[position[int(r)] for r in val_rows]]
            fitted = fit_calibration(val_logits, val_labels, au_names=au_names, method=calibration)  # type: ignore[arg-type]
        else:
            fitted = Calibration.identity(au_names, note="no validation subjects (train.validation_fraction is 0)")
        calibrations[result.fold] = fitted
        thresholds[result.fold] = result.thresholds
        checkpoints[result.fold] = result.checkpoint
        parts["rows"].append(test_rows)
        parts["fold"].append(np.full(test_rows.size, result.fold, dtype=np.int32))
        parts["logits"].append(test_logits)
        parts["calibrated"].append(fitted.apply(test_logits))
    rows = np.concatenate(parts["rows"]).astype(np.int64)
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    logits = np.concatenate(parts["logits"])[order].astype(np.float32)
    index = np.asarray([position[int(r)] for r in rows], dtype=np.int64)
    return OOFResult(
        rows=rows,
        fold=np.concatenate(parts["fold"])[order],
        subjects=np.asarray(dataset.subjects, dtype=object)[index],
        labels=dataset.labels[index],
        logits=logits,
        probs=sigmoid(logits).astype(np.float32),
        calibrated=np.concatenate(parts["calibrated"])[order].astype(np.float32),
        au_names=au_names,
        au_columns=columns,
        label_set=run.label_set,
        calibrations=calibrations,
        thresholds=thresholds,
        checkpoints=checkpoints,
        run=run,
    )


def _read_columns(run: TrainResult) -> dict[str, str]:
    from aucli.engine.runs import read_json

    return dict(read_json(run.folder / "run.json")["au_columns"])

