"""AU timelines: BP4D occurrence rates and co-occurrences, event shapes, micro-expression clips."""

from __future__ import annotations

import numpy as np
import pytest

from aucli.synth.events import (
    BP4D_RATES,
    TARGET_RATES,
    TASKS,
    TimelineModel,
    extract_events,
    levels_from_intensity,
    sample_micro_clip,
)
from aucli.synth.facs import SYNTH_AUS
from benchlib.synth_gates import conditional_table, occurrence_table


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, list]:
    """240,000 frames: 120 subjects x 8 tasks x 250 frames (timelines only, about a second)."""
    model = TimelineModel(tuple(TASKS))
    rng = np.random.default_rng(11)
    levels, events = [], []
    for _ in range(120):
        effects = model.subject_effects(rng)
        for task in TASKS:
            timeline = model.sample(rng, 250, task, effects)
            levels.append(timeline.levels)
    for lv in levels[:80]:
        events.extend(extract_events(lv))
    return np.concatenate(levels), events


def test_thresholds_give_the_target_rates_exactly() -> None:
    for tasks in (tuple(TASKS), ("T1",), ("T2", "T6", "T8")):
        model = TimelineModel(tasks)
        for au, rate in model.expected_rates().items():
            assert rate == pytest.approx(TARGET_RATES[au], abs=1e-6), (tasks, au)


def test_sampled_rates_are_within_three_points_of_bp4d(sample) -> None:
    levels, _ = sample
    rows = occurrence_table(levels)
    assert {r.au for r in rows} == set(SYNTH_AUS)
    for row in rows:
        assert abs(row.error) < 0.03, f"AU{row.au}: {row.rate:.3f} vs target {row.target:.2f}"
    assert set(BP4D_RATES) <= set(SYNTH_AUS)


def test_cooccurring_aus_lift_each_other(sample) -> None:
    levels, _ = sample
    table = {(a, b): (c, u) for a, b, c, u in conditional_table(levels)}
    c, u = table[(6, 12)]
    assert c > u + 0.2, (c, u)
    c, u = table[(1, 2)]
    assert c > 2.0 * u, (c, u)
    c, u = table[(4, 7)]
    assert c > u + 0.15, (c, u)
    c, u = table[(17, 24)]
    assert c > 1.5 * u, (c, u)


def test_events_have_onset_apex_offset_and_last_seconds(sample) -> None:
    _, events = sample
    assert len(events) > 500
    durations = np.array([e.offset - e.onset + 1 for e in events]) / 25.0
    assert 0.5 < float(np.median(durations)) < 5.0
    for e in events[:2000]:
        assert e.onset <= e.apex <= e.offset
        assert 1 <= e.peak <= 5


def test_levels_follow_facs_thresholds() -> None:
    assert levels_from_intensity(np.array([0.0, 0.49, 0.5, 1.49, 1.5, 4.49, 4.5, 5.0])).tolist() == [0, 0, 1, 1, 2, 4, 5, 5]


def test_extract_events_finds_runs_and_apex() -> None:
    levels = np.zeros((10, len(SYNTH_AUS)), np.int8)
    k = SYNTH_AUS.index(12)
    levels[2:6, k] = [1, 3, 2, 1]
    levels[8:10, k] = [2, 2]
    events = extract_events(levels)
    assert [(e.au, e.onset, e.apex, e.offset, e.peak) for e in events] == [(12, 2, 3, 5, 3), (12, 8, 8, 9, 2)]


def test_several_tasks_in_one_recording_shift_the_factors() -> None:
    model = TimelineModel(tuple(TASKS))
    rng = np.random.default_rng(3)
    timeline = model.sample(rng, 800, ["T1", "T3"], np.zeros(6 + len(SYNTH_AUS)))
    factors = timeline.factors
    smile, surprise = 0, 1
    assert factors[:350, smile].mean() > factors[450:, smile].mean()
    assert factors[450:, surprise].mean() > factors[:350, surprise].mean()
    with pytest.raises(ValueError, match="T9"):
        model.sample(rng, 10, "T9", np.zeros(6 + len(SYNTH_AUS)))


def test_micro_clips_are_brief_weak_and_otherwise_neutral() -> None:
    rng = np.random.default_rng(5)
    seen_sides = set()
    for _ in range(200):
        timeline, event = sample_micro_clip(rng, 40)
        active = np.nonzero(timeline.intensity.max(axis=(1, 2)) > 0)[0]
        assert active[0] == event.onset and active[-1] == event.offset
        assert (event.offset - event.onset + 1) / 25.0 < 0.5
        assert event.onset <= event.apex <= event.offset
        assert timeline.intensity.max() <= 2.4 + 1e-6
        assert timeline.levels.max() <= 2
        for au, side in event.aus:
            k = SYNTH_AUS.index(au)
            if side is None:
                assert np.allclose(timeline.intensity[:, k, 0], timeline.intensity[:, k, 1])
            else:
                seen_sides.add(side)
                other = 1 if side == "R" else 0
                assert timeline.intensity[:, k, other].max() == 0
    assert seen_sides == {"L", "R"}
