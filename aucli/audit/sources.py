"""Where the audit's out-of-fold, calibrated probabilities come from: three ways.

1. :func:`from_training`: train k subject-fold models on the store itself
   (:func:`aucli.engine.out_of_fold_predictions`); every face is judged by the model of the fold
   whose test partition holds its subject, calibrated per AU (Platt) on that fold's validation
   subjects, which neither trained the model nor are judged by it.
2. :func:`from_checkpoint`: a model trained elsewhere (another corpus, another label set). It
   predicts every labelled face; the calibration is *cross-fitted* over subject groups: the
   subjects are split into ``folds`` groups, and each group's probabilities are calibrated on the
   labels of the other groups, so no face's calibration saw that face. When the checkpoint was
   trained on this very store, only the subjects of its test partition are audited (the others
   were in its training or validation data).
3. :func:`from_predictions`: a stored ``/predictions/<run>`` holding out-of-fold predictions
   (written by :func:`write_out_of_fold` after a training audit, or by anything that follows the
   same layout): reuse them to audit again with other thresholds without training.

Layout of an out-of-fold ``/predictions/<run>`` (attribute ``out_of_fold = true``)::

    rows         (n,)    int64   store face rows
    fold         (n,)    int32   fold that judged the row (1-based; 0 = one model for all)
    logits       (n, K)  float32 model logits (raw p = sigmoid)
    calibrated   (n, K)  float32 calibrated probabilities (optional: else from ``calibrations``)
    attrs: au_names (K model AUs), au_columns (model AU -> label-set AU), label_set,
           calibrations ({fold: aucli.calibration record}), checkpoints ({fold: path}),
           loss ({margin, gammas, gamma_tiers} of the recipe), source, out_of_fold
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.calibration import Calibration, fit_calibration, logit, sigmoid
from aucli.errors import StoreError, UsageError

__all__ = ["OutOfFold", "from_checkpoint", "from_predictions", "from_training", "loss_settings", "write_out_of_fold"]


@dataclass
class OutOfFold:
    """Out-of-fold predictions of labelled faces, in the model's AU order.

    Attributes:
        rows: ``(n,)`` store rows. fold: ``(n,)`` the fold (or calibration group) of each row.
        logits: ``(n, K)`` raw logits. calibrated: ``(n, K)`` calibrated probabilities.
        au_names: model AUs. au_columns: model AU -> label-set AU.
        calibrations: fold -> per-AU calibration applied to that fold's rows.
        checkpoints: fold -> checkpoint path (or the one checkpoint under key "0").
        loss: MDWA settings of the model's recipe: margin, gammas, gamma_tiers (for p*).
        source: how the probabilities were made (JSON-safe description).
    """

    rows: np.ndarray
    fold: np.ndarray
    logits: np.ndarray
    calibrated: np.ndarray
    au_names: list[str]
    au_columns: dict[str, str]
    calibrations: dict[int, Calibration]
    checkpoints: dict[int, str]
    loss: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_probs(self) -> np.ndarray:
        return sigmoid(self.logits).astype(np.float32)

    @property
    def label_aus(self) -> list[str]:
        return [self.au_columns.get(a, a) for a in self.au_names]

    def attrs(self) -> dict[str, Any]:
        return {
            "au_names": list(self.au_names), "au_columns": dict(self.au_columns),
            "calibrations": {str(k): v.to_dict() for k, v in self.calibrations.items()},
            "checkpoints": {str(k): str(v) for k, v in self.checkpoints.items()}, "loss": dict(self.loss),
            "source": dict(self.source), "out_of_fold": True,
        }


def loss_settings(recipe) -> dict[str, Any]:
    """``{margin, gammas, gamma_tiers}`` of a recipe's loss section (what p* depends on)."""
    loss = recipe.loss
    return {"margin": float(loss.margin), "gammas": dict(loss.gammas) if loss.gammas else None,
            "gamma_tiers": [float(g) for g in loss.gamma_tiers]}


def from_training(store: str | Path, recipe, *, out: str | Path, label_set: str | None, folds: int | None = None,
                  calibration: str = "platt", resume: bool = False, weights: str | None = None,
                  show_progress: bool = False) -> OutOfFold:
    """Train ``folds`` subject-fold models (``recipe``) and return their out-of-fold predictions."""
    from aucli.engine import out_of_fold_predictions

    result = out_of_fold_predictions(store, recipe, out=out, label_set=label_set, folds=folds, calibration=calibration,
                                     resume=resume, weights=weights, show_progress=show_progress)
    return OutOfFold(
        rows=result.rows.astype(np.int64), fold=result.fold.astype(np.int32), logits=result.logits.astype(np.float32),
        calibrated=result.calibrated.astype(np.float32), au_names=list(result.au_names), au_columns=dict(result.au_columns),
        calibrations=dict(result.calibrations), checkpoints={k: str(v) for k, v in result.checkpoints.items()},
        loss=loss_settings(result.run.recipe),
        source={"kind": "training", "run": str(result.run.folder), "method": result.run.recipe.train.method,
                "label_set": result.label_set, "folds": len(result.checkpoints), "calibration": calibration},
    )


def _subject_groups(subjects: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """``(n,)`` 1-based group of each row: subjects split into ``folds`` balanced groups."""
    from aucli.protocols import balanced_partitions

    partitions = balanced_partitions(sorted(set(subjects.tolist())), folds, seed=seed)
    group_of = {s: g + 1 for g, part in enumerate(partitions) for s in part}
    return np.array([group_of[s] for s in subjects], dtype=np.int32)


def cross_fit_calibration(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, au_names: list[str],
                          method: str = "platt") -> tuple[np.ndarray, dict[int, Calibration]]:
    """Calibrate each group's logits on the other groups' labels: ``(calibrated (n, K), {group: calibration})``."""
    calibrated = np.empty(logits.shape, np.float32)
    calibrations: dict[int, Calibration] = {}
    for group in np.unique(groups):
        held = groups == group
        fitted = fit_calibration(logits[~held], labels[~held], au_names=au_names, method=method)  # type: ignore[arg-type]
        calibrations[int(group)] = fitted
        calibrated[held] = fitted.apply(logits[held])
    return calibrated, calibrations


def from_checkpoint(store: str | Path, checkpoint: str | Path, *, label_set: str, folds: int = 3, calibration: str = "platt",
                    device: str = "auto", batch_size: int = 64, seed: int = 0, backbone_weights: str | None = None,
                    au_map: str | None = None) -> OutOfFold:
    """Predictions of a checkpoint trained elsewhere, calibrated by cross-fitting over subject groups."""
    from aucli.config import parse_au_map
    from aucli.console import warn
    from aucli.model.checkpoint import load_model_checkpoint
    from aucli.engine.data import AugmentedFaces, FaceTransform, label_columns, store_dataset
    from aucli.engine.distributed import resolve_device
    from aucli.engine.evaluate import predict_logits
    from aucli.store import CorpusStore

    torch_device = resolve_device(device)
    loaded = load_model_checkpoint(checkpoint, device=torch_device, backbone_weights=backbone_weights)
    with CorpusStore.open(store) as opened:
        label_aus = opened.read_labels(label_set).au_names
    pairs = label_columns(loaded.au_names, label_aus, parse_au_map(au_map) if au_map else {}, require_all=False)
    model_index = [loaded.au_names.index(a) for a in pairs]
    dataset = store_dataset(store, labels=label_set, label_aus=list(pairs.values()))
    subjects = np.asarray(dataset.subjects, dtype=object)
    keep = np.ones(len(dataset), bool)
    note = ""
    training = loaded.meta.get("training") or {}
    trained_on = training.get("store")
    if trained_on and Path(trained_on).resolve() == Path(store).resolve():
        test_subjects = list((training.get("subjects") or {}).get("test") or [])
        keep = np.isin(subjects, test_subjects)
        note = f"checkpoint trained on this store: only its {len(test_subjects)} test subject(s) are audited"
        warn(f"{Path(checkpoint).name} was trained on {store}; auditing only its test subjects "
             f"({', '.join(test_subjects) or 'none'}), the others were in its training data")
        if not keep.any():
            raise UsageError(f"{checkpoint} was trained on {store} and left no test subject to audit; "
                             "train fold models with `aucli audit STORE --labels NAME` instead")
    rows_all = np.asarray(dataset.rows, dtype=np.int64)
    image_size = int(loaded.data_config["input_size"][-1])
    faces = AugmentedFaces(dataset, FaceTransform.from_config(loaded.recipe.data, image_size, train=False), indices=np.flatnonzero(keep))
    rows, logits = predict_logits(loaded.model, faces, device=torch_device, precision=loaded.recipe.train.precision,
                                  batch_size=batch_size, mean=loaded.data_config["mean"], std=loaded.data_config["std"])
    logits = logits[:, model_index]
    position = {int(r): i for i, r in enumerate(rows_all)}
    index = np.array([position[int(r)] for r in rows], dtype=np.int64)
    labels, row_subjects = dataset.labels[index], subjects[index]
    n_subjects = len(set(row_subjects.tolist()))
    if n_subjects < 2:
        raise UsageError(f"calibrating a checkpoint's probabilities needs labelled faces of at least 2 subjects "
                         f"(held-out calibration); found {n_subjects}")
    groups = _subject_groups(row_subjects, min(folds, n_subjects), seed)
    names = list(pairs)
    calibrated, calibrations = cross_fit_calibration(logits, labels, groups, au_names=names, method=calibration)
    order = np.argsort(rows, kind="stable")
    return OutOfFold(
        rows=rows[order], fold=groups[order], logits=logits[order].astype(np.float32), calibrated=calibrated[order],
        au_names=names, au_columns=dict(pairs), calibrations=calibrations, checkpoints={0: str(loaded.path)},
        loss=loss_settings(loaded.recipe),
        source={"kind": "checkpoint", "checkpoint": str(loaded.path), "method": loaded.method, "label_set": label_set,
                "calibration": f"{calibration}, cross-fitted over {int(groups.max())} subject groups", "note": note},
    )


def from_predictions(store, name: str) -> OutOfFold:
    """Out-of-fold predictions stored in ``/predictions/<name>`` (layout in the module docstring).

    Args:
        store: an open :class:`aucli.store.CorpusStore`.
    """
    run = store.read_run("predictions", name)
    attrs, arrays = run.attrs, run.arrays
    if not attrs.get("out_of_fold"):
        raise UsageError(f"predictions run {name!r} is not marked out-of-fold: its model may have trained on the frames it "
                         "judges. Audit with --checkpoint CKPT (a model trained elsewhere) or let audit train fold models")
    missing = [key for key in ("rows", "logits") if key not in arrays]
    if missing or "au_names" not in attrs:
        raise StoreError(f"predictions run {name!r} lacks {', '.join(missing + ([] if 'au_names' in attrs else ['au_names']))}; "
                         "expected the out-of-fold layout of aucli.audit.sources")
    au_names = list(attrs["au_names"])
    logits = np.asarray(arrays["logits"], np.float32)
    rows = np.asarray(arrays["rows"], np.int64)
    fold = np.asarray(arrays.get("fold", np.zeros(rows.size, np.int32)), np.int32)
    calibrations = {int(k): Calibration.from_dict(v) for k, v in (attrs.get("calibrations") or {}).items()}
    if "calibrated" in arrays:
        calibrated = np.asarray(arrays["calibrated"], np.float32)
    else:
        missing_folds = sorted(set(np.unique(fold).tolist()) - set(calibrations))
        if missing_folds:
            raise StoreError(f"predictions run {name!r} has neither calibrated probabilities nor a calibration for fold(s) "
                             f"{missing_folds}")
        calibrated = np.empty(logits.shape, np.float32)
        for f in np.unique(fold):
            calibrated[fold == f] = calibrations[int(f)].apply(logits[fold == f])
    if logits.shape != calibrated.shape or logits.shape != (rows.size, len(au_names)):
        raise StoreError(f"predictions run {name!r}: rows {rows.shape}, logits {logits.shape}, calibrated {calibrated.shape} "
                         f"do not fit {len(au_names)} AUs")
    return OutOfFold(
        rows=rows, fold=fold, logits=logits, calibrated=calibrated, au_names=au_names,
        au_columns=dict(attrs.get("au_columns") or {a: a for a in au_names}), calibrations=calibrations,
        checkpoints={int(k): str(v) for k, v in (attrs.get("checkpoints") or {}).items()},
        loss=dict(attrs.get("loss") or {}),
        source={**dict(attrs.get("source") or {}), "predictions": name},
    )


def write_out_of_fold(store, name: str, oof: OutOfFold) -> None:
    """Store ``oof`` as ``/predictions/<name>`` (atomic) so that later audits can reuse it.

    Args:
        store: a writable :class:`aucli.store.CorpusStore`.
    """
    arrays = {"rows": oof.rows, "fold": oof.fold, "logits": oof.logits, "calibrated": oof.calibrated}
    store.write_run("predictions", name, arrays, oof.attrs())


def from_arrays(rows, logits=None, *, probs=None, calibrated=None, au_names, labels=None, groups=None,
                loss: dict[str, Any] | None = None, source: dict[str, Any] | None = None) -> OutOfFold:
    """Out-of-fold predictions given as arrays (the benchmark, tests, other tools).

    Give ``calibrated`` probabilities, or raw ``logits``/``probs`` plus ``labels`` and subject
    ``groups`` to cross-fit a calibration (:func:`cross_fit_calibration`).
    """
    rows = np.asarray(rows, np.int64)
    if logits is None:
        if probs is None and calibrated is None:
            raise UsageError("give logits, probs or calibrated probabilities")
        logits = logit(probs if probs is not None else calibrated)
    logits = np.asarray(logits, np.float32)
    calibrations: dict[int, Calibration] = {}
    fold = np.zeros(rows.size, np.int32) if groups is None else np.asarray(groups, np.int32)
    if calibrated is None:
        if labels is None or groups is None:
            raise UsageError("uncalibrated predictions need labels and subject groups to cross-fit a calibration")
        calibrated, calibrations = cross_fit_calibration(logits, np.asarray(labels), fold, au_names=list(au_names))
    return OutOfFold(rows=rows, fold=fold, logits=logits, calibrated=np.asarray(calibrated, np.float32),
                     au_names=list(au_names), au_columns={a: a for a in au_names}, calibrations=calibrations,
                     checkpoints={}, loss=dict(loss or {}), source=dict(source or {"kind": "arrays"}))
