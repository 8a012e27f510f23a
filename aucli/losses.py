"""AUFormer's losses: MDWA (margin-truncated, difficulty-aware, weighted asymmetric) and weighted dice.

For AU ``i`` with probability ``p = sigmoid(z)`` and label ``y`` in {0, 1}::

    l_i = -[ y log p + (1 - y) * p_m**gamma_i * log(1 - p_m) ],   p_m = max(p - m, 0)
    L_MDWA = (1/N) sum_i w_i * (mean of l_i over the valid samples of AU i)
    L_WDI  = (1/N) sum_i w_i * (1 - (2 sum p y + 1) / (sum p**2 + sum y**2 + 1))
    L      = L_MDWA(main) + L_WDI(main) + lambda * mean over supervised blocks of L_MDWA(expert)

``w_i = N (1/r_i) / sum_j (1/r_j)`` with ``r_i`` the AU's occurrence rate in the training set
(JAA-Net, ME-GraphAU), ``gamma_i`` smaller for harder (rarer) AUs, margin ``m = 0.05``. Labels
other than 0 and 1 (by convention -1 = unknown and 9 = not coded, as in BP4D) are masked: they
change neither the loss nor any gradient. The focusing weight ``p_m**gamma`` is not detached.

The negative-sample gradient with respect to the logit is (:func:`negative_sample_gradient`)::

    dl/dz = p (1 - p) [ p_m**g / (1 - p_m) - g p_m**(g-1) log(1 - p_m) ]   for p > m, else 0

It rises from 0 at ``p = m`` to a peak ``p*`` (0.844 for g = 1, m = 0.05; :func:`gradient_peak`)
and falls towards 0 as p -> 1: the loss gives up on negative labels the model is sure are positive.
``aucli audit`` turns that region into evidence of missed AUs.

All functions take plain arguments; ``aucli.config.LossConfig`` carries the user's choices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aucli.aus import parse_au
from aucli.errors import LabelFormatError, UsageError

__all__ = [
    "DEFAULT_GAMMA_TIERS",
    "DEFAULT_MARGIN",
    "DEFAULT_RATE_FLOOR",
    "AUFormerLoss",
    "LossParts",
    "MDWALoss",
    "WeightedDiceLoss",
    "difficulty_gammas",
    "gradient_peak",
    "negative_sample_gradient",
    "occurrence_rates",
    "occurrence_weights",
    "resolve_gammas",
    "valid_label_mask",
]

#: Default margin m of MDWA (AUFormer paper).
DEFAULT_MARGIN = 0.05
#: gamma for the rarest, middle and commonest third of the AUs.
DEFAULT_GAMMA_TIERS: tuple[float, ...] = (0.75, 1.0, 1.25)
#: Occurrence rates are floored here before 1/r: caps an absent or very rare AU's weight.
DEFAULT_RATE_FLOOR = 0.01
#: Label values a label set may hold: 0, 1, and the unknown markers -1 and 9.
ALLOWED_LABEL_VALUES = (-1, 0, 1, 9)


# --------------------------------------------------------------------------------------------
# Statistics of the training labels


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def occurrence_rates(labels) -> np.ndarray:
    """Per-AU occurrence rate: positives / valid labels, with -1 and 9 masked.

    Args:
        labels: ``(n_frames, n_aus)`` integer labels in {-1, 0, 1, 9} (numpy or torch).

    Returns:
        ``(n_aus,)`` float64 rates in [0, 1]; NaN for an AU without a single valid label (it gets
        weight 0 in :func:`occurrence_weights`). An AU that is valid but never positive has rate 0.

    Raises:
        LabelFormatError: a value outside {-1, 0, 1, 9} (intensities, for example), or not 2-D.
    """
    labels = _as_numpy(labels)
    if labels.ndim != 2:
        raise LabelFormatError(f"labels must be (n_frames, n_aus); found shape {tuple(labels.shape)}.")
    found = np.unique(labels)
    bad = [v for v in found.tolist() if v not in ALLOWED_LABEL_VALUES]
    if bad:
        raise LabelFormatError(
            f"labels may only hold 0, 1 and the unknown markers -1 and 9; found {bad[:5]}. "
            "Binarise intensities first (DISFA: occurrence = intensity >= 2)."
        )
    valid = (labels == 0) | (labels == 1)
    n_valid = valid.sum(axis=0)
    positives = (labels == 1).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(n_valid > 0, positives / np.maximum(n_valid, 1), np.nan)
    return rates.astype(np.float64)


def occurrence_weights(rates, *, floor: float = DEFAULT_RATE_FLOOR) -> np.ndarray:
    """Per-AU weights ``w_i = K (1/r_i) / sum_j (1/r_j)`` (their mean over known AUs is 1).

    Args:
        rates: ``(n_aus,)`` occurrence rates, e.g. from :func:`occurrence_rates`.
        floor: rates below it are raised to it before 1/r. An AU absent from a training subset has
            rate 0; the floor caps its weight at ``1/floor`` times that of an AU of rate 1.

    Returns:
        ``(n_aus,)`` float64 weights. An AU with a NaN rate (no valid label) gets weight 0 and is
        left out of the normalisation; ``K`` is the number of the others.
    """
    rates = np.asarray(rates, dtype=np.float64).reshape(-1)
    if not 0.0 < floor <= 1.0:
        raise UsageError(f"rate floor must be in (0, 1]; found {floor}.")
    if np.any(rates[~np.isnan(rates)] < 0) or np.any(rates[~np.isnan(rates)] > 1):
        raise UsageError(f"occurrence rates must lie in [0, 1]; found {rates.tolist()}.")
    known = ~np.isnan(rates)
    weights = np.zeros_like(rates)
    if known.any():
        inverse = 1.0 / np.maximum(rates[known], floor)
        weights[known] = known.sum() * inverse / inverse.sum()
    return weights


def difficulty_gammas(rates, tiers: Sequence[float] = DEFAULT_GAMMA_TIERS) -> np.ndarray:
    """Per-AU gamma by difficulty tier: rarest AUs get the first (smallest) gamma.

    AUs are ranked by ``rates`` (ascending; ties keep AU order; NaN last) and AU of rank ``k``
    among ``N`` takes ``tiers[floor((k + 0.5) * T / N)]`` with ``T = len(tiers)``: thirds for
    three tiers (12 AUs: 4/4/4; 8 AUs: 3/2/3), and a single AU takes the middle tier. Any
    per-AU score where lower means harder works in place of rates (validation F1, for example).

    Returns:
        ``(n_aus,)`` float64 gammas.
    """
    rates = np.asarray(rates, dtype=np.float64).reshape(-1)
    tiers = np.asarray(tiers, dtype=np.float64).reshape(-1)
    if tiers.size == 0 or np.any(tiers < 0):
        raise UsageError(f"gamma tiers must be a non-empty list of values >= 0; found {tiers.tolist()}.")
    n = rates.size
    order = np.argsort(np.where(np.isnan(rates), np.inf, rates), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    tier = np.floor((rank + 0.5) * tiers.size / max(n, 1)).astype(np.int64)
    return tiers[np.minimum(tier, tiers.size - 1)]


def resolve_gammas(rates, gammas: float | Sequence[float] | Mapping[str, float] | None = None,
                   tiers: Sequence[float] = DEFAULT_GAMMA_TIERS, *,
                   au_names: Sequence[str] | None = None) -> np.ndarray:
    """Per-AU gammas: explicit values where given, difficulty tiers elsewhere.

    Args:
        rates: ``(n_aus,)`` occurrence rates (for the tiers).
        gammas: None (tiers for all), one value for all AUs, one value per AU, or a mapping
            ``{"AU1": 0.75, ...}`` that overrides the tiers of the AUs it names (needs ``au_names``).
        tiers: gamma per difficulty tier, see :func:`difficulty_gammas`.
        au_names: the AU set, in column order (for a mapping).
    """
    rates = np.asarray(rates, dtype=np.float64).reshape(-1)
    if gammas is None:
        return difficulty_gammas(rates, tiers)
    if isinstance(gammas, Mapping):
        if au_names is None or len(au_names) != rates.size:
            raise UsageError(f"per-AU gammas by name need the {rates.size} AU names of the model.")
        values = difficulty_gammas(rates, tiers)
        for name, gamma in gammas.items():
            values[list(au_names).index(parse_au(name, known=list(au_names)))] = float(gamma)
    else:
        values = np.asarray(gammas, dtype=np.float64).reshape(-1)
        if values.size == 1:
            values = np.full(rates.shape, values[0])
    if values.size != rates.size:
        raise UsageError(f"gammas lists {values.size} values but there are {rates.size} AUs; "
                         "give one value per AU, one value for all, or none to use the tiers.")
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise UsageError(f"gammas must be finite and >= 0; found {values.tolist()}.")
    return values


# --------------------------------------------------------------------------------------------
# Losses


def valid_label_mask(labels: Tensor) -> Tensor:
    """True where a label is known (0 or 1); -1 (unknown) and 9 (not coded) are masked."""
    return (labels == 0) | (labels == 1)


def _loss_dtype(logits: Tensor) -> Tensor:
    # bf16/fp16 logits (autocast) are computed in float32; float64 stays float64 (gradcheck).
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _broadcast_labels(labels: Tensor, logits: Tensor) -> Tensor:
    """``(B, N)`` labels viewed against ``(B, *extra, N)`` logits."""
    if labels.dim() != 2 or labels.shape[0] != logits.shape[0] or labels.shape[-1] != logits.shape[-1]:
        raise UsageError(f"labels must be (batch, n_aus) = ({logits.shape[0]}, {logits.shape[-1]}) "
                         f"to match logits {tuple(logits.shape)}; found {tuple(labels.shape)}.")
    return labels.reshape(labels.shape[0], *([1] * (logits.dim() - 2)), labels.shape[1])


def _as_buffer(values, name: str) -> Tensor:
    """A float32 ``(N,)`` tensor of finite values >= 0 (weights or gammas)."""
    if isinstance(values, Tensor):
        tensor = values.detach().to(torch.float32).reshape(-1)
    else:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32).reshape(-1)
    if not torch.isfinite(tensor).all() or (tensor < 0).any():
        raise UsageError(f"{name} must be finite and >= 0; found {tensor.tolist()}.")
    return tensor


class MDWALoss(nn.Module):
    """Margin-truncated, difficulty-aware, weighted asymmetric loss (AUFormer's MDWA).

    Args:
        weights: ``(N,)`` per-AU weights ``w_i`` (:func:`occurrence_weights`).
        gammas: ``(N,)`` per-AU focusing exponents, or one value for all AUs.
        margin: the probability margin ``m`` in [0, 1): negatives with ``p <= m`` give no loss.

    Shapes:
        logits ``(B, N)`` or ``(B, *extra, N)`` (for example ``(B, n_supervised, N)`` expert
        logits); labels ``(B, N)``, any integer or float dtype. Returns a scalar: per AU the mean
        over that AU's valid samples, then ``(1/N) sum_i w_i * mean_i``, then the mean over the
        extra dimensions. An AU without a valid sample in the batch contributes 0.
    """

    def __init__(self, weights, gammas: float | Sequence[float] | Tensor = 1.0, *, margin: float = DEFAULT_MARGIN):
        super().__init__()
        if not 0.0 <= margin < 1.0:
            raise UsageError(f"MDWA margin must be in [0, 1); found {margin}.")
        weights = _as_buffer(weights, "weights")
        n = weights.numel()
        gammas = _as_buffer(gammas, "gammas")
        if gammas.numel() == 1:
            gammas = gammas.expand(n).clone()
        elif gammas.numel() != n:
            raise UsageError(f"gammas has {gammas.numel()} values; expected one per AU ({n}).")
        self.margin = float(margin)
        self.register_buffer("weights", weights)
        self.register_buffer("gammas", gammas)

    @classmethod
    def from_rates(cls, rates, *, gammas: float | Sequence[float] | Mapping[str, float] | None = None,
                   tiers: Sequence[float] = DEFAULT_GAMMA_TIERS, margin: float = DEFAULT_MARGIN,
                   floor: float = DEFAULT_RATE_FLOOR, au_names: Sequence[str] | None = None) -> MDWALoss:
        """Weights and gammas (:func:`resolve_gammas`) from training-set occurrence rates."""
        return cls(occurrence_weights(rates, floor=floor),
                   resolve_gammas(rates, gammas, tiers, au_names=au_names), margin=margin)

    @property
    def num_aus(self) -> int:
        return self.weights.numel()

    def elementwise(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample, per-AU loss ``l_i``, shape of ``logits``; 0 where the label is masked."""
        z = _loss_dtype(logits)
        labels = _broadcast_labels(labels, z)
        valid = valid_label_mask(labels)
        positive = labels == 1
        gammas = self.gammas.to(z.dtype)
        p = torch.sigmoid(z)
        active = p > self.margin
        p_m = (p - self.margin).clamp_min(0.0)
        # log(1 - p_m) = log(sigmoid(-z) + m): bounded below by log(m) for m > 0, exact for m = 0.
        log_one_minus_pm = torch.log(torch.sigmoid(-z) + self.margin) if self.margin > 0 else F.logsigmoid(-z)
        # Double-where: below the margin p_m**gamma is taken of 1, so that gamma < 1 (p_m**(gamma-1)
        # = inf at 0) cannot leak a NaN into the gradient of the branch that where() discards.
        focus = torch.where(active, p_m, torch.ones_like(p_m)).pow(gammas)
        negative = torch.where(active, focus * log_one_minus_pm, torch.zeros_like(z))
        loss = -torch.where(positive, F.logsigmoid(z), negative)
        return torch.where(valid, loss, torch.zeros_like(loss))

    def per_au(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Unweighted per-AU means over valid samples, shape ``(*extra, N)``."""
        loss = self.elementwise(logits, labels)
        valid = valid_label_mask(_broadcast_labels(labels, loss)).to(loss.dtype)
        return loss.sum(0) / valid.sum(0).clamp_min(1.0)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        per_au = self.per_au(logits, labels)
        weighted = (per_au * self.weights.to(per_au.dtype)).sum(-1) / self.num_aus
        return weighted.mean()

    def extra_repr(self) -> str:
        return f"num_aus={self.num_aus}, margin={self.margin}, gammas={[round(g, 3) for g in self.gammas.tolist()]}"


class WeightedDiceLoss(nn.Module):
    """Per-AU soft dice over the batch's valid samples, weighted by ``w_i`` and averaged over AUs.

    ``dice_i = 1 - (2 sum p y + 1) / (sum p**2 + sum y**2 + 1)`` with sums over valid samples
    (JAA-Net's form, without its division by the batch size). An AU without a valid sample
    contributes 0.

    Shapes: logits ``(B, N)`` or ``(B, *extra, N)``, labels ``(B, N)``; returns a scalar.
    """

    def __init__(self, weights, *, smooth: float = 1.0):
        super().__init__()
        self.register_buffer("weights", _as_buffer(weights, "weights"))
        self.smooth = float(smooth)

    @property
    def num_aus(self) -> int:
        return self.weights.numel()

    def per_au(self, logits: Tensor, labels: Tensor) -> Tensor:
        z = _loss_dtype(logits)
        labels = _broadcast_labels(labels, z)
        valid = valid_label_mask(labels)
        p = torch.where(valid, torch.sigmoid(z), torch.zeros_like(z))
        y = (valid & (labels == 1)).to(z.dtype).expand_as(z)
        numerator = 2.0 * (p * y).sum(0) + self.smooth
        denominator = (p * p).sum(0) + (y * y).sum(0) + self.smooth
        return 1.0 - numerator / denominator

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        per_au = self.per_au(logits, labels)
        return ((per_au * self.weights.to(per_au.dtype)).sum(-1) / self.num_aus).mean()


@dataclass
class LossParts:
    """The total loss and its parts (scalar tensors; ``expert`` is 0 without expert logits)."""

    total: Tensor
    mdwa: Tensor
    dice: Tensor
    expert: Tensor

    def detach(self) -> dict[str, Tensor]:
        """Detached parts for logging; call ``.item()`` when a sync is affordable."""
        return {"loss": self.total.detach(), "mdwa": self.mdwa.detach(),
                "dice": self.dice.detach(), "expert_mdwa": self.expert.detach()}


class AUFormerLoss(nn.Module):
    """``MDWA(main) + WDI(main) + lambda * MDWA(experts)``, experts averaged over supervised blocks.

    Args:
        weights: ``(N,)`` per-AU weights, shared by every term.
        gammas: ``(N,)`` per-AU gammas (or one value).
        margin: MDWA margin m.
        expert_weight: lambda, the weight of the expert-supervision term.
        dice: include the weighted dice term (WDI).
    """

    def __init__(self, weights, gammas: float | Sequence[float] | Tensor = 1.0, *, margin: float = DEFAULT_MARGIN,
                 expert_weight: float = 1.0, dice: bool = True):
        super().__init__()
        if not math.isfinite(expert_weight) or expert_weight < 0:
            raise UsageError(f"expert-supervision weight lambda must be finite and >= 0; found {expert_weight}.")
        self.mdwa = MDWALoss(weights, gammas, margin=margin)
        self.dice = WeightedDiceLoss(weights) if dice else None
        self.expert_weight = float(expert_weight)

    @classmethod
    def from_rates(cls, rates, *, gammas: float | Sequence[float] | Mapping[str, float] | None = None,
                   tiers: Sequence[float] = DEFAULT_GAMMA_TIERS, margin: float = DEFAULT_MARGIN,
                   expert_weight: float = 1.0, dice: bool = True, floor: float = DEFAULT_RATE_FLOOR,
                   au_names: Sequence[str] | None = None) -> AUFormerLoss:
        """Build from training-set occurrence rates (:func:`occurrence_rates`) and the loss options
        (``aucli.config.LossConfig``: margin, gamma_tiers -> tiers, gammas, expert_weight, dice)."""
        return cls(occurrence_weights(rates, floor=floor), resolve_gammas(rates, gammas, tiers, au_names=au_names),
                   margin=margin, expert_weight=expert_weight, dice=dice)

    def forward(self, logits: Tensor, labels: Tensor, expert_logits: Tensor | None = None) -> LossParts:
        """
        Args:
            logits: ``(B, N)`` main-head logits.
            labels: ``(B, N)`` labels in {-1, 0, 1, 9}.
            expert_logits: ``(B, n_supervised, N)`` per-AU expert logits, or None.
        """
        if logits.dim() != 2:
            raise UsageError(f"main logits must be (batch, n_aus); found {tuple(logits.shape)}.")
        mdwa = self.mdwa(logits, labels)
        dice = self.dice(logits, labels) if self.dice is not None else torch.zeros_like(mdwa)
        if expert_logits is not None:
            if expert_logits.dim() != 3:
                raise UsageError(f"expert logits must be (batch, n_supervised, n_aus); found {tuple(expert_logits.shape)}.")
            expert = self.mdwa(expert_logits, labels)
        else:
            expert = torch.zeros_like(mdwa)
        total = mdwa + dice + self.expert_weight * expert
        return LossParts(total=total, mdwa=mdwa, dice=dice, expert=expert)


# --------------------------------------------------------------------------------------------
# Analytic helpers (tests, audit thresholds, the gradient figure)


def negative_sample_gradient(p, gamma: float, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """``d l / d z`` of MDWA for a negative label (y = 0) at probability ``p``, in closed form.

    ``p (1-p) [p_m**g / (1-p_m) - g p_m**(g-1) log(1-p_m)]`` for ``p > m``, else 0. Non-negative:
    gradient descent lowers the logit.
    """
    p = np.asarray(p, dtype=np.float64)
    active = p > margin
    p_m = np.where(active, p - margin, 0.5)  # 0.5: any value inside (0, 1); discarded below
    value = p * (1 - p) * (p_m**gamma / (1 - p_m) - gamma * p_m ** (gamma - 1) * np.log1p(-p_m))
    return np.where(active, value, 0.0)


def gradient_peak(gamma: float, margin: float = DEFAULT_MARGIN) -> tuple[float, float]:
    """Where the negative-sample gradient peaks: ``(p_star, gradient at p_star)``.

    Found numerically (a dense grid on (m, 1), then golden-section refinement); 1e-9 precise in p.
    Examples: gamma 1, m 0.05 -> (0.844, 0.715); gamma 2 -> (0.868, 0.741); m 0.1 -> (0.816, 0.568).
    """
    if not 0.0 <= margin < 1.0:
        raise UsageError(f"margin must be in [0, 1); found {margin}.")
    grid = np.linspace(margin, 1.0, 4001)[1:-1]
    values = negative_sample_gradient(grid, gamma, margin)
    k = int(np.argmax(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    f = lambda x: float(negative_sample_gradient(x, gamma, margin))  # noqa: E731
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > 1e-10:
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
        else:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
    p_star = float((lo + hi) / 2)
    return p_star, f(p_star)
