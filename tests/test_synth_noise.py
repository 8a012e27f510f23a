"""Label noise: the --noise grammar, each noise type at its rate, and a ledger that is exactly the difference."""

from __future__ import annotations

import re

import numpy as np
import pytest

from aucli.errors import UsageError
from aucli.synth.events import TASKS, TimelineModel, extract_events
from aucli.synth.facs import SYNTH_AUS
from aucli.synth.noise import CONFUSION_PAIRS, NOISE_PRESETS, REASONS, UNCODED, NoiseMix, inject_noise


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    model = TimelineModel(tuple(TASKS))
    rng = np.random.default_rng(2)
    effects = model.subject_effects(rng)
    return np.concatenate([model.sample(rng, 500, task, effects).levels for task in list(TASKS) * 4])


def test_parse_presets_overrides_and_canonical_spec() -> None:
    assert NoiseMix.parse(None).clean and NoiseMix.parse("").clean and NoiseMix.parse("none").clean
    assert NoiseMix.parse("realistic") == NOISE_PRESETS["realistic"]
    mix = NoiseMix.parse("light, flip=0.01")
    assert mix.flip == 0.01 and mix.boundary == NOISE_PRESETS["light"].boundary
    assert NoiseMix.parse("boundary=0.1,missed=0.05,confusion=0.05,flip=0.002").to_spec() == "boundary=0.1,missed=0.05,confusion=0.05,flip=0.002"
    assert NoiseMix.parse(NOISE_PRESETS["heavy"].to_spec()) == NOISE_PRESETS["heavy"]
    assert NoiseMix().to_spec() == "none"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flipp=0.1", "unknown noise type 'flipp'; did you mean 'flip'? (types: boundary, missed, confusion, flip, uncoded, noapex)"),
        ("flip=2", "noise rate for 'flip' must be between 0 and 1, got 2.0"),
        ("flip=abc", "noise rate for 'flip' must be a number between 0 and 1, got 'abc'"),
        ("flip=0.1,light", "noise preset 'light' must come first in --noise (like 'realistic,flip=0.01')"),
        ("realistc", "unknown noise preset 'realistc'; did you mean 'realistic'?"),
    ],
)
def test_parse_errors_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        NoiseMix.parse(spec)
    assert str(info.value).startswith(message)


def test_clean_mix_changes_nothing(clean: np.ndarray) -> None:
    result = inject_noise(clean, NoiseMix(), np.random.default_rng(0))
    assert np.array_equal(result.levels, clean) and not result.events and not result.reason.any()


def test_ledger_is_exactly_the_difference(clean: np.ndarray) -> None:
    result = inject_noise(clean, NOISE_PRESETS["heavy"], np.random.default_rng(1))
    changed = result.levels != clean
    assert changed.any()
    assert np.array_equal(changed, result.reason > 0)
    rows = result.changes(clean)
    assert len(rows) == int(changed.sum())
    for frame, col, was, now, reason in rows[:500]:
        assert clean[frame, col] == was and result.levels[frame, col] == now and reason > 0
    assert set(np.unique(result.reason[changed])) <= set(range(1, len(REASONS)))
    again = inject_noise(clean, NOISE_PRESETS["heavy"], np.random.default_rng(1))
    assert np.array_equal(again.levels, result.levels)


def test_missed_events_at_their_rate(clean: np.ndarray) -> None:
    events = extract_events(clean)
    result = inject_noise(clean, NoiseMix(missed=0.2), np.random.default_rng(3))
    missed = [e for e in events if (result.levels[e.onset : e.offset + 1, SYNTH_AUS.index(e.au)] == 0).all()]
    assert len(missed) / len(events) == pytest.approx(0.2, abs=0.04)
    assert len([e for e in result.events if e["type"] == "missed"]) == len(missed)


def test_confusion_only_between_partners(clean: np.ndarray) -> None:
    result = inject_noise(clean, NoiseMix(confusion=0.5), np.random.default_rng(4))
    partners = {a: b for a, b in CONFUSION_PAIRS} | {b: a for a, b in CONFUSION_PAIRS}
    logged = [e for e in result.events if e["type"] == "confusion"]
    assert logged and all(e["au"] in partners and e["detail"] == f"coded as AU{partners[e['au']]}" for e in logged)
    changed_cols = {SYNTH_AUS[c] for c in np.nonzero((result.levels != clean).any(axis=0))[0]}
    assert changed_cols <= set(partners)


@pytest.mark.parametrize("spec, pairs", [("confusion=0.5,pairs=4-12+15-17", ((4, 12), (15, 17))), ("confusion=0.5", CONFUSION_PAIRS)])
def test_confusion_swaps_exactly_the_pairs_the_spec_names(clean: np.ndarray, spec, pairs) -> None:
    mix = NoiseMix.parse(spec)
    assert mix.pairs == pairs and NoiseMix.parse(mix.to_spec()) == mix
    result = inject_noise(clean, mix, np.random.default_rng(4))
    partners = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    logged = [e for e in result.events if e["type"] == "confusion"]
    assert logged and {e["au"] for e in logged} <= set(partners)
    assert all(e["detail"] == f"coded as AU{partners[e['au']]}" for e in logged)
    changed_cols = {SYNTH_AUS[c] for c in np.nonzero((result.levels != clean).any(axis=0))[0]}
    assert changed_cols <= set(partners)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("light,pairs=4", "must be two AUs joined by '-'"),
        ("light,pairs=1-2+2-4", "AU2 appears in more than one pair"),
        ("light,pairs=4-99", "AU99 in pairs=4-99 is not one of the synthetic AUs"),
    ],
)
def test_bad_pairs_get_one_clear_message(spec, message) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        NoiseMix.parse(spec)


def test_boundary_jitter_moves_edges_but_keeps_events(clean: np.ndarray) -> None:
    events = extract_events(clean)
    result = inject_noise(clean, NoiseMix(boundary=1.0), np.random.default_rng(5))
    for e in events:
        k = SYNTH_AUS.index(e.au)
        assert (result.levels[e.onset : e.offset + 1, k] >= 1).any(), "an event vanished"
    added = (result.levels >= 1) & (clean == 0)
    assert set(np.unique(result.levels[added])) <= {1}  # outward shifts add trace-level frames
    shifts = [int(e["detail"].split()[1]) for e in result.events if e["type"] == "boundary"]
    assert shifts and max(abs(s) for s in shifts) <= 13


def test_flips_and_uncoded_at_their_rates(clean: np.ndarray) -> None:
    result = inject_noise(clean, NoiseMix(flip=0.01), np.random.default_rng(6))
    assert (result.levels != clean).mean() == pytest.approx(0.01, abs=0.002)
    result = inject_noise(clean, NoiseMix(uncoded=0.05), np.random.default_rng(7))
    uncoded = (result.levels == UNCODED).all(axis=1)
    assert uncoded.mean() == pytest.approx(0.05, abs=0.025)
    assert (result.levels[~uncoded] == clean[~uncoded]).all()
