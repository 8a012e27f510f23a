"""Time structure of a label set: sequences, segments, runs and neighbourhoods.

AU events last many frames (BP4D: half a second to several seconds), so a label is judged with its
neighbours. Rows are put in *sequence order* first: grouped by (source, track), frames ascending
(:func:`sequence_order`). A *segment* is a stretch of one sequence without a gap: a new segment
starts where the frame index jumps by more than ``max_gap`` times the sequence's usual step (a
frame without a face, a cut). Runs never cross a segment boundary, nor an unknown label (-1).

Everything here is vectorised over rows: a corpus has 10^5-10^6 faces.
"""

from __future__ import annotations

import numpy as np

from aucli.errors import UsageError

__all__ = ["RunTable", "expand_runs", "label_runs", "runs", "segment_ids", "sequence_order", "window_mean"]


def sequence_order(source, track, frame) -> np.ndarray:
    """Row order that groups rows by (source, track) with frames ascending: ``(n,)`` indices."""
    source, track, frame = (np.asarray(a).reshape(-1) for a in (source, track, frame))
    if not source.size == track.size == frame.size:
        raise UsageError(f"source, track and frame differ in length: {source.size}, {track.size}, {frame.size}")
    return np.lexsort((frame, track, source))


def segment_ids(source, track, frame, *, max_gap: float = 2.0) -> np.ndarray:
    """``(n,)`` int64 segment id of each row, for rows already in sequence order.

    A new segment starts at a new (source, track), or where ``frame`` steps forward by more than
    ``max_gap`` times that sequence's median step (1 for every frame decoded; 5 for ``--every 5``).
    A repeated or backwards frame index raises: the rows are not in sequence order.
    """
    source, track, frame = (np.asarray(a).reshape(-1) for a in (source, track, frame))
    n = frame.size
    if n == 0:
        return np.zeros(0, np.int64)
    new_sequence = np.r_[True, (source[1:] != source[:-1]) | (track[1:] != track[:-1])]
    step = np.r_[0, np.diff(frame.astype(np.int64))]
    n_pairs = np.unique(np.stack([source.astype(np.int64), track.astype(np.int64)], axis=1), axis=0).shape[0]
    if np.any(step[~new_sequence] <= 0) or int(new_sequence.sum()) != n_pairs:
        raise UsageError("rows must be in sequence order (grouped by source and track, frames strictly increasing); "
                         "sort them with sequence_order() first")
    sequence = np.cumsum(new_sequence) - 1
    inner = ~new_sequence
    typical = np.ones(sequence[-1] + 1)
    if inner.any():
        # median step per sequence: sort steps within each sequence and take the middle one
        seq_inner, step_inner = sequence[inner], step[inner]
        order = np.lexsort((step_inner, seq_inner))
        seq_sorted, step_sorted = seq_inner[order], step_inner[order]
        starts = np.flatnonzero(np.r_[True, seq_sorted[1:] != seq_sorted[:-1]])
        counts = np.diff(np.r_[starts, seq_sorted.size])
        typical[seq_sorted[starts]] = step_sorted[starts + (counts - 1) // 2]
    breaks = new_sequence | (step > max_gap * typical[sequence])
    return np.cumsum(breaks) - 1


class RunTable:
    """Maximal runs of rows (``start``, ``stop`` exclusive) with an id per row (-1 outside runs)."""

    def __init__(self, start: np.ndarray, stop: np.ndarray, row_id: np.ndarray) -> None:
        self.start, self.stop, self.row_id = start, stop, row_id

    def __len__(self) -> int:
        return int(self.start.size)

    @property
    def length(self) -> np.ndarray:
        return self.stop - self.start

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-run sums of ``values`` ``(n,)`` over the run's rows."""
        inside = self.row_id >= 0
        return np.bincount(self.row_id[inside], weights=values[inside], minlength=len(self)).astype(np.float64)

    def maxima(self, values: np.ndarray) -> np.ndarray:
        """Per-run maximum of ``values`` ``(n,)``."""
        result = np.full(len(self), -np.inf)
        inside = self.row_id >= 0
        np.maximum.at(result, self.row_id[inside], values[inside])
        return result


def runs(mask: np.ndarray, segments: np.ndarray, key: np.ndarray | None = None) -> RunTable:
    """Maximal runs of ``mask`` rows within a segment (and, with ``key``, of one key value).

    Args:
        mask: ``(n,)`` bool, rows that may belong to a run.
        segments: ``(n,)`` segment ids (:func:`segment_ids`).
        key: optional ``(n,)`` values; a run also ends where the key changes (the label value).
    """
    mask = np.asarray(mask, bool)
    n = mask.size
    if n == 0:
        empty = np.zeros(0, np.int64)
        return RunTable(empty, empty, empty)
    cut = np.r_[True, segments[1:] != segments[:-1]]
    if key is not None:
        cut |= np.r_[True, key[1:] != key[:-1]]
    starts = mask & (cut | ~np.r_[False, mask[:-1]])
    ends = mask & (np.r_[cut[1:], True] | ~np.r_[mask[1:], False])
    row_id = np.where(mask, np.cumsum(starts) - 1, -1)
    return RunTable(np.flatnonzero(starts), np.flatnonzero(ends) + 1, row_id)


def label_runs(labels: np.ndarray, segments: np.ndarray) -> RunTable:
    """Maximal runs of one known label value (0 or 1) of one AU column ``(n,)``."""
    labels = np.asarray(labels)
    return runs((labels == 0) | (labels == 1), segments, labels)


def window_mean(values: np.ndarray, valid: np.ndarray, segments: np.ndarray, start: np.ndarray, stop: np.ndarray,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over the ``width`` rows before ``start`` and after ``stop`` (within the segment).

    Only ``valid`` rows count. Returns ``(mean, count)`` per window pair; mean is NaN where no row counts.
    """
    values = np.where(valid, values, 0.0).astype(np.float64)
    cum_v = np.r_[0.0, np.cumsum(values)]
    cum_n = np.r_[0, np.cumsum(valid.astype(np.int64))]
    n = values.size
    new_segment = np.r_[True, segments[1:] != segments[:-1]]
    seg_first = np.flatnonzero(new_segment)
    seg_last = np.r_[seg_first[1:], n]
    dense = np.cumsum(new_segment) - 1
    first, last = seg_first[dense[start]], seg_last[dense[start]]
    left_lo = np.maximum(start - width, first)
    right_hi = np.minimum(stop + width, last)
    total = (cum_v[start] - cum_v[left_lo]) + (cum_v[right_hi] - cum_v[stop])
    count = (cum_n[start] - cum_n[left_lo]) + (cum_n[right_hi] - cum_n[stop])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def expand_runs(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """All positions ``start[i] .. stop[i] - 1`` of every run, concatenated in run order."""
    start, stop = np.asarray(start, np.int64), np.asarray(stop, np.int64)
    length = stop - start
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(length) - length
    return np.arange(total, dtype=np.int64) - np.repeat(offsets, length) + np.repeat(start, length)
