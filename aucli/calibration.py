"""Per-AU probability calibration fitted on held-out data: Platt scaling (default) or isotonic.

Why: MDWA is asymmetric. Positives keep the full log term while negatives are down-weighted by
``p_m**gamma`` and truncated below the margin, so a trained model's sigmoid outputs sit above the
true frequencies. Thresholds can absorb that for detection, but ``aucli audit`` reads probabilities
as probabilities ("p = 0.97 on a frame labelled 0"), so they must be calibrated per AU on subjects
the model did not train on.

Default, Platt scaling: ``p = sigmoid(a * z + b)`` on the logit ``z``, fitted by Newton's method on
Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``. Two parameters per AU fit
reliably on the few held-out subjects a fold leaves (hundreds of frames, tens of positives); the map
is strictly increasing, so rankings, AUC and audit orderings are unchanged; it extrapolates smoothly
into the tail ``p -> 1`` where audit looks. Isotonic regression (pool adjacent violators,
interpolated linearly between blocks) is more flexible but needs many positives, overfits small
sets, and creates ties that flatten a ranking; offer it for large held-out sets.

An AU falls back to the identity (``p = sigmoid(z)``) and the reason is recorded when it has fewer
than ``min_per_class`` known positives or negatives, when the fit does not converge, or when the
fitted slope is not positive (the model ranks that AU backwards on held-out data).
Calibrations serialise to JSON (checkpoints, audit records).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from aucli.errors import ModelError, UsageError
from aucli.metrics import _as_numpy, check_labels

__all__ = [
    "AUCalibration",
    "Calibration",
    "CalibrationMethod",
    "calibration_error",
    "fit_calibration",
    "logit",
    "sigmoid",
]

CalibrationMethod = Literal["platt", "isotonic"]
FORMAT = "aucli.calibration/1"
DEFAULT_MIN_PER_CLASS = 5
_LOGIT_EPS = 1e-7


def sigmoid(x) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def logit(probs, *, eps: float = _LOGIT_EPS) -> np.ndarray:
    """``log(p / (1 - p))`` with p clipped to ``[eps, 1 - eps]`` (stored float32 probabilities reach 1)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


@dataclass
class AUCalibration:
    """One AU's map from logit to probability.

    ``method`` is ``"platt"`` (``slope``, ``intercept``), ``"isotonic"`` (knots ``x`` on the logit
    axis, probabilities ``y``, linear in between, constant beyond) or ``"identity"`` (``note`` says
    why). ``log_loss_raw`` / ``log_loss_calibrated`` are measured on the data it was fitted on.
    """

    method: Literal["platt", "isotonic", "identity"]
    slope: float = 1.0
    intercept: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    n_samples: int = 0
    n_positive: int = 0
    log_loss_raw: float | None = None
    log_loss_calibrated: float | None = None
    note: str | None = None

    def apply(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "platt":
            return sigmoid(self.slope * z + self.intercept)
        if self.method == "isotonic":
            return np.interp(z, np.asarray(self.x), np.asarray(self.y))
        return sigmoid(z)


def _fit_platt(z: np.ndarray, positive: np.ndarray) -> tuple[float, float] | None:
    """Newton's method with backtracking on Platt's smoothed targets; None if it does not converge."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    target = np.where(positive, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def objective(a: float, b: float) -> float:
        s = a * z + b
        return float(np.sum(target * np.logaddexp(0.0, -s) + (1 - target) * np.logaddexp(0.0, s)))

    a, b = 1.0, 0.0
    value = objective(a, b)
    for _ in range(100):
        p = sigmoid(a * z + b)
        gradient = np.array([np.sum((p - target) * z), np.sum(p - target)])
        if np.max(np.abs(gradient)) < 1e-9 * z.size:
            return a, b
        w = p * (1 - p) + 1e-12
        hessian = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]]) + 1e-10 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-10:
            new_a, new_b = a - size * step[0], b - size * step[1]
            new_value = objective(new_a, new_b)
            if new_value <= value - 1e-4 * size * float(gradient @ step):
                break
            size /= 2
        else:  # no step decreased the objective: at the optimum up to rounding, or stuck
            return (a, b) if np.max(np.abs(gradient)) < 1e-6 * z.size else None
        a, b, value = new_a, new_b, new_value
    return None


def _fit_isotonic(z: np.ndarray, positive: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool adjacent violators on the sorted logits; knots at each block's first and last logit."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    unique, inverse = np.unique(z, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    total = np.bincount(inverse, weights=positive.astype(np.float64))
    # Blocks as stacks: (sum of y, weight, first unique index, last unique index).
    sums, weights, firsts, lasts = [], [], [], []
    for k in range(unique.size):
        sums.append(total[k])
        weights.append(weight[k])
        firsts.append(k)
        lasts.append(k)
        while len(sums) > 1 and sums[-2] / weights[-2] >= sums[-1] / weights[-1]:
            s, w, last = sums.pop(), weights.pop(), lasts.pop()
            firsts.pop()
            sums[-1] += s
            weights[-1] += w
            lasts[-1] = last
    # Keep probabilities inside Platt's smoothed targets: never exactly 0 or 1.
    low, high = 1.0 / (n_neg + 2.0), (n_pos + 1.0) / (n_pos + 2.0)
    xs, ys = [], []
    for s, w, first, last in zip(sums, weights, firsts, lasts):
        value = float(np.clip(s / w, low, high))
        for k in (first, last) if last != first else (first,):
            xs.append(float(unique[k]))
            ys.append(value)
    return xs, ys


@dataclass
class Calibration:
    """Per-AU calibrations, in the column order of ``au_names``."""

    au_names: list[str]
    per_au: list[AUCalibration]
    method: str = "platt"

    @classmethod
    def identity(cls, au_names: Sequence[str], note: str = "not calibrated") -> Calibration:
        return cls(list(au_names), [AUCalibration("identity", note=note) for _ in au_names], method="identity")

    @property
    def fallbacks(self) -> dict[str, str]:
        """AUs left at the identity and why."""
        return {name: cal.note or "" for name, cal in zip(self.au_names, self.per_au) if cal.method == "identity"}

    def apply(self, logits) -> np.ndarray:
        """Calibrated probabilities ``(n, n_aus)`` from logits ``(n, n_aus)``."""
        z = _as_numpy(logits).astype(np.float64)
        if z.ndim != 2 or z.shape[1] != len(self.per_au):
            raise UsageError(f"logits must be (n_frames, {len(self.per_au)}) for AUs {self.au_names}; "
                             f"found shape {z.shape}.")
        return np.column_stack([cal.apply(z[:, i]) for i, cal in enumerate(self.per_au)]) if z.shape[0] else z.copy()

    def apply_probs(self, probs) -> np.ndarray:
        """Calibrated probabilities from raw sigmoid probabilities (``logit`` of them, then :meth:`apply`)."""
        return self.apply(logit(_as_numpy(probs)))

    def subset(self, au_names: Sequence[str]) -> Calibration:
        """The calibration of some AUs, in the given order (cross-corpus evaluation)."""
        missing = [n for n in au_names if n not in self.au_names]
        if missing:
            raise UsageError(f"no calibration for {missing}; calibrated AUs: {self.au_names}.")
        return Calibration(list(au_names), [self.per_au[self.au_names.index(n)] for n in au_names], self.method)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "au_names": list(self.au_names),
                "per_au": [asdict(cal) for cal in self.per_au]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"not a calibration record: expected format {FORMAT!r}, found {found!r}.")
        names, entries = list(data["au_names"]), data["per_au"]
        if len(names) != len(entries):
            raise ModelError(f"calibration record lists {len(names)} AUs but {len(entries)} calibrations.")
        per_au = []
        for name, entry in zip(names, entries):
            cal = AUCalibration(**entry)
            if cal.method not in ("platt", "isotonic", "identity") or (
                    cal.method == "isotonic" and (len(cal.x) != len(cal.y) or not cal.x)):
                raise ModelError(f"calibration record for {name} is malformed (method {cal.method!r}).")
            per_au.append(cal)
        return cls(names, per_au, data.get("method", "platt"))

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        return cls.from_dict(json.loads(text))

    def table(self):
        from rich.table import Table

        table = Table(title=f"Calibration ({self.method})")
        for column in ("AU", "method", "slope", "intercept", "frames", "positives", "log loss", "note"):
            table.add_column(column, justify="left" if column in ("AU", "method", "note") else "right")
        for name, cal in zip(self.au_names, self.per_au):
            loss = ("-" if cal.log_loss_raw is None else
                    f"{cal.log_loss_raw:.3f} -> {cal.log_loss_calibrated:.3f}")
            platt = cal.method == "platt"
            table.add_row(name, cal.method, f"{cal.slope:.3f}" if platt else "-", f"{cal.intercept:.3f}" if platt else "-",
                          f"{cal.n_samples:,}", f"{cal.n_positive:,}", loss, cal.note or "")
        return table

    def __rich__(self):
        return self.table()


def fit_calibration(logits, labels, *, au_names: Sequence[str] | None = None, method: CalibrationMethod = "platt",
                    min_per_class: int = DEFAULT_MIN_PER_CLASS) -> Calibration:
    """Fit one calibration per AU on held-out data (never the frames being judged or tested).

    Args:
        logits: ``(n_frames, n_aus)`` model logits (for stored probabilities use :func:`logit`).
        labels: ``(n_frames, n_aus)`` in {-1, 0, 1, 9}; unknown labels are left out.
        au_names: column names (default ``col0``, ...).
        method: ``"platt"`` (default) or ``"isotonic"``.
        min_per_class: fewer known positives or negatives than this -> identity, with the reason.
    """
    if method not in ("platt", "isotonic"):
        raise UsageError(f"calibration method must be 'platt' or 'isotonic'; found {method!r}.")
    z = _as_numpy(logits).astype(np.float64)
    labels = check_labels(labels)
    if z.shape != labels.shape:
        raise UsageError(f"logits {z.shape} and labels {labels.shape} must have the same (n_frames, n_aus) shape.")
    if not np.all(np.isfinite(z)):
        raise UsageError("logits hold NaN or infinite values; calibration needs finite logits.")
    names = list(au_names) if au_names is not None else [f"col{i}" for i in range(z.shape[1])]
    if len(names) != z.shape[1]:
        raise UsageError(f"{len(names)} AU names given for {z.shape[1]} columns.")
    per_au = []
    for i in range(z.shape[1]):
        valid = (labels[:, i] == 0) | (labels[:, i] == 1)
        zi, yi = z[valid, i], labels[valid, i] == 1
        n_pos, n_neg = int(yi.sum()), int((~yi).sum())
        counts = dict(n_samples=int(zi.size), n_positive=n_pos)
        if min(n_pos, n_neg) < min_per_class:
            per_au.append(AUCalibration("identity", **counts, note=(
                f"too few held-out samples: {n_pos} positive, {n_neg} negative (need {min_per_class} of each)")))
            continue
        if method == "platt":
            fitted = _fit_platt(zi, yi)
            if fitted is None:
                per_au.append(AUCalibration("identity", **counts, note="Platt fit did not converge"))
                continue
            slope, intercept = fitted
            if not slope > 0:
                per_au.append(AUCalibration("identity", **counts, note=(
                    f"fitted slope {slope:.3g} <= 0: the model ranks this AU backwards on held-out data")))
                continue
            cal = AUCalibration("platt", slope=float(slope), intercept=float(intercept), **counts)
        else:
            xs, ys = _fit_isotonic(zi, yi)
            cal = AUCalibration("isotonic", x=xs, y=ys, **counts)
        cal.log_loss_raw = _log_loss(sigmoid(zi), yi)
        cal.log_loss_calibrated = _log_loss(cal.apply(zi), yi)
        per_au.append(cal)
    return Calibration(names, per_au, method)


def calibration_error(probs, labels, *, n_bins: int = 10) -> np.ndarray:
    """Expected calibration error per AU ``(n_aus,)``: equal-width bins of p, the mean of
    ``|mean p - frequency of 1|`` weighted by bin size, over known labels (NaN without any)."""
    p = _as_numpy(probs).astype(np.float64)
    labels = check_labels(labels)
    if p.shape != labels.shape:
        raise UsageError(f"probabilities {p.shape} and labels {labels.shape} must have the same shape.")
    errors = np.full(p.shape[1], np.nan)
    for i in range(p.shape[1]):
        valid = (labels[:, i] == 0) | (labels[:, i] == 1)
        if not valid.any():
            continue
        pi, yi = p[valid, i], (labels[valid, i] == 1).astype(np.float64)
        bins = np.minimum((pi * n_bins).astype(np.int64), n_bins - 1)
        count = np.bincount(bins, minlength=n_bins)
        gap = np.abs(np.bincount(bins, weights=pi, minlength=n_bins) - np.bincount(bins, weights=yi, minlength=n_bins))
        errors[i] = gap.sum() / count.sum()
    return errors
