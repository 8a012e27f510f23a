"""aucli.events: HMM smoothing, runs -> events, the events table, one-to-one IoU matching and event F1, by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aucli.errors import UsageError
from aucli.events import (
    EVENT_COLUMNS,
    event_agreement,
    events_table,
    find_runs,
    frame_rates,
    match_events,
    smooth_probabilities,
    transition_rates,
)


def brute_force_posterior(p: np.ndarray, frames: np.ndarray, a: float, b: float) -> np.ndarray:
    """P(on at t | all frames) by summing over every state path (2^T of them)."""
    pi = a / (a + b)
    step = np.array([[1 - a, a], [b, 1 - b]])  # rows: from off, from on
    total, on = 0.0, np.zeros(p.size)
    for path in itertools.product((0, 1), repeat=p.size):
        weight = pi if path[0] else 1 - pi
        for t, state in enumerate(path):
            if t:
                weight *= np.linalg.matrix_power(step, int(frames[t] - frames[t - 1]))[path[t - 1], state]
            if not np.isnan(p[t]):
                weight *= p[t] if state else 1 - p[t]
        total += weight
        on += weight * np.asarray(path)
    return on / total


def test_forward_backward_equals_the_sum_over_every_path():
    p = np.array([0.2, 0.7, np.nan, 0.6, 0.1, 0.9])
    frames = np.array([0, 1, 2, 5, 6, 7])  # a 3-frame step uses A^3; the NaN frame carries no evidence
    fps = 10.0
    a, b = transition_rates(fps, mean_event_s=0.5, mean_gap_s=2.0)
    assert (a, b) == pytest.approx((1 / 20, 1 / 5))
    smoothed = smooth_probabilities(p[:, None], fps, frames=frames, mean_event_s=0.5, mean_gap_s=2.0)[:, 0]
    assert smoothed == pytest.approx(brute_force_posterior(p, frames, a, b), abs=1e-9)


def test_smoothing_removes_flicker_and_keeps_the_event():
    p = np.r_[[0.1] * 10, [0.9] * 10, [0.1] * 10]
    p[4] = 0.8  # a one-frame false spike
    p[15] = 0.3  # a one-frame dip inside the event
    raw_runs = find_runs(p >= 0.5)
    assert raw_runs[0].tolist() == [4, 10, 16]  # three runs before smoothing
    smoothed = smooth_probabilities(p[:, None], 30.0)[:, 0]
    starts, stops = find_runs(smoothed >= 0.5)
    assert starts.tolist() == [10] and stops.tolist() == [20]
    assert smoothed[4] < 0.5 < smoothed[15]
    # the rates are set in seconds: doubling fps halves the per-frame switching probability
    assert transition_rates(60.0)[0] == pytest.approx(transition_rates(30.0)[0] / 2)


def test_segments_are_independent_chains():
    p = np.array([[0.9], [0.9], [0.9], [0.1], [0.1], [0.1]])
    joined = smooth_probabilities(p, 5.0, mean_event_s=10.0, mean_gap_s=10.0)[:, 0]
    split = smooth_probabilities(p, 5.0, mean_event_s=10.0, mean_gap_s=10.0, segments=[0, 0, 0, 1, 1, 1])[:, 0]
    alone = smooth_probabilities(p[3:], 5.0, mean_event_s=10.0, mean_gap_s=10.0)[:, 0]
    assert split[3:] == pytest.approx(alone)
    assert joined[3] > split[3]  # without the boundary the event's evidence leaks across
    with pytest.raises(UsageError, match="frames must increase"):
        smooth_probabilities(p, 5.0, frames=[0, 1, 1, 2, 3, 4])
    with pytest.raises(UsageError, match="fps"):
        smooth_probabilities(p, 0.0)


def test_runs_end_at_segment_boundaries():
    on = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
    starts, stops = find_runs(on, segments=[0, 0, 0, 0, 0, 1, 1, 1, 1])
    assert starts.tolist() == [0, 3, 5, 8] and stops.tolist() == [2, 5, 7, 9]
    with pytest.raises(UsageError, match="contiguous"):
        find_runs(on, segments=[0, 1, 0, 1, 0, 1, 0, 1, 0])


def test_matching_is_one_to_one_and_greedy_by_iou():
    reference = (np.array([0, 20]), np.array([10, 30]))  # [0, 10), [20, 30)
    other = (np.array([0, 4, 21]), np.array([6, 10, 30]))  # [0, 6): IoU .6; [4, 10): IoU .6; [21, 30): IoU .9
    assert match_events(reference, other, min_iou=0.5) == [(0, 0), (1, 2)]  # the tie goes to the first; once only
    assert match_events(reference, other, min_iou=0.95) == []
    long = (np.array([0]), np.array([10]))
    halves = (np.array([0, 5]), np.array([5, 10]))  # each half: IoU .5 with the whole
    assert match_events(long, halves, min_iou=0.5) == [(0, 0)]
    with pytest.raises(UsageError, match="min_iou"):
        match_events(long, halves, min_iou=0.0)


def test_event_f1_by_hand():
    # truth: events [2, 6) and [10, 14); predicted: [3, 6) (IoU 3/4), [8, 9) (no overlap), [12, 16) (IoU 2/6)
    truth = np.zeros((16, 1), int)
    truth[2:6] = truth[10:14] = 1
    predicted = np.zeros((16, 1), int)
    predicted[3:6] = predicted[8:9] = predicted[12:16] = 1
    result = event_agreement(truth, predicted, min_iou=0.5)
    assert (result.n_reference[0], result.n_other[0], result.matched[0]) == (2, 3, 1)
    assert result.precision[0] == pytest.approx(1 / 3) and result.recall[0] == pytest.approx(1 / 2)
    assert result.f1[0] == pytest.approx(2 * 1 / (2 + 3))  # 0.4
    assert event_agreement(truth, predicted, min_iou=0.3).matched[0] == 2
    none = event_agreement(np.zeros((4, 1), int), np.zeros((4, 1), int))
    assert np.isnan(none.f1[0])


def test_events_table_onset_apex_offset_in_frames_and_seconds(tmp_path):
    probs = np.full((12, 2), 0.05)
    probs[2:6, 0] = [0.7, 0.95, 0.8, 0.6]
    probs[8:11, 1] = [0.6, 0.7, 0.65]
    intensity = np.zeros((12, 2))
    intensity[2:6, 0] = [1.0, 2.0, 3.5, 1.0]  # the apex by intensity is frame 104, not the top probability's 103
    frames = np.arange(100, 112)
    table = events_table(probs, 25.0, au_names=["AU1", "AU12"], frames=frames, intensities=intensity, smooth=False)
    rows = table.records()
    assert [r["au"] for r in rows] == ["AU1", "AU12"]
    first, second = rows
    assert (first["onset_frame"], first["apex_frame"], first["offset_frame"]) == (102, 104, 105)
    assert first["onset_s"] == pytest.approx(102 / 25) and first["offset_s"] == pytest.approx(105 / 25)
    assert first["duration_s"] == pytest.approx(4 / 25)
    assert first["peak_probability"] == pytest.approx(0.95) and first["peak_intensity"] == pytest.approx(3.5)
    assert first["mean_probability"] == pytest.approx(np.mean([0.7, 0.95, 0.8, 0.6]))
    assert (second["onset_frame"], second["apex_frame"], second["offset_frame"]) == (108, 109, 110)
    path = tmp_path / "events.csv"
    table.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(EVENT_COLUMNS) and lines[1].startswith("AU1,102,104,105,4.080000,")


def test_events_table_smooths_and_splits_at_gaps():
    probs = np.r_[[0.1] * 5, [0.9] * 3, [0.4], [0.9] * 3, [0.1] * 5][:, None]
    raw = events_table(probs, 30.0, au_names=["AU6"], smooth=False)
    smoothed = events_table(probs, 30.0, au_names=["AU6"])
    assert len(raw) == 2 and len(smoothed) == 1
    assert smoothed.records()[0]["onset_frame"] == 5 and smoothed.records()[0]["offset_frame"] == 11
    # a jump of 40 frames (no face) ends the event; timestamps, when given, are the seconds
    frames = np.r_[0:6, 46:52]
    on = np.full((12, 1), 0.9)
    split = events_table(on, 30.0, au_names=["AU6"], frames=frames, timestamps=frames / 30.0 + 1.0, smooth=False)
    assert [r["onset_frame"] for r in split.records()] == [0, 46]
    assert split.records()[1]["onset_s"] == pytest.approx(46 / 30 + 1.0)
    with pytest.raises(UsageError, match="n_frames, 2"):
        events_table(on, 30.0, au_names=["AU6", "AU12"])


def test_frame_rates_from_the_clock():
    frames = np.array([0, 2, 4, 6, 0, 1, 2, 0])
    stamps = np.array([0.0, 0.08, 0.16, 0.24, 1.0, 1.04, 1.08, np.nan])  # 25 fps sampled every 2nd frame; 25 fps; no clock
    rates = frame_rates(frames, stamps, segments=[0, 0, 0, 0, 1, 1, 1, 2])
    assert rates[:7] == pytest.approx([25.0] * 7) and np.isnan(rates[7])
