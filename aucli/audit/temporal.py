"""Time structure of a label set: sequences, segments, runs and neighbourhoods.

AU events last many frames (BP4D: half a second to several seconds), so a label is judged with its
neighbours. Rows are put in *sequence order* first: grouped by (source, track), frames ascending
(:func:`aucli.events.sequence_order`). A *segment* is a stretch of one sequence without a gap: a new segment
starts where the frame index jumps by more than ``max_gap`` times the sequence's usual step (a
frame without a face, a cut). Runs never cross a segment boundary, nor an unknown label (-1).

Everything here is vectorised over rows: a corpus has 10^5-10^6 faces.
"""

from __future__ import annotations

import numpy as np

from aucli.events import segment_ids, sequence_order  # their home: aucli.events (one home for sequences and events)

__all__ = ["RunTable", "expand_runs", "label_runs", "runs", "segment_ids", "sequence_order", "window_mean"]


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
