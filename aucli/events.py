"""AU events over time: smoothing of frame probabilities, runs -> events, one-to-one matching, event F1.

This module is the one home of event extraction and matching: ``aucli labels compare`` (two label
sets, or a label set and another tool's CSV), ``aucli eval`` (event F1 beside frame F1) and the
events table of a prediction all use it. Documented for users in docs/events.md.

**Sequences.** Rows are put in *sequence order*: grouped by (source, track), frames ascending
(:func:`sequence_order`). A *segment* is a stretch of one sequence without a gap: a new one starts
at a new (source, track) or where the frame index jumps by more than ``max_gap`` times the
sequence's usual step (:func:`segment_ids`). No event crosses a segment boundary.

**Smoothing: a two-state HMM per AU** (:func:`smooth_probabilities`). Each AU is *off* or *on*;
the state persists from frame to frame. The model is parameterised in seconds, as AU events are
described: ``mean_event_s`` (mean duration of an event) and ``mean_gap_s`` (mean time between
events). At ``fps`` frames per second the per-frame probability of leaving *on* is
``b = 1 / (mean_event_s * fps)`` and of leaving *off* ``a = 1 / (mean_gap_s * fps)`` (each at most
0.5), so the expected dwell times are the given durations whatever the frame rate. Rows ``k``
frames apart (``--every k``, a frame without a face) use the ``k``-step transition
``A^k``; at a segment start the chain restarts from its stationary distribution
``pi_on = a / (a + b)``. The frame probability ``p`` is the emission: ``P(x | on) ∝ p``,
``P(x | off) ∝ 1 - p`` (a classifier's posterior under a flat prior, the usual hybrid HMM); a NaN
probability (no face) carries no evidence. The smoothed probability is the forward-backward
posterior ``P(on at t | every frame of the segment)``.

Why an HMM rather than hysteresis thresholds: its output is still a probability per frame, so the
checkpoint's per-AU thresholds, F1 curves and calibration apply to it unchanged; it has two
parameters with a meaning in seconds instead of two thresholds and two minimum durations; it uses
the evidence of the whole neighbourhood (a confident frame next to a doubtful one) rather than
one threshold crossing; and a missing frame or a sampling step is handled by the chain itself.
The defaults (1 s events, 1 s gaps) are symmetric: they remove flicker without favouring either
state.

**Events** are maximal runs of frames at or above the threshold (after smoothing, if asked)
within a segment: onset = first frame, offset = last frame (inclusive), apex = the frame of the
highest intensity (when given; ties go to the higher probability) or probability.

**Matching.** The temporal IoU of two events is overlap / union, in rows of the sequence (frames
for one video read at every frame). Two events match when their IoU is at least ``min_iou`` (0.5
by default); matching is one-to-one, greedy by IoU (highest first; ties by reference order).
**Event F1** = ``2 matched / (n_reference + n_other)``; precision = matched / n_other, recall =
matched / n_reference. NaN where neither side has an event.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aucli.errors import UsageError
from aucli.metrics import check_labels, nanmean

__all__ = [
    "DEFAULT_MEAN_EVENT_S",
    "DEFAULT_MEAN_GAP_S",
    "DEFAULT_MIN_IOU",
    "EVENT_COLUMNS",
    "EventAgreement",
    "EventReport",
    "EventTable",
    "event_agreement",
    "events_table",
    "find_events",
    "find_runs",
    "frame_rates",
    "match_events",
    "segment_ids",
    "sequence_order",
    "smooth_probabilities",
    "transition_rates",
]

DEFAULT_MIN_IOU = 0.5
DEFAULT_MEAN_EVENT_S = 1.0
DEFAULT_MEAN_GAP_S = 1.0
_EPS = 1e-6

#: Columns of an events table, in order (see :class:`EventTable`).
EVENT_COLUMNS = ("au", "onset_frame", "apex_frame", "offset_frame", "onset_s", "apex_s", "offset_s", "duration_s",
                 "peak_probability", "mean_probability", "peak_intensity")


# --------------------------------------------------------------------------------------------
# Sequences and segments


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


def frame_rates(frames, timestamps, segments) -> np.ndarray:
    """``(n,)`` frames per second of each row, from the clock: per segment, 1 / the median of
    ``(t[i+1] - t[i]) / (frame[i+1] - frame[i])`` over its consecutive rows; NaN where a segment has
    no two timed rows (frame folders and images have no clock)."""
    frames = np.asarray(frames, dtype=np.float64).reshape(-1)
    stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    blocks = _segment_blocks(segments, frames.size)
    out = np.full(frames.size, np.nan)
    if frames.size < 2:
        return out
    same = blocks[1:] == blocks[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_frame = np.diff(stamps) / np.diff(frames)
    usable = same & np.isfinite(per_frame) & (per_frame > 0)
    for block in np.unique(blocks[1:][usable]):
        seconds = float(np.median(per_frame[usable & (blocks[1:] == block)]))
        out[blocks == block] = 1.0 / seconds
    return out


def _segment_blocks(segments, n_rows: int) -> np.ndarray:
    """``(n,)`` block numbers; raises unless each segment id is one contiguous block of rows."""
    if segments is None:
        return np.zeros(n_rows, dtype=np.int64)
    segments = np.asarray(segments).reshape(-1)
    if segments.size != n_rows:
        raise UsageError(f"sequences has {segments.size} entries for {n_rows} rows.")
    changes = np.r_[True, segments[1:] != segments[:-1]] if n_rows else np.zeros(0, bool)
    if changes.sum() != np.unique(segments).size:
        raise UsageError("rows must be grouped by sequence (each sequence one contiguous block, in frame "
                         "order); sort them by (sequence, frame) first.")
    return np.cumsum(changes)


# --------------------------------------------------------------------------------------------
# Smoothing


def transition_rates(fps: float, *, mean_event_s: float = DEFAULT_MEAN_EVENT_S,
                     mean_gap_s: float = DEFAULT_MEAN_GAP_S) -> tuple[float, float]:
    """Per-frame ``(a, b)``: P(off -> on) = 1 / (mean_gap_s * fps), P(on -> off) = 1 / (mean_event_s * fps), each <= 0.5."""
    for name, value in (("fps", fps), ("mean_event_s", mean_event_s), ("mean_gap_s", mean_gap_s)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{name} must be a positive number of {'frames per second' if name == 'fps' else 'seconds'}; "
                             f"found {value}.")
    return min(0.5, 1.0 / (mean_gap_s * fps)), min(0.5, 1.0 / (mean_event_s * fps))


def smooth_probabilities(probs, fps, *, frames=None, segments=None, mean_event_s: float = DEFAULT_MEAN_EVENT_S,
                         mean_gap_s: float = DEFAULT_MEAN_GAP_S) -> np.ndarray:
    """Forward-backward posterior P(on) of the two-state HMM of each AU (see the module docstring).

    Args:
        probs: ``(n_frames, n_aus)`` frame probabilities, rows in frame order within each segment;
            NaN where a frame has no evidence.
        fps: frames per second: one value, or ``(n_frames,)`` (sources of different rates).
        frames: ``(n_frames,)`` frame indices (default ``0..n-1``); rows ``k`` frames apart use ``A^k``.
        segments: ``(n_frames,)`` segment ids, each one contiguous block (default: one segment).

    Returns:
        ``(n_frames, n_aus)`` smoothed probabilities; NaN rows stay finite (the chain's belief).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise UsageError(f"probabilities must be (n_frames, n_aus); found shape {probs.shape}.")
    n = probs.shape[0]
    fps_rows = np.broadcast_to(np.asarray(fps, dtype=np.float64), (n,))
    frames = np.arange(n, dtype=np.int64) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
    if frames.size != n:
        raise UsageError(f"frames has {frames.size} entries for {n} rows.")
    blocks = _segment_blocks(segments, n)
    if np.any(~np.isfinite(fps_rows) | (fps_rows <= 0)):
        raise UsageError("fps must be a positive number of frames per second.")
    transition_rates(1.0, mean_event_s=mean_event_s, mean_gap_s=mean_gap_s)  # checks the durations
    a_rows = np.minimum(0.5, 1.0 / (mean_gap_s * fps_rows))
    b_rows = np.minimum(0.5, 1.0 / (mean_event_s * fps_rows))
    pi = a_rows / (a_rows + b_rows)
    step = np.r_[0, np.diff(frames)].astype(np.float64)
    new = np.r_[True, blocks[1:] != blocks[:-1]] if n else np.zeros(0, bool)
    if np.any(step[~new] <= 0):
        raise UsageError("frames must increase strictly within a segment.")
    memory = np.where(new, 0.0, np.power(1.0 - a_rows - b_rows, step))  # lambda^k; 0 at a segment start
    p_on = np.where(np.isnan(probs), 0.5, np.clip(probs, _EPS, 1 - _EPS))
    return _forward_backward(p_on, pi[:, None], memory[:, None])


def _forward_backward(p_on: np.ndarray, pi: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Posterior P(on) with emissions ``p_on`` / ``1 - p_on``; ``memory[t]`` links row t to row t-1."""
    n = p_on.shape[0]
    if n == 0:
        return p_on.copy()
    forward = np.empty_like(p_on)  # P(on at t | rows up to t), normalised
    belief = pi[0]
    for t in range(n):
        prior = pi[t] + (belief - pi[t]) * memory[t] if t else pi[0]
        on, off = prior * p_on[t], (1 - prior) * (1 - p_on[t])
        belief = on / (on + off)
        forward[t] = belief
    backward = np.full_like(p_on, 0.5)  # beta_on / (beta_on + beta_off), normalised
    for t in range(n - 2, -1, -1):
        nxt_on = p_on[t + 1] * backward[t + 1]
        nxt_off = (1 - p_on[t + 1]) * (1 - backward[t + 1])
        g = nxt_on / (nxt_on + nxt_off)
        mu, p = memory[t + 1], pi[t + 1]
        stay_on = p + (1 - p) * mu
        off_to_on = p * (1 - mu)
        beta_on = stay_on * g + (1 - stay_on) * (1 - g)
        beta_off = off_to_on * g + (1 - off_to_on) * (1 - g)
        backward[t] = beta_on / (beta_on + beta_off)
    on = forward * backward
    return on / (on + (1 - forward) * (1 - backward))


# --------------------------------------------------------------------------------------------
# Runs and events


def find_runs(on, segments=None) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of True in ``on`` ``(n,)`` that do not cross a segment: ``(starts, stops)``, stop exclusive."""
    on = np.asarray(on, dtype=bool).reshape(-1)
    block = _segment_blocks(segments, on.size)
    if on.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_block = np.r_[True, block[1:] != block[:-1]]
    starts = np.flatnonzero(on & (new_block | ~np.r_[False, on[:-1]]))
    stops = np.flatnonzero(on & (np.r_[new_block[1:], True] | ~np.r_[on[1:], False])) + 1
    return starts, stops


def find_events(labels, sequences=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Events (maximal runs of 1s) of every AU of a label matrix.

    Args:
        labels: ``(n_frames, n_aus)`` in {-1, 0, 1, 9}, rows in frame order within each sequence;
            a 0 or an unknown label ends a run.
        sequences: ``(n_frames,)`` sequence (or segment) ids, each one contiguous block of rows;
            None for one sequence.

    Returns:
        Per AU, ``(starts, stops)`` int arrays of row indices (``stop`` exclusive), sorted.
    """
    labels = check_labels(labels)
    _segment_blocks(sequences, labels.shape[0])
    return [find_runs(labels[:, i] == 1, sequences) for i in range(labels.shape[1])]


@dataclass
class EventTable:
    """The events of one video (one face track): one row per event, columns :data:`EVENT_COLUMNS`.

    ``au``: the AU name; ``onset_frame`` / ``offset_frame``: first and last frame of the event
    (inclusive); ``apex_frame``: the frame of its highest intensity (when intensities are given; ties: the
    highest probability) or probability; ``*_s``: those frames in seconds (the timestamps when given, else frame / fps);
    ``duration_s``: ``offset_s - onset_s + 1 / fps`` (one frame lasts 1 / fps); ``peak_probability``
    and ``mean_probability``: of the frame probabilities (before smoothing) over the event;
    ``peak_intensity``: NaN without intensities. Rows sorted by onset, then AU order.
    """

    columns: dict[str, np.ndarray]
    fps: float
    smoothed: bool

    def __len__(self) -> int:
        return int(self.columns["au"].size)

    def records(self) -> list[dict[str, Any]]:
        """One dict per event, plain Python values (NaN as None)."""
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {}
            for name in EVENT_COLUMNS:
                value = self.columns[name][i]
                if name == "au":
                    row[name] = str(value)
                elif name.endswith("_frame"):
                    row[name] = int(value)
                else:
                    row[name] = float(value) if np.isfinite(value) else None
            out.append(row)
        return out

    def to_csv(self) -> str:
        """The table as CSV text (header :data:`EVENT_COLUMNS`; seconds and probabilities to 6 decimals; NaN empty)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        for row in self.records():
            writer.writerow(["" if row[c] is None else (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
                             for c in EVENT_COLUMNS])
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> None:
        """Write :meth:`to_csv` to ``path`` atomically (never half-written)."""
        from aucli.fileio import atomic_write_text

        atomic_write_text(path, self.to_csv())


def events_table(frame_probabilities, fps: float, *, au_names: Sequence[str], frames=None, timestamps=None,
                 intensities=None, thresholds=0.5, smooth: bool = True, mean_event_s: float = DEFAULT_MEAN_EVENT_S,
                 mean_gap_s: float = DEFAULT_MEAN_GAP_S, max_gap: float = 2.0) -> EventTable:
    """The events of one video's face track (see :class:`EventTable`), for ``aucli predict``.

    Args:
        frame_probabilities: ``(n_frames, n_aus)`` probabilities of one track, rows in frame order;
            NaN where the frame has no face.
        fps: the video's frame rate.
        au_names: the ``n_aus`` column names.
        frames: ``(n_frames,)`` frame indices, strictly increasing (default ``0..n-1``); a jump of
            more than ``max_gap`` usual steps ends every event (:func:`segment_ids`).
        timestamps: ``(n_frames,)`` seconds; NaN or None: ``frame / fps``.
        intensities: ``(n_frames, n_aus)`` (e.g. AUxx_r), for the apex and ``peak_intensity``.
        thresholds: one value or ``(n_aus,)`` (the checkpoint's); applied to the smoothed
            probabilities when ``smooth``.
        smooth: HMM smoothing first (:func:`smooth_probabilities`) with ``mean_event_s``, ``mean_gap_s``.
    """
    probs = np.asarray(frame_probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(au_names):
        raise UsageError(f"frame_probabilities must be (n_frames, {len(au_names)}); found shape {probs.shape}.")
    n, n_aus = probs.shape
    frames = np.arange(n, dtype=np.int64) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
    zeros = np.zeros(n, np.int64)
    segments = segment_ids(zeros, zeros, frames, max_gap=max_gap)
    transition_rates(fps, mean_event_s=mean_event_s, mean_gap_s=mean_gap_s)
    seconds = frames / fps
    if timestamps is not None:
        stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        seconds = np.where(np.isfinite(stamps), stamps, seconds)
    decided = smooth_probabilities(probs, fps, frames=frames, segments=segments, mean_event_s=mean_event_s,
                                   mean_gap_s=mean_gap_s) if smooth else probs
    limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float64).reshape(-1), (n_aus,))
    strength = None if intensities is None else np.asarray(intensities, dtype=np.float64)
    if strength is not None and strength.shape != probs.shape:
        raise UsageError(f"intensities {strength.shape} and probabilities {probs.shape} must have the same shape.")
    rows: list[tuple] = []
    for k, au in enumerate(au_names):
        starts, stops = find_runs(np.nan_to_num(decided[:, k], nan=0.0) >= limits[k], segments)
        for start, stop in zip(starts, stops):
            p = probs[start:stop, k]
            peak_i = np.nan if strength is None else _nanmax(strength[start:stop, k])
            apex = start + _apex(p, None if strength is None else strength[start:stop, k])
            rows.append(((int(frames[start]), k), (au, frames[start], frames[apex], frames[stop - 1], seconds[start],
                         seconds[apex], seconds[stop - 1], seconds[stop - 1] - seconds[start] + 1.0 / fps, _nanmax(p),
                         float(np.nanmean(p)) if np.isfinite(p).any() else np.nan, peak_i)))
    rows.sort(key=lambda r: r[0])
    dtypes = [object, np.int64, np.int64, np.int64] + [np.float64] * 7
    columns = {name: np.asarray([r[1][i] for r in rows], dtype=dtype)
               for i, (name, dtype) in enumerate(zip(EVENT_COLUMNS, dtypes))}
    return EventTable(columns=columns, fps=float(fps), smoothed=bool(smooth))


def _apex(probability: np.ndarray, intensity: np.ndarray | None) -> int:
    """Row of the highest intensity (ties: the highest probability); without intensities, of the highest probability."""
    p = np.nan_to_num(probability, nan=-np.inf)
    if intensity is None or not np.isfinite(intensity).any():
        return int(np.argmax(p))
    return int(np.lexsort((-p, -np.nan_to_num(intensity, nan=-np.inf)))[0])


def _nanmax(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def match_events(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], *,
                 min_iou: float = DEFAULT_MIN_IOU) -> list[tuple[int, int]]:
    """One-to-one matches ``(i, j)`` of reference event i with other event j, greedy by temporal IoU.

    Events are ``(starts, stops)`` (stop exclusive, sorted by start). A pair is a candidate when its
    IoU (overlap / union) is at least ``min_iou``; candidates are taken highest IoU first, ties in
    reference order, each event at most once. Returned sorted by ``i``.
    """
    if not 0.0 < min_iou <= 1.0:
        raise UsageError(f"min_iou must be in (0, 1]; found {min_iou}.")
    (ref_start, ref_stop), (oth_start, oth_stop) = reference, other
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
                candidates.append((-overlap / union, i, j))
            j += 1
    used_ref, used_other, pairs = set(), set(), []
    for _, i, j in sorted(candidates):
        if i not in used_ref and j not in used_other:
            used_ref.add(i)
            used_other.add(j)
            pairs.append((int(i), int(j)))
    return sorted(pairs)


def _ratio(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


@dataclass
class EventAgreement:
    """Per-AU event counts ``(n_aus,)``: events of each side and one-to-one matches."""

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
        """``2 matched / (n_reference + n_other)``; NaN where neither side has an event."""
        return _ratio(2 * self.matched, self.n_reference + self.n_other)


def event_agreement(reference, other, sequences=None, *, min_iou: float = DEFAULT_MIN_IOU) -> EventAgreement:
    """Event agreement of two ``(n, n_aus)`` label matrices; rows either leaves unknown are unknown in both."""
    if not 0.0 < min_iou <= 1.0:
        raise UsageError(f"min_iou must be in (0, 1]; found {min_iou}.")
    a, b = check_labels(reference, "reference labels"), check_labels(other, "other labels")
    if a.shape != b.shape:
        raise UsageError(f"label sets differ in shape: {a.shape} and {b.shape}.")
    both = ((a == 0) | (a == 1)) & ((b == 0) | (b == 1))
    events_a = find_events(np.where(both, a, -1), sequences)
    events_b = find_events(np.where(both, b, -1), sequences)
    return EventAgreement(
        n_reference=np.array([e[0].size for e in events_a], dtype=np.int64),
        n_other=np.array([e[0].size for e in events_b], dtype=np.int64),
        matched=np.array([len(match_events(ea, eb, min_iou=min_iou)) for ea, eb in zip(events_a, events_b)], dtype=np.int64),
        min_iou=float(min_iou))


def _plain(values) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def _percent(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f}"


@dataclass
class EventReport:
    """Frame F1 beside event F1 per AU (``aucli eval``): ``frame_f1 (n_aus,)`` and the event counts."""

    au_names: list[str]
    frame_f1: np.ndarray
    events: EventAgreement
    title: str = "Events"

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "min_iou": self.events.min_iou,
            "mean_frame_f1": _plain([nanmean(self.frame_f1)])[0], "mean_event_f1": _plain([nanmean(self.events.f1)])[0],
            "per_au": {"au": list(self.au_names), "frame_f1": _plain(self.frame_f1), "event_f1": _plain(self.events.f1),
                       "event_precision": _plain(self.events.precision), "event_recall": _plain(self.events.recall),
                       "events_true": self.events.n_reference.tolist(), "events_predicted": self.events.n_other.tolist(),
                       "events_matched": self.events.matched.tolist()},
        }

    def table(self):
        from rich.table import Table

        table = Table(title=f"{self.title} (temporal IoU >= {self.events.min_iou:g})")
        for column in ("AU", "frame F1 %", "event F1 %", "precision %", "recall %", "true/predicted/matched"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        e = self.events
        for i, name in enumerate(self.au_names):
            table.add_row(name, _percent(self.frame_f1[i]), _percent(e.f1[i]), _percent(e.precision[i]),
                          _percent(e.recall[i]), f"{e.n_reference[i]}/{e.n_other[i]}/{e.matched[i]}")
        table.add_section()
        table.add_row("mean", _percent(nanmean(self.frame_f1)), _percent(nanmean(e.f1)), "", "", "", style="bold")
        return table

    def __rich__(self):
        return self.table()
