"""Per-AU detection metrics and label-set agreement, as the AU literature computes them.

Definitions (all per AU, over the rows whose label is known: 0 or 1; -1 and 9 are masked):

- **F1** from TP, FP and FN summed over the whole evaluation set (a test fold), not averaged over
  batches; a frame is predicted positive when ``p >= threshold`` (0.5 unless fitted on validation
  data). An AU with no positive label and no positive prediction has no F1: NaN, shown as ``-``.
  **Mean F1** is the mean over the AUs that have one.
- **AUC**: the area under the ROC curve, computed from ranks (Mann-Whitney U, ties counted half).
  An AU whose known labels are all of one class has no AUC: NaN, shown as ``-``, left out of the mean.
- **Cohen's kappa** between two label sets over the rows both code; NaN when both sets use one and
  the same class throughout (chance agreement 1).
- **ICC(3,1)** of two (or more) sets of intensities: Shrout & Fleiss (1979) case 3, single rater,
  consistency: ``(BMS - EMS) / (BMS + (k - 1) EMS)`` from the two-way ANOVA of the targets (rows
  with every rating finite) by raters. NaN with fewer than two targets or no variance.
- Events (runs over time, temporal IoU, event F1) live in :mod:`aucli.events`.

Inputs are numpy arrays (torch tensors are converted); F1, AUC and rates are fractions in [0, 1]
(tables show percent). This module does not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aucli.errors import LabelFormatError, UsageError

__all__ = [
    "ConfusionCounts",
    "MetricReport",
    "agreement_f1",
    "auc_scores",
    "check_labels",
    "cohen_kappa",
    "confusion_counts",
    "evaluate",
    "f1_scores",
    "icc_3_1",
    "intensity_icc",
    "f1_curve",
    "fit_thresholds",
    "nanmean",
]

DEFAULT_THRESHOLD = 0.5


# --------------------------------------------------------------------------------------------
# Input handling


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    return np.asarray(values)


def check_labels(labels, name: str = "labels") -> np.ndarray:
    """``labels`` as a 2-D numpy array; raises unless it holds only 0, 1, -1 and 9."""
    labels = _as_numpy(labels)
    if labels.ndim != 2:
        raise UsageError(f"{name} must be (n_frames, n_aus); found shape {labels.shape}.")
    bad = np.setdiff1d(np.unique(labels), [-1, 0, 1, 9])
    if bad.size:
        raise LabelFormatError(f"{name} may only hold 0, 1 and the unknown markers -1 and 9; "
                               f"found {bad[:5].tolist()}.")
    return labels


def _probs_and_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs = _as_numpy(probs).astype(np.float64, copy=False)
    labels = check_labels(labels)
    if probs.shape != labels.shape:
        raise UsageError(f"probabilities {probs.shape} and labels {labels.shape} must have the same "
                         "(n_frames, n_aus) shape.")
    return probs, labels


def _thresholds(thresholds, n_aus: int) -> np.ndarray:
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.full(n_aus, values[0])
    if values.size != n_aus:
        raise UsageError(f"{values.size} thresholds given for {n_aus} AUs; give one, or one per AU.")
    return values


def nanmean(values) -> float:
    """Mean over the finite entries (NaN when there is none), without numpy's empty-slice warning."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _ratio(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


# --------------------------------------------------------------------------------------------
# Detection metrics


@dataclass
class ConfusionCounts:
    """Per-AU counts ``(n_aus,)``; add counts of several batches or ranks, then read ``f1``."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def f1(self) -> np.ndarray:
        """``2 TP / (2 TP + FP + FN)``; NaN where there is no positive label nor prediction."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fn)


def confusion_counts(probs, labels, thresholds=DEFAULT_THRESHOLD) -> ConfusionCounts:
    """TP/FP/FN/TN per AU of ``probs >= thresholds`` against the known labels.

    Args:
        probs: ``(n_frames, n_aus)`` probabilities (or any score the thresholds apply to).
        labels: ``(n_frames, n_aus)`` in {-1, 0, 1, 9}.
        thresholds: one value, or ``(n_aus,)``.
    """
    probs, labels = _probs_and_labels(probs, labels)
    predicted = probs >= _thresholds(thresholds, labels.shape[1])
    positive, negative = labels == 1, labels == 0
    return ConfusionCounts(tp=(predicted & positive).sum(0), fp=(predicted & negative).sum(0),
                           fn=(~predicted & positive).sum(0), tn=(~predicted & negative).sum(0))


def f1_scores(probs, labels, thresholds=DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-AU F1 ``(n_aus,)`` from TP/FP/FN summed over all rows (see the module docstring)."""
    return confusion_counts(probs, labels, thresholds).f1


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc_scores(probs, labels) -> np.ndarray:
    """Per-AU ROC AUC ``(n_aus,)`` from ranks; NaN for an AU whose known labels are one class."""
    probs, labels = _probs_and_labels(probs, labels)
    auc = np.full(labels.shape[1], np.nan)
    for i in range(labels.shape[1]):
        valid = (labels[:, i] == 0) | (labels[:, i] == 1)
        y = labels[valid, i] == 1
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = _average_ranks(probs[valid, i])
        auc[i] = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc


def f1_curve(probs: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cuts, f1)``: every distinct probability of one AU as a cut (predict ``p >= cut``), highest first,
    and the F1 it gives against the boolean ``positive``."""
    order = np.argsort(-probs, kind="mergesort")
    p, y = probs[order], positive[order]
    last_of_value = np.r_[p[1:] != p[:-1], True]  # the last row of each distinct value
    tp = np.cumsum(y)[last_of_value]
    predicted = (np.flatnonzero(last_of_value) + 1).astype(np.float64)
    return p[last_of_value], 2 * tp / (predicted + y.sum())  # 2TP / (2TP + FP + FN), with TP + FP = predicted


def fit_thresholds(probs, labels, *, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-AU thresholds ``(n_aus,)`` that maximise F1 on validation data (never the test fold).

    Every distinct probability is tried as a cut; the chosen threshold lies halfway between the
    lowest probability predicted positive and the next lower one, so it is not tied to one sample.
    Among equal F1 the highest cut wins. An AU without both a positive and a negative known label
    keeps ``default``.
    """
    probs, labels = _probs_and_labels(probs, labels)
    thresholds = np.full(labels.shape[1], float(default))
    for i in range(labels.shape[1]):
        valid = (labels[:, i] == 0) | (labels[:, i] == 1)
        p, y = probs[valid, i], labels[valid, i] == 1
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            continue
        values, f1 = f1_curve(p, y)
        k = int(np.argmax(f1))
        cut = values[k]
        if k + 1 < values.size:
            middle = (values[k] + values[k + 1]) / 2
            cut = middle if middle > values[k + 1] else values[k]
        thresholds[i] = cut
    return thresholds


@dataclass
class MetricReport:
    """Per-AU evaluation: F1, AUC, positive rate, threshold and counts, with their means.

    Arrays are ``(n_aus,)``; F1, AUC and rate are fractions (NaN where undefined). ``console.print``
    renders it as a table; ``to_dict`` / ``to_json`` serialise it (NaN as null).
    """

    au_names: list[str]
    f1: np.ndarray
    auc: np.ndarray
    rate: np.ndarray
    threshold: np.ndarray
    n_valid: np.ndarray
    n_positive: np.ndarray
    title: str = "AU detection"

    @property
    def mean_f1(self) -> float:
        return nanmean(self.f1)

    @property
    def mean_auc(self) -> float:
        return nanmean(self.auc)

    def to_dict(self) -> dict[str, Any]:
        def plain(values, kind=float):
            return [None if kind is float and not np.isfinite(v) else kind(v) for v in np.asarray(values)]

        return {
            "title": self.title,
            "mean_f1": _finite_or_none(self.mean_f1),
            "mean_auc": _finite_or_none(self.mean_auc),
            "per_au": {
                "au": list(self.au_names),
                "f1": plain(self.f1), "auc": plain(self.auc), "rate": plain(self.rate),
                "threshold": plain(self.threshold),
                "n_valid": plain(self.n_valid, int), "n_positive": plain(self.n_positive, int),
            },
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricReport:
        per_au = data["per_au"]

        def arr(key, dtype=np.float64):
            return np.array([np.nan if v is None else v for v in per_au[key]], dtype=dtype)

        return cls(au_names=list(per_au["au"]), f1=arr("f1"), auc=arr("auc"), rate=arr("rate"),
                   threshold=arr("threshold"), n_valid=arr("n_valid", np.int64),
                   n_positive=arr("n_positive", np.int64), title=data.get("title", "AU detection"))

    def table(self):
        """A rich Table: one row per AU, then the mean."""
        from rich.table import Table

        table = Table(title=self.title)
        for column in ("AU", "F1 %", "AUC %", "rate %", "threshold", "frames"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        for i, name in enumerate(self.au_names):
            table.add_row(name, _percent(self.f1[i]), _percent(self.auc[i]), _percent(self.rate[i]),
                          f"{self.threshold[i]:.3f}", f"{int(self.n_valid[i]):,}")
        table.add_section()
        table.add_row("mean", _percent(self.mean_f1), _percent(self.mean_auc), "", "", "", style="bold")
        return table

    def __rich__(self):
        return self.table()


def evaluate(probs, labels, *, au_names: Sequence[str] | None = None, thresholds=DEFAULT_THRESHOLD,
             title: str = "AU detection") -> MetricReport:
    """Per-AU F1 (summed counts), AUC, rate and counts of ``probs`` against ``labels``.

    Args:
        probs: ``(n_frames, n_aus)`` probabilities.
        labels: ``(n_frames, n_aus)`` in {-1, 0, 1, 9}.
        au_names: column names (default ``col0``, ``col1``, ...).
        thresholds: one value or ``(n_aus,)``, e.g. from :func:`fit_thresholds`.
    """
    probs, labels = _probs_and_labels(probs, labels)
    n_aus = labels.shape[1]
    names = list(au_names) if au_names is not None else [f"col{i}" for i in range(n_aus)]
    if len(names) != n_aus:
        raise UsageError(f"{len(names)} AU names given for {n_aus} columns.")
    thresholds = _thresholds(thresholds, n_aus)
    valid = (labels == 0) | (labels == 1)
    n_valid, n_positive = valid.sum(0), (labels == 1).sum(0)
    return MetricReport(au_names=names, f1=f1_scores(probs, labels, thresholds), auc=auc_scores(probs, labels),
                        rate=_ratio(n_positive, n_valid), threshold=thresholds, n_valid=n_valid,
                        n_positive=n_positive, title=title)


def _percent(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f}"


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# Agreement between two label sets


def _pair(reference, other) -> tuple[np.ndarray, np.ndarray]:
    """Both label sets with rows either leaves unknown set to -1 in both."""
    reference, other = check_labels(reference, "reference labels"), check_labels(other, "other labels")
    if reference.shape != other.shape:
        raise UsageError(f"label sets differ in shape: {reference.shape} and {other.shape}.")
    both = ((reference == 0) | (reference == 1)) & ((other == 0) | (other == 1))
    return np.where(both, reference, -1), np.where(both, other, -1)


def cohen_kappa(reference, other) -> np.ndarray:
    """Per-AU Cohen's kappa ``(n_aus,)`` over rows both sets code (see the module docstring)."""
    a, b = _pair(reference, other)
    valid = a >= 0
    n = valid.sum(0).astype(np.float64)
    agree = ((a == b) & valid).sum(0)
    pa, pb = _ratio((a == 1).sum(0), n), _ratio((b == 1).sum(0), n)
    chance = pa * pb + (1 - pa) * (1 - pb)
    observed = _ratio(agree, n)
    kappa = np.full(a.shape[1], np.nan)
    defined = np.isfinite(chance) & (chance < 1)
    kappa[defined] = (observed[defined] - chance[defined]) / (1 - chance[defined])
    return kappa


def agreement_f1(reference, other) -> np.ndarray:
    """Per-AU F1 of ``other`` taken as predictions of ``reference``, over rows both code."""
    a, b = _pair(reference, other)
    return f1_scores((b == 1).astype(np.float64), a, 0.5)


def icc_3_1(ratings) -> float:
    """ICC(3,1) of ``ratings`` ``(n_targets, k_raters)`` (Shrout & Fleiss 1979, case 3, single rater).

    Two-way ANOVA, raters fixed, consistency: ``(BMS - EMS) / (BMS + (k - 1) EMS)``. Rows with a
    non-finite rating are left out; NaN with fewer than two targets, fewer than two raters, or no
    variance at all.
    """
    x = _as_numpy(ratings).astype(np.float64)
    if x.ndim != 2:
        raise UsageError(f"ratings must be (n_targets, k_raters); found shape {x.shape}.")
    x = x[np.isfinite(x).all(axis=1)]
    n, k = x.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    bms = ss_rows / (n - 1)
    ems = ss_error / ((n - 1) * (k - 1))
    denominator = bms + (k - 1) * ems
    return float((bms - ems) / denominator) if denominator > 0 else float("nan")


def intensity_icc(reference, other) -> np.ndarray:
    """Per-AU ICC(3,1) ``(n_aus,)`` of two ``(n, n_aus)`` intensity matrices over rows where both are finite."""
    a, b = _as_numpy(reference).astype(np.float64), _as_numpy(other).astype(np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise UsageError(f"intensities must be two (n_frames, n_aus) arrays of one shape; found {a.shape} and {b.shape}.")
    return np.array([icc_3_1(np.stack([a[:, i], b[:, i]], axis=1)) for i in range(a.shape[1])])
