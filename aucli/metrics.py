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
- **Events**: maximal runs of 1s per (sequence, AU) over consecutive rows; a 0, an unknown label or
  a new sequence ends a run. Two events match when their temporal IoU (overlap / union, in rows) is
  at least ``min_iou`` (0.5 by default); matching is one-to-one, greedy by IoU. Event precision =
  matched / events of the other set, recall = matched / events of the reference, F1 their harmonic
  mean. When comparing two label sets, rows either set leaves unknown are unknown in both.

Inputs are numpy arrays (torch tensors are converted); F1, AUC and rates are fractions in [0, 1]
(tables show percent). This module does not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aucli.errors import LabelFormatError, UsageError

__all__ = [
    "AgreementReport",
    "ConfusionCounts",
    "EventAgreement",
    "MetricReport",
    "agreement_f1",
    "auc_scores",
    "check_labels",
    "cohen_kappa",
    "compare_label_sets",
    "confusion_counts",
    "evaluate",
    "event_agreement",
    "f1_scores",
    "find_events",
    "f1_curve",
    "fit_thresholds",
    "nanmean",
]

DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_IOU = 0.5


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


def _contiguous_sequences(sequences, n_rows: int) -> np.ndarray:
    if sequences is None:
        return np.zeros(n_rows, dtype=np.int64)
    sequences = np.asarray(sequences).reshape(-1)
    if sequences.size != n_rows:
        raise UsageError(f"sequences has {sequences.size} entries for {n_rows} rows.")
    changes = np.r_[True, sequences[1:] != sequences[:-1]]
    if changes.sum() != np.unique(sequences).size:
        raise UsageError("rows must be grouped by sequence (each sequence one contiguous block, in frame "
                         "order); sort them by (sequence, frame) first.")
    return np.cumsum(changes)


def find_events(labels, sequences=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Events (maximal runs of 1s) of every AU.

    Args:
        labels: ``(n_frames, n_aus)`` in {-1, 0, 1, 9}, rows in frame order within each sequence.
        sequences: ``(n_frames,)`` sequence ids (video, source), each one contiguous block of rows;
            None for one sequence.

    Returns:
        Per AU, ``(starts, stops)`` int arrays of row indices (``stop`` exclusive), sorted.
    """
    labels = check_labels(labels)
    block = _contiguous_sequences(sequences, labels.shape[0])
    new_block = np.r_[True, block[1:] != block[:-1]]
    events = []
    for i in range(labels.shape[1]):
        on = labels[:, i] == 1
        starts = np.flatnonzero(on & (new_block | ~np.r_[False, on[:-1]]))
        ends = np.flatnonzero(on & (np.r_[new_block[1:], True] | ~np.r_[on[1:], False])) + 1
        events.append((starts, ends))
    return events


def _match_events(ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], min_iou: float) -> int:
    """Number of one-to-one matches with IoU >= min_iou (greedy, highest IoU first)."""
    (ref_start, ref_stop), (oth_start, oth_stop) = ref, other
    candidates = []
    j0 = 0
    for i in range(ref_start.size):
        while j0 < oth_start.size and oth_stop[j0] <= ref_start[i]:
            j0 += 1
        j = j0
        while j < oth_start.size and oth_start[j] < ref_stop[i]:
            overlap = min(ref_stop[i], oth_stop[j]) - max(ref_start[i], oth_start[j])
            union = max(ref_stop[i], oth_stop[j]) - min(ref_start[i], oth_start[j])
            if overlap > 0 and overlap / union >= min_iou:
                candidates.append((overlap / union, i, j))
            j += 1
    used_ref, used_other = set(), set()
    for _, i, j in sorted(candidates, key=lambda c: -c[0]):
        if i not in used_ref and j not in used_other:
            used_ref.add(i)
            used_other.add(j)
    return len(used_ref)


@dataclass
class EventAgreement:
    """Per-AU event counts ``(n_aus,)``: events of each set and one-to-one matches."""

    n_reference: np.ndarray
    n_other: np.ndarray
    matched: np.ndarray
    min_iou: float = DEFAULT_MIN_IOU

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.matched, self.n_other)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.matched, self.n_reference)

    @property
    def f1(self) -> np.ndarray:
        """``2 matched / (n_reference + n_other)``; NaN where neither set has an event."""
        return _ratio(2 * self.matched, self.n_reference + self.n_other)


def event_agreement(reference, other, sequences=None, *, min_iou: float = DEFAULT_MIN_IOU) -> EventAgreement:
    """Event-level agreement of two label sets (see the module docstring for the criterion)."""
    if not 0.0 < min_iou <= 1.0:
        raise UsageError(f"min_iou must be in (0, 1]; found {min_iou}.")
    a, b = _pair(reference, other)
    events_a, events_b = find_events(a, sequences), find_events(b, sequences)
    return EventAgreement(
        n_reference=np.array([e[0].size for e in events_a]), n_other=np.array([e[0].size for e in events_b]),
        matched=np.array([_match_events(ea, eb, min_iou) for ea, eb in zip(events_a, events_b)]),
        min_iou=float(min_iou))


@dataclass
class AgreementReport:
    """Per-AU agreement of two label sets: kappa, frame F1, event F1, rates and coded rows."""

    au_names: list[str]
    kappa: np.ndarray
    f1: np.ndarray
    events: EventAgreement
    rate_reference: np.ndarray
    rate_other: np.ndarray
    n_both: np.ndarray
    names: tuple[str, str] = ("A", "B")

    def to_dict(self) -> dict[str, Any]:
        def plain(values):
            return [_finite_or_none(float(v)) for v in np.asarray(values, dtype=np.float64)]

        return {
            "reference": self.names[0], "other": self.names[1], "min_iou": self.events.min_iou,
            "mean_kappa": _finite_or_none(nanmean(self.kappa)), "mean_f1": _finite_or_none(nanmean(self.f1)),
            "mean_event_f1": _finite_or_none(nanmean(self.events.f1)),
            "per_au": {
                "au": list(self.au_names), "kappa": plain(self.kappa), "f1": plain(self.f1),
                "event_f1": plain(self.events.f1), "events_reference": self.events.n_reference.tolist(),
                "events_other": self.events.n_other.tolist(), "events_matched": self.events.matched.tolist(),
                "rate_reference": plain(self.rate_reference), "rate_other": plain(self.rate_other),
                "n_both": self.n_both.tolist(),
            },
        }

    def table(self):
        from rich.table import Table

        a, b = self.names
        table = Table(title=f"Agreement of {b} with {a}")
        for column in ("AU", "kappa", "F1 %", "event F1 %", f"events {a}/{b}/matched", f"rate {a} %",
                       f"rate {b} %", "frames"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        for i, name in enumerate(self.au_names):
            kappa = "-" if not np.isfinite(self.kappa[i]) else f"{self.kappa[i]:.3f}"
            table.add_row(name, kappa, _percent(self.f1[i]), _percent(self.events.f1[i]),
                          f"{self.events.n_reference[i]}/{self.events.n_other[i]}/{self.events.matched[i]}",
                          _percent(self.rate_reference[i]), _percent(self.rate_other[i]), f"{int(self.n_both[i]):,}")
        table.add_section()
        mean_kappa = nanmean(self.kappa)
        table.add_row("mean", "-" if not np.isfinite(mean_kappa) else f"{mean_kappa:.3f}", _percent(nanmean(self.f1)),
                      _percent(nanmean(self.events.f1)), "", "", "", "", style="bold")
        return table

    def __rich__(self):
        return self.table()


def compare_label_sets(reference, other, *, au_names: Sequence[str], sequences=None,
                       min_iou: float = DEFAULT_MIN_IOU, names: tuple[str, str] = ("A", "B")) -> AgreementReport:
    """Kappa, frame F1 and event agreement of ``other`` against ``reference`` (both ``(n, n_aus)``)."""
    a, b = _pair(reference, other)
    if len(au_names) != a.shape[1]:
        raise UsageError(f"{len(au_names)} AU names given for {a.shape[1]} columns.")
    n_both = (a >= 0).sum(0)
    return AgreementReport(au_names=list(au_names), kappa=cohen_kappa(a, b), f1=agreement_f1(a, b),
                           events=event_agreement(a, b, sequences, min_iou=min_iou),
                           rate_reference=_ratio((a == 1).sum(0), n_both), rate_other=_ratio((b == 1).sum(0), n_both),
                           n_both=n_both, names=tuple(names))
