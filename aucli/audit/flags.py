"""Flag rules and scores: which labels look wrong, how strongly, and why.

Inputs are plain arrays in sequence order (:mod:`aucli.audit.temporal`): calibrated out-of-fold
probabilities ``probs (n, n_aus)``, labels ``(n, n_aus)`` in {-1, 0, 1}, segment ids ``(n,)`` and
per-AU thresholds (:class:`aucli.audit.thresholds.AuditThresholds`).

For a known label ``y`` with calibrated probability ``p`` the model's *contradiction* is
``q = p`` when ``y = 0`` and ``q = 1 - p`` when ``y = 1``; its evidence is ``e = logit(q)``
(clipped to +-6). A frame *seeds* a flag when it passes its AU's threshold: ``y = 0`` and
``p >= missed_i`` (suspected missed AU) or ``y = 1`` and ``p <= spurious_i`` (suspected spurious
label).

Temporal evidence (``ScoringConfig.temporal``, the default):

1. A *candidate* is a maximal run of frames of one AU, one segment and one label value on which the
   model leans against the label (``q >= extend``, 0.5 by default). A candidate holding at least
   one seed frame is a *flag*: so a whole event the model contradicts is one flag spanning its
   frames, even where a few of them do not pass the threshold themselves.
2. Its *context* says how it sits in the label timeline (L = the run of equal labels holding it):

   - ``isolated``: the flag covers all of L and the frames on both sides carry the other label, the
     one the model sees: a label island (a stray 1 among 0s, a 0-hole inside an event). Strongest.
   - ``event``: y = 1, the flag covers a whole labelled event that ends at a sequence edge or an
     unknown label; or y = 0, the model sees an event inside a stretch labelled absent (a missed
     event).
   - ``boundary``: next to a labelled event's onset or offset (y = 1: the event's first or last
     frames; y = 0: frames just before or after it): coders disagree most about boundaries.
   - ``dip``: y = 1 frames inside a labelled event whose other frames the model agrees with: most
     likely the model's own miss (a turned head, a hand), so it scores lowest.
3. Neighbour agreement ``a``: how much the model agrees with the labels of the ``context`` known
   frames on each side of the flag (mean of ``1 - q``). A context the model reads the same way as
   the coder makes the contrast credible; a context the model contradicts too makes it less so.
4. Score = ``sigmoid(mean e over the flag + bonus[kind, context] * a + duration)``: one number in
   (0, 1) that ranks all flags together, read as the approximate odds that the labels are wrong.
   Default bonuses (log-odds): isolated +1.5; event +0.5 for a missed flag, 0 for a spurious one
   (a labelled event cut by a sequence edge or an unknown label may or may not be an island);
   boundary 0 for a missed flag (the model's event reaches past the labelled one) and -0.75 for a
   spurious one (an AU is weakest at its onset and offset, where any model is least sure, so low p
   there is weak evidence); dip -1.5.
   ``duration`` applies to missed events, which are the model's own events: AU events last many
   frames, so a one-frame blip of the model inside labelled absence is mostly the model's noise:
   ``0.5 * log2(length / 4)``, clipped to [-1, +1] (1 frame -1, 4 frames 0, 16 frames +1).

Without temporal evidence every seed frame is its own flag (context ``frame``) with score ``q``.

Confusion evidence (``ScoringConfig.confusion_pairs``; default AU1/AU2, AU6/AU7, AU23/AU24, the pairs
coders confuse, as in :data:`aucli.synth.noise.CONFUSION_PAIRS`): a coder codes an AU as its
neighbour, so the label moves from one AU to the other. Its signature on a frame is a *swap*: the
two AUs of a pair carry opposite labels (say AU1 = 0, AU2 = 1) and the model contradicts both (p of
AU1 high, p of AU2 low: q >= ``extend`` for each). For those labels to be right the model must be
wrong twice, in opposite directions, so the two disagreements add up:

- on a swap frame each of the two labels gets its partner's evidence ``max(e_partner, 0)``; a
  flag's *confusion* evidence is the mean of it over the flag's frames (0 on frames without a
  swap), added to the score's log-odds times ``confusion_weight`` (1: the two disagreements count
  as independent evidence). A swap ranks above a lone disagreement of the same size;
- a swap frame also seeds a flag for both AUs when the two evidences together pass the higher of
  the two AUs' thresholds (``e_a + e_b >= max(logit t_a, logit t_b)``, ``t`` the threshold on q of
  that label's kind: ``missed`` for y = 0, ``1 - spurious`` for y = 1), even where neither passes alone;
- flags grow as above, so a confused event is one flag per AU spanning its frames: a ``missed`` flag
  on the AU that was left out and a ``spurious`` one on the AU coded instead, each naming its
  partner (``Candidates.partner``; the ``confused_with`` column of the CSV queue).

Without temporal evidence a swap frame scores ``sigmoid(e + confusion_weight * e_partner)``. Pairs
whose two AUs are not both audited are left out, and so are pairs with an AU the model cannot judge.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aucli.audit.temporal import expand_runs, label_runs, runs, window_mean
from aucli.audit.thresholds import AuditThresholds
from aucli.aus import parse_au
from aucli.errors import UsageError

__all__ = ["CONTEXTS", "DEFAULT_BONUS", "DEFAULT_CONFUSION_PAIRS", "KINDS", "AuditScores", "Candidates", "ScoringConfig",
           "confusion_columns", "contradiction", "parse_confusion_pairs", "score_labels"]

KINDS = ("missed", "spurious")
CONTEXTS = ("isolated", "event", "boundary", "dip", "frame")
#: Log-odds bonus per kind and context (module docstring); a missed flag is never a dip.
DEFAULT_BONUS: dict[str, dict[str, float]] = {
    "missed": {"isolated": 1.5, "event": 0.5, "boundary": 0.0},
    "spurious": {"isolated": 1.5, "event": 0.0, "boundary": -0.75, "dip": -1.5},
}
#: AUs coders confuse with each other (the pairs of :data:`aucli.synth.noise.CONFUSION_PAIRS`).
DEFAULT_CONFUSION_PAIRS: tuple[tuple[str, str], ...] = (("AU1", "AU2"), ("AU6", "AU7"), ("AU23", "AU24"))


def parse_confusion_pairs(spec: str | Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """``"AU1/AU2,AU6/AU7"`` or ``[["AU1", "AU2"], ...]`` -> canonical pairs; ``""`` or ``"none"``: no pair."""
    if isinstance(spec, str):
        text = spec.replace(" ", "")
        if text.lower() in ("", "none"):
            return ()
        items: list[Sequence[str]] = []
        for item in filter(None, text.split(",")):
            parts = item.split("/")
            if len(parts) != 2 or not all(parts):
                raise UsageError(f"a confusion pair is two AUs joined by '/' (AU1/AU2); found {item!r}")
            items.append(parts)
    else:
        items = [list(pair) for pair in spec]
    pairs: list[tuple[str, str]] = []
    for item in items:
        if len(item) != 2:
            raise UsageError(f"a confusion pair is two AUs (AU1/AU2); found {list(item)!r}")
        a, b = parse_au(str(item[0])), parse_au(str(item[1]))
        if a == b:
            raise UsageError(f"a confusion pair needs two different AUs; found {a}/{b}")
        if (a, b) not in pairs and (b, a) not in pairs:
            pairs.append((a, b))
    return tuple(pairs)


@dataclass
class ScoringConfig:
    """How flags are grown and scored (defaults documented in the module docstring)."""

    temporal: bool = True
    #: a flag extends over neighbouring frames of the same label whose contradiction q is at least this
    extend: float = 0.5
    #: known frames on each side whose agreement with the model strengthens or weakens a flag
    context: int = 5
    #: log-odds added per context of a missed flag (y = 0), scaled by the neighbour agreement
    bonus_missed: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BONUS["missed"]))
    #: log-odds added per context of a spurious flag (y = 1), scaled by the neighbour agreement
    bonus_spurious: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BONUS["spurious"]))
    #: log-odds per doubling of a missed event's length (0: no duration prior)
    duration: float = 0.5
    #: length (frames) at which the duration prior is neutral
    min_event: float = 4.0
    #: frame evidence is clipped to +- this many log-odds (p = 0.9975)
    clip: float = 6.0
    #: AU pairs whose label swaps are evidence (module docstring). None: DEFAULT_CONFUSION_PAIRS where both AUs
    #: are audited; [] (or "none"): no confusion evidence; "AU1/AU2,AU6/AU7" or [["AU1", "AU2"], ...]: these pairs,
    #: which must name audited AUs
    confusion_pairs: str | Sequence[Sequence[str]] | None = None
    #: weight of the partner's evidence in a flag's log-odds
    confusion_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.extend < 1.0:
            raise UsageError(f"extend must be between 0 and 1; found {self.extend}")
        if self.context < 0:
            raise UsageError(f"context must be >= 0 frames; found {self.context}")
        if self.min_event < 1:
            raise UsageError(f"min_event must be at least 1 frame; found {self.min_event}")
        for kind in KINDS:
            given = getattr(self, f"bonus_{kind}")
            unknown = sorted(set(given) - set(DEFAULT_BONUS[kind]))
            if unknown:
                raise UsageError(f"unknown context(s) {unknown} in bonus_{kind}; contexts: {', '.join(DEFAULT_BONUS[kind])}")
            setattr(self, f"bonus_{kind}", {**DEFAULT_BONUS[kind], **given})
        if self.confusion_pairs is not None:
            self.confusion_pairs = [list(pair) for pair in parse_confusion_pairs(self.confusion_pairs)]
        if not self.confusion_weight > 0:
            raise UsageError(f"confusion_weight must be > 0 (no confusion evidence: confusion_pairs=[]); found {self.confusion_weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_columns(config: ScoringConfig, au_names: Sequence[str], skip: Collection[str] = ()) -> list[tuple[int, int]]:
    """Column pairs of ``au_names`` whose swaps are evidence; pairs with an AU in ``skip`` (one the model cannot judge) lend none.

    Default pairs with an AU missing from ``au_names`` are left out; explicit ones must name audited AUs.
    """
    names = list(au_names)
    if config.confusion_pairs is None:
        pairs = [pair for pair in DEFAULT_CONFUSION_PAIRS if pair[0] in names and pair[1] in names]
    else:
        pairs = [(str(a), str(b)) for a, b in config.confusion_pairs]
        for pair in pairs:
            missing = [a for a in pair if a not in names]
            if missing:
                raise UsageError(f"confusion pair {pair[0]}/{pair[1]}: {', '.join(missing)} not among the audited AUs "
                                 f"({', '.join(names)})")
    return [(names.index(a), names.index(b)) for a, b in pairs if a not in skip and b not in skip]


@dataclass
class Candidates:
    """Runs of frames the model contradicts, one entry per run (positions in sequence order).

    Attributes (each ``(m,)``):
        au: AU column. start, stop: first position and one past the last. label: the labels (0/1).
        kind: ``missed`` (y = 0) or ``spurious`` (y = 1). context: see the module docstring.
        side: ``onset`` / ``offset`` for boundary flags, else empty.
        mean_p: mean calibrated p over the run. peak_p: the most contradicting p (max for missed, min
        for spurious). evidence: mean clipped logit of q. agreement: neighbour agreement (NaN: no
        neighbour). run_length: length of the run of equal labels holding it. score: in (0, 1).
        flagged: holds a frame past its AU's threshold (alone, or with its partner's evidence on a swap).
        partner: AU column whose labels look swapped with this one on some of its frames (-1: none).
        swap_frames: how many of its frames are swaps with ``partner``. confusion: mean partner
        evidence over all its frames (log-odds, before ``confusion_weight``; 0 without a swap).
    """

    au: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    label: np.ndarray
    kind: np.ndarray
    context: np.ndarray
    side: np.ndarray
    mean_p: np.ndarray
    peak_p: np.ndarray
    evidence: np.ndarray
    agreement: np.ndarray
    run_length: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    partner: np.ndarray
    swap_frames: np.ndarray
    confusion: np.ndarray

    def __len__(self) -> int:
        return int(self.au.size)

    @property
    def length(self) -> np.ndarray:
        return self.stop - self.start

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    @classmethod
    def concatenate(cls, parts: list[Candidates]) -> Candidates:
        if not parts:
            return cls.empty()
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__})

    @classmethod
    def empty(cls) -> Candidates:
        ints, floats, strs = np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, object)
        return cls(au=ints, start=ints, stop=ints, label=ints.astype(np.int8), kind=strs, context=strs, side=strs,
                   mean_p=floats, peak_p=floats, evidence=floats, agreement=floats, run_length=ints, score=floats,
                   flagged=np.zeros(0, bool), partner=ints, swap_frames=ints, confusion=floats)

    def reasons(self, au_names: list[str]) -> list[str]:
        return [describe(self, i, au_names) for i in range(len(self))]


@dataclass
class AuditScores:
    """Outcome of :func:`score_labels`.

    Attributes:
        candidates: every contradicted run (flags and runs below the thresholds).
        frame_scores: ``(n, n_aus)`` float32 score of every known label (NaN where unknown): the score
            of the candidate holding it, else its own contradiction q. It ranks (frame, AU) labels.
        flags: positions in ``candidates`` of the flags, best first.
        pairs: the confusion pairs that lent evidence (AU names).
    """

    candidates: Candidates
    frame_scores: np.ndarray
    flags: np.ndarray
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def flag_table(self) -> Candidates:
        return self.candidates.take(self.flags)


def contradiction(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``q (n, n_aus)``: p where the label is 0, 1 - p where it is 1, NaN where it is unknown."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    return np.where(labels == 1, 1.0 - probs, np.where(labels == 0, probs, np.nan))


def _check(probs: np.ndarray, labels: np.ndarray, segments: np.ndarray, thresholds: AuditThresholds) -> None:
    if probs.ndim != 2 or probs.shape != labels.shape:
        raise UsageError(f"probs {probs.shape} and labels {labels.shape} must both be (n_frames, n_aus)")
    if probs.shape[1] != len(thresholds.au_names):
        raise UsageError(f"probs has {probs.shape[1]} columns but the thresholds cover {len(thresholds.au_names)} AUs "
                         f"({', '.join(thresholds.au_names)})")
    if segments.shape != (probs.shape[0],):
        raise UsageError(f"segments must be ({probs.shape[0]},); found {segments.shape}")
    known = (labels == 0) | (labels == 1)
    if not np.all(np.isfinite(probs[known])) or np.any((probs[known] < 0) | (probs[known] > 1)):
        raise UsageError("probabilities must be finite and within [0, 1] where labels are known")
    bad = ~np.isin(labels, (-1, 0, 1, 9))
    if bad.any():
        raise UsageError(f"labels must be -1 (unknown), 0 or 1; found {np.unique(labels[bad])[:5].tolist()}")


def score_labels(probs, labels, segments, thresholds: AuditThresholds, config: ScoringConfig | None = None, *,
                 skip: Collection[str] = ()) -> AuditScores:
    """Find and score flags (module docstring) for every AU.

    Args:
        probs: ``(n, n_aus)`` calibrated out-of-fold probabilities, rows in sequence order.
        labels: ``(n, n_aus)`` int labels, -1 (or 9) unknown.
        segments: ``(n,)`` segment ids (:func:`aucli.audit.temporal.segment_ids`).
        thresholds: per-AU flag thresholds.
        config: scoring options (default :class:`ScoringConfig`).
        skip: AUs whose probabilities lend no confusion evidence to their partner (the model cannot judge them).
    """
    config = config or ScoringConfig()
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).astype(np.int8)
    labels = np.where(labels == 9, -1, labels).astype(np.int8)
    segments = np.asarray(segments).reshape(-1)
    _check(probs, labels, segments, thresholds)
    q = contradiction(probs, labels)
    evidence = np.clip(np.log(np.clip(q, 1e-12, 1)) - np.log(np.clip(1 - q, 1e-12, 1)), -config.clip, config.clip)
    frame_scores = np.where(np.isnan(q), np.nan, q).astype(np.float32)
    pairs = confusion_columns(config, thresholds.au_names, skip)
    swaps = _swaps(labels, q, evidence, thresholds, pairs, config.extend)
    parts = []
    for k in range(probs.shape[1]):
        y, p, qk, ek = labels[:, k], probs[:, k], q[:, k], evidence[:, k]
        known = (y == 0) | (y == 1)
        seed = known & (((y == 0) & (p >= thresholds.missed[k])) | ((y == 1) & (p <= thresholds.spurious[k])))
        for swap in swaps[k]:
            seed |= swap.seed
        if config.temporal:
            part = _temporal_candidates(k, y, p, qk, ek, known, seed, segments, config, swaps[k])
            frame_scores[expand_runs(part.start, part.stop), k] = np.repeat(part.score, part.length)
        else:
            part = _frame_candidates(k, y, p, qk, ek, seed, swaps[k], config)
            if swaps[k]:  # every swap frame ranks by both disagreements, flagged or not
                swapped = np.any([s.mask for s in swaps[k]], axis=0)
                partner_evidence = np.max([s.evidence for s in swaps[k]], axis=0)
                frame_scores[swapped, k] = 1.0 / (1.0 + np.exp(-(ek[swapped] + config.confusion_weight * partner_evidence[swapped])))
        parts.append(part)
    candidates = Candidates.concatenate(parts)
    flagged = np.flatnonzero(candidates.flagged)
    order = flagged[np.lexsort((candidates.start[flagged], candidates.au[flagged], -candidates.score[flagged]))]
    names = thresholds.au_names
    return AuditScores(candidates, frame_scores, order, [(names[a], names[b]) for a, b in pairs])


@dataclass
class _Swap:
    """Frames of one AU whose label looks swapped with its partner's (module docstring), each ``(n,)``."""

    partner: int
    #: opposite known labels, both contradicted (q >= extend)
    mask: np.ndarray
    #: the partner's evidence max(e, 0) on swap frames, else 0
    evidence: np.ndarray
    #: swap frames whose two evidences together pass the higher threshold
    seed: np.ndarray


def _swaps(labels, q, evidence, thresholds: AuditThresholds, pairs: list[tuple[int, int]], extend: float) -> list[list[_Swap]]:
    """Per AU column, one :class:`_Swap` per partner (most AUs have none)."""
    result: list[list[_Swap]] = [[] for _ in range(labels.shape[1])]
    if not pairs:
        return result
    known = (labels == 0) | (labels == 1)
    lean = known & (np.nan_to_num(q) >= extend)

    def logit(x: np.ndarray) -> np.ndarray:
        return np.log(x) - np.log1p(-x)

    # the threshold each label must pass alone, as log-odds of its contradiction q
    alone = np.where(labels == 1, logit(1.0 - thresholds.spurious)[None, :], logit(thresholds.missed)[None, :])
    for a, b in pairs:
        swap = lean[:, a] & lean[:, b] & (labels[:, a] != labels[:, b])
        together = evidence[:, a] + evidence[:, b] >= np.maximum(alone[:, a], alone[:, b])
        seed = swap & together
        for this, other in ((a, b), (b, a)):
            result[this].append(_Swap(other, swap, np.where(swap, np.maximum(evidence[:, other], 0.0), 0.0), seed))
    return result


def _confusion_of_runs(cand, swaps: list[_Swap], m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run ``(partner, swap_frames, confusion)``: the partner with the most swap frames, their count, mean evidence."""
    partner, count, confusion = np.full(m, -1, np.int64), np.zeros(m, np.int64), np.zeros(m)
    if not swaps:
        return partner, count, confusion
    counts = np.stack([cand.sums(s.mask.astype(np.float64)) for s in swaps])  # (n_partners, m)
    sums = np.stack([cand.sums(s.evidence) for s in swaps])
    best = np.lexsort((-sums, -counts), axis=0)[0]  # most swap frames, then most evidence
    count = np.round(counts[best, np.arange(m)]).astype(np.int64)
    partner = np.where(count > 0, np.array([s.partner for s in swaps])[best], -1)
    per_frame = np.max(np.stack([s.evidence for s in swaps]), axis=0)  # a frame swapped with two partners counts once
    confusion = cand.sums(per_frame) / np.maximum(cand.stop - cand.start, 1)
    return partner, count, confusion


def _frame_candidates(k, y, p, q, e, seed, swaps: list[_Swap], config: ScoringConfig) -> Candidates:
    index = np.flatnonzero(seed)
    m = index.size
    kind = np.where(y[index] == 0, "missed", "spurious").astype(object)
    partner, swap_frames, confusion = np.full(m, -1, np.int64), np.zeros(m, np.int64), np.zeros(m)
    if swaps:
        evidence = np.stack([s.evidence[index] for s in swaps])  # (n_partners, m)
        masks = np.stack([s.mask[index] for s in swaps])
        best = np.argmax(np.where(masks, evidence, -1.0), axis=0)
        swapped = masks.any(axis=0)
        partner = np.where(swapped, np.array([s.partner for s in swaps])[best], -1)
        swap_frames = swapped.astype(np.int64)
        confusion = np.where(swapped, evidence[best, np.arange(m)], 0.0)
    score = np.where(partner >= 0, 1.0 / (1.0 + np.exp(-(e[index] + config.confusion_weight * confusion))), q[index])
    return Candidates(
        au=np.full(m, k, np.int64), start=index.astype(np.int64), stop=index + 1, label=y[index].astype(np.int8),
        kind=kind, context=np.full(m, "frame", object), side=np.full(m, "", object), mean_p=p[index], peak_p=p[index],
        evidence=e[index], agreement=np.full(m, np.nan), run_length=np.ones(m, np.int64), score=score,
        flagged=np.ones(m, bool), partner=partner, swap_frames=swap_frames, confusion=confusion,
    )


def _temporal_candidates(k, y, p, q, e, known, seed, segments, config: ScoringConfig, swaps: list[_Swap]) -> Candidates:
    n = y.size
    lean = known & (np.nan_to_num(q) >= config.extend)
    cand = runs(lean, segments, y)
    m = len(cand)
    if m == 0:
        return Candidates.empty()
    start, stop = cand.start, cand.stop
    length = stop - start
    label = y[start]
    has_seed = cand.sums(seed.astype(np.float64)) > 0
    mean_e = cand.sums(e) / length
    mean_p = cand.sums(p) / length
    peak_p = np.where(label == 0, cand.maxima(p), -cand.maxima(-p))

    lab = label_runs(y, segments)
    run_id = lab.row_id[start]
    run_start, run_stop = lab.start[run_id], lab.stop[run_id]
    same_segment_left = (run_start > 0) & (segments[np.maximum(run_start - 1, 0)] == segments[run_start])
    same_segment_right = (run_stop < n) & (segments[np.minimum(run_stop, n - 1)] == segments[np.maximum(run_stop - 1, 0)])
    left = np.where(start > run_start, "inside", np.where(same_segment_left & known[np.maximum(run_start - 1, 0)], "other", "edge"))
    right = np.where(stop < run_stop, "inside", np.where(same_segment_right & known[np.minimum(run_stop, n - 1)], "other", "edge"))
    n_other = (left == "other").astype(int) + (right == "other").astype(int)
    n_inside = (left == "inside").astype(int) + (right == "inside").astype(int)
    context = np.empty(m, object)
    side = np.full(m, "", object)
    positive = label == 1
    # y = 1: label runs are events; the contradicted frames are all of one, its edge, or its inside
    context[positive & (n_inside == 0)] = "event"
    context[positive & (n_inside == 1)] = "boundary"
    context[positive & (n_inside == 2)] = "dip"
    side[positive & (n_inside == 1) & (right == "inside")] = "onset"
    side[positive & (n_inside == 1) & (left == "inside")] = "offset"
    # y = 0: the model's run is the event; it lies inside absence, next to a labelled event, or fills a gap
    context[~positive & (n_other == 0)] = "event"
    context[~positive & (n_other == 1)] = "boundary"
    side[~positive & (n_other == 1) & (right == "other")] = "onset"
    side[~positive & (n_other == 1) & (left == "other")] = "offset"
    context[n_other == 2] = "isolated"

    agree_values = np.where(known, 1.0 - np.nan_to_num(q), 0.0)
    agreement, count = window_mean(agree_values, known, segments, start, stop, config.context)
    weight = np.where(count > 0, agreement, 0.5)
    bonus = np.array([(config.bonus_spurious if pos else config.bonus_missed)[c] for pos, c in zip(positive, context)])
    duration = np.where(~positive & (context == "event"),
                        np.clip(config.duration * np.log2(length / config.min_event), -1.0, 1.0), 0.0)
    partner, swap_frames, confusion = _confusion_of_runs(cand, swaps, m)
    logit_score = mean_e + bonus * weight + duration + config.confusion_weight * confusion
    score = 1.0 / (1.0 + np.exp(-logit_score))
    return Candidates(
        au=np.full(m, k, np.int64), start=start.astype(np.int64), stop=stop.astype(np.int64), label=label.astype(np.int8),
        kind=np.where(positive, "spurious", "missed").astype(object), context=context, side=side, mean_p=mean_p,
        peak_p=peak_p, evidence=mean_e, agreement=agreement, run_length=(run_stop - run_start).astype(np.int64),
        score=score, flagged=has_seed, partner=partner, swap_frames=swap_frames, confusion=confusion,
    )


def describe(candidates: Candidates, i: int, au_names: list[str]) -> str:
    """A plain-language reason for candidate ``i`` (with the swap it is part of, if any)."""
    reason = _describe_context(candidates, i, au_names)
    partner = int(candidates.partner[i])
    if partner < 0:
        return reason
    au, other = au_names[int(candidates.au[i])], au_names[partner]
    n, swapped = int(candidates.stop[i] - candidates.start[i]), int(candidates.swap_frames[i])
    where = "on this frame" if n == 1 else ("on these frames" if swapped == n else f"on {swapped} of these {n} frames")
    if candidates.kind[i] == "missed":
        partner_text = f"{other} is labelled present {where} and the model sees no {other}"
    else:
        partner_text = f"{other} is labelled absent {where} and the model sees {other}"
    return f"{reason}; confusion with {other}: {partner_text} (labels of {au} and {other} swapped?)"


def _describe_context(candidates: Candidates, i: int, au_names: list[str]) -> str:
    n = int(candidates.stop[i] - candidates.start[i])
    frames = f"{n} frame{'s' if n != 1 else ''}"
    au = au_names[int(candidates.au[i])]
    mp, pk = float(candidates.mean_p[i]), float(candidates.peak_p[i])
    context, side, run = candidates.context[i], candidates.side[i], int(candidates.run_length[i])
    agreement = candidates.agreement[i]
    tail = "" if not np.isfinite(agreement) else f"; the model agrees with the labels around it ({agreement:.2f})"
    if candidates.kind[i] == "missed":
        if context == "frame":
            return f"labelled absent; {au} p = {mp:.2f}"
        if context == "isolated":
            return f"labelled absent on {frames} between frames labelled present; model sees {au} on them (mean p {mp:.2f}){tail}"
        if context == "event":
            return f"model sees an unlabelled {au} event over {frames} (mean p {mp:.2f}, peak {pk:.2f}){tail}"
        where = "before the labelled onset" if side == "onset" else "after the labelled offset"
        return f"{frames} labelled absent just {where}; model sees {au} (mean p {mp:.2f}){tail}"
    if context == "frame":
        return f"labelled present; {au} p = {mp:.2f}"
    if context == "isolated":
        return f"labelled present on {frames} between frames labelled absent; model sees no {au} on them (mean p {mp:.2f}){tail}"
    if context == "event":
        return f"whole labelled event of {frames} without model support (mean p {mp:.2f}, highest {pk:.2f}){tail}"
    if context == "boundary":
        return f"{frames} at the labelled {side} of a {run}-frame event; model sees no {au} there (mean p {mp:.2f}){tail}"
    return f"{frames} inside a {run}-frame labelled event where the model drops (mean p {mp:.2f}){tail}"
