"""The ranked flag table in store coordinates, its counts, and measures of a ranking.

A flag spans frames ``frame_start..frame_stop`` (inclusive) of one (source, track) and one AU; its
store rows are kept as a ragged array (``row_offsets`` into ``rows``). Flags are ranked by score,
best first (rank 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from aucli.audit.flags import CONTEXTS, KINDS, Candidates

__all__ = ["FlagTable", "average_precision", "precision_at_k", "ranking_order", "recall_at_k"]


@dataclass
class FlagTable:
    """Flags, ranked (each array ``(m,)`` unless said otherwise).

    Attributes:
        rank: 1 = the most suspicious. au: label-set AU name. source: /sources row of the face rows.
        source_key, subject: of that source. track: face track (0 = the subject). frame_start,
        frame_stop: first and last frame index (inclusive). n_frames: frames flagged. label: the
        labels (0 or 1). mean_p, peak_p: calibrated probability over the frames, most contradicting
        one. score: (0, 1). kind: missed / spurious. context: isolated / event / boundary / dip /
        frame. side: onset / offset for boundary flags. partner: the AU whose labels look swapped with
        this one's (confusion evidence), else empty. reason: plain-language explanation.
        row_offsets: ``(m + 1,)``; rows: store rows of flag ``i`` are ``rows[row_offsets[i]:row_offsets[i+1]]``.
    """

    rank: np.ndarray
    au: np.ndarray
    source: np.ndarray
    source_key: np.ndarray
    subject: np.ndarray
    track: np.ndarray
    frame_start: np.ndarray
    frame_stop: np.ndarray
    n_frames: np.ndarray
    label: np.ndarray
    mean_p: np.ndarray
    peak_p: np.ndarray
    score: np.ndarray
    kind: np.ndarray
    context: np.ndarray
    side: np.ndarray
    partner: np.ndarray
    reason: np.ndarray
    row_offsets: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rank.size)

    def rows_of(self, i: int) -> np.ndarray:
        return self.rows[self.row_offsets[i] : self.row_offsets[i + 1]]

    @classmethod
    def from_candidates(cls, flags: Candidates, *, au_names: Sequence[str], rows: np.ndarray, source: np.ndarray,
                        track: np.ndarray, frame: np.ndarray, source_keys: np.ndarray, subjects: np.ndarray) -> FlagTable:
        """Map flags found in sequence order (positions into ``rows``) to store coordinates.

        Args:
            flags: ranked flags (positions ``start``..``stop`` into the sequence-ordered arrays).
            rows, source, track, frame: ``(n,)`` store row, source index, track, frame index per position.
            source_keys, subjects: per /sources row (indexed by ``source``).
        """
        from aucli.audit.temporal import expand_runs

        m = len(flags)
        length = (flags.stop - flags.start).astype(np.int64)
        offsets = np.r_[0, np.cumsum(length)].astype(np.int64)
        src = source[flags.start].astype(np.int64) if m else np.zeros(0, np.int64)
        return cls(
            rank=np.arange(1, m + 1, dtype=np.int64), au=np.asarray([au_names[k] for k in flags.au], dtype=object),
            source=src, source_key=np.asarray(source_keys, dtype=object)[src] if m else np.zeros(0, object),
            subject=np.asarray(subjects, dtype=object)[src] if m else np.zeros(0, object),
            track=track[flags.start].astype(np.int64) if m else np.zeros(0, np.int64),
            frame_start=frame[flags.start].astype(np.int64) if m else np.zeros(0, np.int64),
            frame_stop=frame[flags.stop - 1].astype(np.int64) if m else np.zeros(0, np.int64),
            n_frames=length, label=flags.label.astype(np.int8), mean_p=flags.mean_p.astype(np.float64),
            peak_p=flags.peak_p.astype(np.float64), score=flags.score.astype(np.float64), kind=flags.kind.astype(object),
            context=flags.context.astype(object), side=flags.side.astype(object),
            partner=np.asarray([au_names[k] if k >= 0 else "" for k in flags.partner], dtype=object),
            reason=np.asarray(flags.reasons(list(au_names)), dtype=object), row_offsets=offsets,
            rows=rows[expand_runs(flags.start, flags.stop)].astype(np.int64),
        )

    def to_arrays(self, prefix: str = "flag_") -> dict[str, np.ndarray]:
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "flag_") -> FlagTable:
        values = {}
        for f in fields(cls):
            if f.name == "partner" and prefix + f.name not in arrays:  # audits stored before confusion evidence
                arrays = {**arrays, prefix + f.name: np.full(np.asarray(arrays[prefix + "rank"]).size, "", dtype=object)}
            value = np.asarray(arrays[prefix + f.name])
            values[f.name] = value.astype(object) if value.dtype.kind in "OUS" else value
        return cls(**values)

    def take(self, index: np.ndarray) -> FlagTable:
        """A sub-table (ranks kept) of the flags at ``index``."""
        index = np.asarray(index, dtype=np.int64)
        pieces = [self.rows_of(int(i)) for i in index]
        length = np.array([p.size for p in pieces], dtype=np.int64)
        values = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name not in ("row_offsets", "rows")}
        return FlagTable(**values, row_offsets=np.r_[0, np.cumsum(length)].astype(np.int64),
                         rows=np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64))

    def counts(self, au_names: Sequence[str]) -> dict[str, dict[str, int]]:
        """AU -> {missed, spurious, isolated, event, boundary, dip, frame, confusion, frames}: numbers of flags (frames: labels).

        ``confusion``: flags whose labels look swapped with a partner AU's.
        """
        result: dict[str, dict[str, int]] = {}
        for name in au_names:
            mine = self.au == name
            entry = {kind: int((mine & (self.kind == kind)).sum()) for kind in KINDS}
            entry.update({context: int((mine & (self.context == context)).sum()) for context in CONTEXTS})
            entry["confusion"] = int((mine & (self.partner != "")).sum())
            entry["frames"] = int(self.n_frames[mine].sum())
            result[name] = entry
        return result


# ------------------------------------------------------------------------------------ ranking measures
def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Positions of ``scores`` (1-D, NaN = not ranked) from the most to the least suspicious; ties keep order."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    valid = np.flatnonzero(np.isfinite(scores))
    return valid[np.argsort(-scores[valid], kind="stable")]


def precision_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of true items among the ``k`` highest scores (NaN scores never ranked)."""
    order = ranking_order(scores)[:k]
    return float(np.asarray(truth).reshape(-1)[order].mean()) if order.size else float("nan")


def recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of all true items found among the ``k`` highest scores."""
    truth = np.asarray(truth, bool).reshape(-1)
    total = int(truth.sum())
    if total == 0:
        return float("nan")
    return float(truth[ranking_order(scores)[:k]].sum() / total)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve of a ranking (average precision; ties broken by position).

    Items with a NaN score are ranked last (they are never found before the ranked ones), so a
    method that scores fewer items is not rewarded for it.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    truth = np.asarray(truth, bool).reshape(-1)
    total = int(truth.sum())
    if total == 0:
        return float("nan")
    filled = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-filled, kind="stable")
    hits = truth[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].sum() / total)
