"""Audit thresholds derived from MDWA's gradient peak p* (DESIGN.md sections 2 and 3).

MDWA's gradient for a negative label (y = 0) rises from 0 at ``p = m`` to a peak at ``p*`` and
falls towards 0 as ``p -> 1``: past ``p*`` the loss gives up on the label, treating it as probably
wrong. ``p*`` depends on the AU's focusing gamma and on the margin (0.844 for gamma 1, m 0.05;
:func:`aucli.losses.gradient_peak`). The audit reads that region as evidence:

- suspected **missed** AU: ``y = 0`` and calibrated ``p >= missed_i``, default ``missed_i = p*_i``
  (the truncated region of AU ``i``);
- suspected **spurious** label: ``y = 1`` and calibrated ``p <= spurious_i``, default
  ``spurious_i = 1 - p*_i``. MDWA keeps the plain log term for positives and truncates nothing, so
  this rule is not in the paper: it is this project's extension, the mirror image of the truncated
  region ("as sure it is absent as the loss had to be sure it was present to give up on a 0").

Both are tunable per AU (:func:`derive_thresholds`), and are applied to *calibrated* probabilities:
an asymmetric loss pushes raw sigmoid outputs upwards, so raw p is not a probability of anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aucli.aus import parse_au
from aucli.errors import UsageError
from aucli.losses import DEFAULT_GAMMA_TIERS, DEFAULT_MARGIN, gradient_peak, resolve_gammas

__all__ = ["AuditThresholds", "derive_thresholds", "parse_threshold_spec"]


@dataclass
class AuditThresholds:
    """Per-AU flag thresholds on calibrated probabilities, with where they came from.

    Attributes:
        au_names: the AUs, in column order.
        gammas: ``(n_aus,)`` MDWA focusing gamma of each AU.
        margin: MDWA margin m.
        p_star: ``(n_aus,)`` where the negative-sample gradient peaks for that gamma and m.
        missed: ``(n_aus,)`` a 0 label is flagged when calibrated p >= this.
        spurious: ``(n_aus,)`` a 1 label is flagged when calibrated p <= this.
        overridden: AUs whose thresholds were set by hand (name -> "missed", "spurious" or both).
    """

    au_names: list[str]
    gammas: np.ndarray
    margin: float
    p_star: np.ndarray
    missed: np.ndarray
    spurious: np.ndarray
    overridden: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "au_names": list(self.au_names), "gammas": [float(g) for g in self.gammas], "margin": float(self.margin),
            "p_star": [float(p) for p in self.p_star], "missed": [float(t) for t in self.missed],
            "spurious": [float(t) for t in self.spurious], "overridden": {k: list(v) for k, v in self.overridden.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditThresholds:
        return cls(
            au_names=list(data["au_names"]), gammas=np.asarray(data["gammas"], np.float64), margin=float(data["margin"]),
            p_star=np.asarray(data["p_star"], np.float64), missed=np.asarray(data["missed"], np.float64),
            spurious=np.asarray(data["spurious"], np.float64), overridden={k: list(v) for k, v in data.get("overridden", {}).items()},
        )

    def table(self):
        from rich.table import Table

        table = Table(title=f"Audit thresholds (calibrated p; MDWA margin m = {self.margin:g})")
        for column in ("AU", "gamma", "p*", "missed: y=0, p >=", "spurious: y=1, p <=", "source"):
            table.add_column(column, justify="left" if column in ("AU", "source") else "right")
        for i, name in enumerate(self.au_names):
            source = "set: " + ", ".join(self.overridden[name]) if name in self.overridden else "p*"
            table.add_row(name, f"{self.gammas[i]:g}", f"{self.p_star[i]:.3f}", f"{self.missed[i]:.3f}",
                          f"{self.spurious[i]:.3f}", source)
        return table

    def __rich__(self):
        return self.table()


def parse_threshold_spec(spec: str | float | Mapping[str, float] | None, au_names: Sequence[str], what: str) -> dict[str, float]:
    """``0.9`` (every AU), ``"AU12=0.9,AU4=0.8"`` or a mapping -> ``{AU: value}``; values in (0, 1)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    if isinstance(spec, (int, float)):
        values = {name: float(spec) for name in au_names}
    elif isinstance(spec, Mapping):
        values = {parse_au(k, known=list(au_names)): float(v) for k, v in spec.items()}
    else:
        text = spec.replace(" ", "")
        if "=" not in text:
            try:
                return parse_threshold_spec(float(text), au_names, what)
            except ValueError:
                raise UsageError(f"--{what}-threshold must be a probability (0.9) or AU=VALUE pairs (AU12=0.9,AU4=0.8); found {spec!r}") from None
        values = {}
        for item in filter(None, text.split(",")):
            name, _, value = item.partition("=")
            try:
                values[parse_au(name, known=list(au_names))] = float(value)
            except ValueError:
                raise UsageError(f"--{what}-threshold: {item!r} is not AU=VALUE (like AU12=0.9)") from None
    bad = {k: v for k, v in values.items() if not 0.0 < v < 1.0}
    if bad:
        raise UsageError(f"--{what}-threshold values must lie strictly between 0 and 1; found {bad}")
    return values


def derive_thresholds(
    au_names: Sequence[str],
    *,
    rates: Sequence[float] | np.ndarray | None = None,
    gammas: float | Sequence[float] | Mapping[str, float] | None = None,
    gamma_tiers: Sequence[float] = DEFAULT_GAMMA_TIERS,
    margin: float = DEFAULT_MARGIN,
    missed: str | float | Mapping[str, float] | None = None,
    spurious: str | float | Mapping[str, float] | None = None,
) -> AuditThresholds:
    """Per-AU thresholds from each AU's p* (gamma_i, m), with optional overrides.

    Args:
        au_names: the audited AUs.
        rates: ``(n_aus,)`` occurrence rates of the label set (for the default gamma tiers).
        gammas: explicit gammas (one value, one per AU, or ``{AU: gamma}``), as the training recipe's
            ``loss.gammas``; None: tiers by ``rates`` (:func:`aucli.losses.resolve_gammas`).
        gamma_tiers: the recipe's ``loss.gamma_tiers``.
        margin: the recipe's ``loss.margin``.
        missed, spurious: overrides (see :func:`parse_threshold_spec`).
    """
    names = [parse_au(a) for a in au_names]
    k = len(names)
    rates_array = np.full(k, np.nan) if rates is None else np.asarray(rates, dtype=np.float64).reshape(-1)
    if rates_array.size != k:
        raise UsageError(f"{rates_array.size} occurrence rates for {k} AUs")
    if rates is None and gammas is None:
        gammas = 1.0
    gamma_values = resolve_gammas(rates_array, gammas, gamma_tiers, au_names=names)
    peaks = np.array([gradient_peak(float(g), margin)[0] for g in gamma_values])
    missed_values, spurious_values = peaks.copy(), 1.0 - peaks
    overridden: dict[str, list[str]] = {}
    for what, values in (("missed", missed_values), ("spurious", spurious_values)):
        for name, value in parse_threshold_spec(missed if what == "missed" else spurious, names, what).items():
            values[names.index(name)] = value
            overridden.setdefault(name, []).append(what)
    crossed = [n for i, n in enumerate(names) if spurious_values[i] >= missed_values[i]]
    if crossed:
        raise UsageError(f"the spurious threshold must be below the missed threshold; it is not for {', '.join(crossed)}")
    return AuditThresholds(names, gamma_values, float(margin), peaks, missed_values, spurious_values, overridden)
