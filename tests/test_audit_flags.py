"""Flag rules and scores on hand-built probabilities and labels (no store, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from aucli.audit.flags import ScoringConfig, contradiction, score_labels
from aucli.audit.rank import average_precision, precision_at_k, recall_at_k
from aucli.audit.temporal import expand_runs, segment_ids, sequence_order
from aucli.audit.thresholds import derive_thresholds
from aucli.errors import UsageError
from aucli.losses import gradient_peak


def one_sequence(n: int) -> np.ndarray:
    return segment_ids(np.zeros(n), np.zeros(n), np.arange(n))


def flags_of(probs, labels, thresholds=None, **config):
    probs, labels = np.asarray(probs, float), np.asarray(labels, np.int8)
    if probs.ndim == 1:
        probs, labels = probs[:, None], labels[:, None]
    thresholds = thresholds or derive_thresholds([f"AU{k + 1}" for k in range(probs.shape[1])], gammas=1.0)
    scores = score_labels(probs, labels, one_sequence(probs.shape[0]), thresholds, ScoringConfig(**config))
    return scores, scores.flag_table()


def test_thresholds_come_from_the_gradient_peak() -> None:
    th = derive_thresholds(["AU1", "AU2", "AU12"], gammas={"AU1": 0.75, "AU2": 1.0, "AU12": 1.25}, margin=0.05)
    for i, gamma in enumerate((0.75, 1.0, 1.25)):
        p_star = gradient_peak(gamma, 0.05)[0]
        assert th.p_star[i] == pytest.approx(p_star) and th.missed[i] == pytest.approx(p_star)
        assert th.spurious[i] == pytest.approx(1 - p_star)
    assert th.missed[1] == pytest.approx(0.844, abs=1e-3)
    assert 0.836 < th.missed[0] < th.missed[1] < th.missed[2] < 0.852  # p* moves little with gamma (DESIGN.md 3)
    # tiers by occurrence rate when the recipe names no gamma: the rarest third gets 0.75
    tiers = derive_thresholds(["AU1", "AU2", "AU12"], rates=[0.5, 0.1, 0.3])
    assert tiers.gammas.tolist() == [1.25, 0.75, 1.0]
    wider = derive_thresholds(["AU1"], gammas=1.0, margin=0.1)
    assert wider.missed[0] == pytest.approx(0.816, abs=1e-3)
    tuned = derive_thresholds(["AU1", "AU12"], gammas=1.0, missed="AU12=0.95", spurious=0.1)
    assert tuned.missed.tolist() == [pytest.approx(0.8442, abs=1e-4), 0.95] and tuned.spurious.tolist() == [0.1, 0.1]
    assert tuned.overridden == {"AU12": ["missed", "spurious"], "AU1": ["spurious"]}
    with pytest.raises(UsageError, match="strictly between 0 and 1"):
        derive_thresholds(["AU1"], missed="1.5")
    with pytest.raises(UsageError, match="below the missed threshold"):
        derive_thresholds(["AU1"], missed=0.3, spurious=0.4)


def test_negative_in_the_truncated_region_is_a_missed_flag() -> None:
    p_star = gradient_peak(1.0, 0.05)[0]
    labels = np.zeros(30, np.int8)
    probs = np.full(30, 0.05)
    probs[10] = p_star + 0.01  # past p*: flagged
    probs[20] = p_star - 0.05  # before the peak: the loss still pushes it down, not flagged
    _, flags = flags_of(probs, labels)
    assert len(flags) == 1
    assert (flags.start[0], flags.stop[0], flags.kind[0], flags.label[0]) == (10, 11, "missed", 0)
    assert flags.context[0] == "event"


def test_positive_with_low_probability_is_a_spurious_flag() -> None:
    labels = np.ones(30, np.int8)
    probs = np.full(30, 0.95)
    probs[12] = 0.05  # below 1 - p*: flagged
    probs[22] = 0.3  # low but above the spurious threshold
    _, flags = flags_of(probs, labels)
    assert len(flags) == 1 and flags.kind[0] == "spurious" and flags.start[0] == 12
    assert flags.context[0] == "dip"  # the event around it is one the model agrees with


def test_a_contradicted_event_is_one_flag_spanning_it() -> None:
    labels = np.zeros(40, np.int8)
    labels[10:22] = 1  # a labelled event of 12 frames
    probs = np.full(40, 0.03)
    probs[10:22] = [0.1, 0.05, 0.02, 0.3, 0.02, 0.01, 0.4, 0.02, 0.03, 0.05, 0.2, 0.1]  # some above the threshold
    scores, flags = flags_of(probs, labels)
    assert len(flags) == 1
    assert (flags.start[0], flags.stop[0]) == (10, 22)  # all 12 frames, not one flag per frame
    assert flags.context[0] == "isolated" and flags.mean_p[0] == pytest.approx(probs[10:22].mean())
    assert np.all(scores.frame_scores[10:22, 0] == pytest.approx(flags.score[0]))
    # without temporal evidence: one flag per frame past the threshold, scored by its own probability
    _, frame_flags = flags_of(probs, labels, temporal=False)
    assert sorted(frame_flags.start.tolist()) == [10, 11, 12, 14, 15, 17, 18, 19, 21]  # p <= 1 - p* = 0.156
    assert set(frame_flags.context) == {"frame"}


def test_missed_event_inside_absence_and_hole_inside_an_event() -> None:
    labels = np.zeros(60, np.int8)
    labels[30:50] = 1
    labels[39:41] = 0  # a 2-frame hole inside a labelled event
    probs = np.full(60, 0.04)
    probs[5:15] = 0.92  # an event nobody labelled
    probs[30:50] = 0.96
    _, flags = flags_of(probs, labels)
    by_start = {int(s): i for i, s in enumerate(flags.start)}
    assert set(by_start) == {5, 39}
    assert flags.context[by_start[5]] == "event" and flags.stop[by_start[5]] == 15
    assert flags.context[by_start[39]] == "isolated" and flags.kind[by_start[39]] == "missed"
    assert "between frames labelled present" in flags.reasons(["AU1"])[by_start[39]]


def test_isolated_runs_score_higher_than_runs_in_consistent_context() -> None:
    n = 80
    probs = np.full((n, 2), 0.04)
    labels = np.zeros((n, 2), np.int8)
    run = slice(30, 33)
    # AU1: three frames labelled present in a long absent stretch; the model sees nothing anywhere
    labels[run, 0] = 1
    # AU2: the same three frames with the same probabilities, inside a long labelled event the model agrees with
    labels[10:60, 1] = 1
    probs[10:60, 1] = 0.95
    probs[run, 1] = probs[run, 0]
    _, flags = flags_of(probs, labels)
    assert len(flags) == 2
    isolated, embedded = (int(np.flatnonzero(flags.au == k)[0]) for k in (0, 1))
    assert flags.context[isolated] == "isolated" and flags.context[embedded] == "dip"
    assert flags.evidence[isolated] == pytest.approx(flags.evidence[embedded])  # same frame evidence...
    assert flags.score[isolated] > flags.score[embedded] + 0.05  # ...but the island is the stronger case
    assert flags.au[0] == 0  # ranked first
    # the neighbour evidence weakens a flag when the model also contradicts the labels around it
    noisy_context = probs.copy()
    noisy_context[24:30, 0] = noisy_context[33:39, 0] = 0.45
    _, weaker = flags_of(noisy_context, labels)
    assert weaker.score[weaker.au == 0][0] < flags.score[isolated]


def test_boundary_flags_name_their_side() -> None:
    labels = np.zeros(50, np.int8)
    labels[20:35] = 1
    probs = np.full(50, 0.03)
    probs[17:35] = 0.95  # the model's event starts 3 frames before the labelled onset
    probs[32:35] = 0.04  # and ends 3 frames before the labelled offset
    _, flags = flags_of(probs, labels)
    sides = {(flags.kind[i], flags.side[i]): (int(flags.start[i]), int(flags.stop[i])) for i in range(len(flags))}
    assert sides == {("missed", "onset"): (17, 20), ("spurious", "offset"): (32, 35)}
    assert set(flags.context) == {"boundary"}


def test_unknown_labels_and_gaps_split_runs() -> None:
    labels = np.zeros(20, np.int8)
    labels[8] = -1
    probs = np.full(20, 0.95)
    scores, flags = flags_of(probs, labels)
    assert sorted(zip(flags.start.tolist(), flags.stop.tolist())) == [(0, 8), (9, 20)]
    assert np.isnan(scores.frame_scores[8, 0])
    # a frame gap starts a new segment: frames 0-9 then 20-29 of one video
    frames = np.r_[np.arange(10), np.arange(20, 30)]
    segments = segment_ids(np.zeros(20), np.zeros(20), frames)
    assert segments.tolist() == [0] * 10 + [1] * 10
    every_fifth = segment_ids(np.zeros(6), np.zeros(6), np.array([0, 5, 10, 15, 25, 30]), max_gap=1.5)
    assert every_fifth.tolist() == [0, 0, 0, 0, 1, 1]  # steps of 5 are the usual step; 10 is a gap
    th = derive_thresholds(["AU1"], gammas=1.0)
    split = score_labels(probs[:, None], np.zeros((20, 1), np.int8), segments, th).flag_table()
    assert sorted(zip(split.start.tolist(), split.stop.tolist())) == [(0, 10), (10, 20)]


def test_sequence_order_and_checks() -> None:
    source, track, frame = np.array([1, 0, 0, 1, 0]), np.array([0, 0, 1, 0, 0]), np.array([3, 2, 0, 1, 1])
    order = sequence_order(source, track, frame)
    assert list(zip(source[order], track[order], frame[order])) == [(0, 0, 1), (0, 0, 2), (0, 1, 0), (1, 0, 1), (1, 0, 3)]
    with pytest.raises(UsageError, match="sequence order"):
        segment_ids(source, track, frame)
    th = derive_thresholds(["AU1", "AU2"], gammas=1.0)
    with pytest.raises(UsageError, match="3 columns but the thresholds cover 2 AUs"):
        score_labels(np.zeros((4, 3)), np.zeros((4, 3), np.int8), np.zeros(4), th)
    with pytest.raises(UsageError, match="labels must be -1"):
        score_labels(np.zeros((4, 2)), np.full((4, 2), 2, np.int8), np.zeros(4), th)
    assert expand_runs(np.array([2, 7]), np.array([4, 8])).tolist() == [2, 3, 7]
    q = contradiction(np.array([[0.9, 0.2, 0.5]]), np.array([[0, 1, -1]]))
    assert q[0, :2].tolist() == pytest.approx([0.9, 0.8]) and np.isnan(q[0, 2])


def test_ranking_measures() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, np.nan])
    truth = np.array([1, 0, 1, 0, 1], bool)
    assert precision_at_k(scores, truth, 2) == 0.5
    assert recall_at_k(scores, truth, 3) == pytest.approx(2 / 3)
    # hits at ranks 1, 3 and (unscored, last) 5: AP = (1/1 + 2/3 + 3/5) / 3
    assert average_precision(scores, truth) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_a_one_frame_model_blip_scores_below_a_sustained_unlabelled_event() -> None:
    labels = np.zeros((60, 2), np.int8)
    probs = np.full((60, 2), 0.04)
    probs[30, 0] = 0.95  # one frame
    probs[26:34, 1] = 0.95  # eight frames, same evidence per frame
    _, flags = flags_of(probs, labels)
    blip, sustained = (int(np.flatnonzero(flags.au == k)[0]) for k in (0, 1))
    assert flags.context[blip] == flags.context[sustained] == "event"
    assert flags.evidence[blip] == pytest.approx(flags.evidence[sustained])
    assert flags.score[sustained] > flags.score[blip] + 0.02
    # the prior is a setting: without it both score the same
    _, flat = flags_of(probs, labels, duration=0.0)
    assert flat.score[0] == pytest.approx(flat.score[1])
    with pytest.raises(UsageError, match="unknown context"):
        ScoringConfig(bonus_missed={"dip": 1.0})


def swap_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """AU1 coded as AU2 on frames 20-29 (AU1/AU2 swapped), and the same two disagreements alone on AU4 and AU12."""
    names = ["AU1", "AU2", "AU4", "AU12"]
    labels = np.zeros((80, 4), np.int8)
    probs = np.full((80, 4), 0.04)
    event = slice(20, 30)
    labels[event, 1] = 1  # AU2 labelled where the model sees AU1...
    probs[event, 0] = 0.9  # ...and AU1 left out
    probs[event, 2] = 0.9  # AU4: the same missed event, with no partner
    labels[event, 3] = 1  # AU12: the same spurious event, with no partner
    return probs, labels, names


def test_a_label_swap_ranks_above_a_lone_disagreement_of_the_same_size() -> None:
    probs, labels, names = swap_table()
    th = derive_thresholds(names, gammas=1.0)
    scores = score_labels(probs, labels, one_sequence(80), th)
    flags = scores.flag_table()
    assert scores.pairs == [("AU1", "AU2")]
    assert len(flags) == 4 and set(zip(flags.start.tolist(), flags.stop.tolist())) == {(20, 30)}  # one flag per AU over the event
    by_au = {names[int(k)]: i for i, k in enumerate(flags.au)}
    assert [names[int(k)] for k in flags.au[:2]] in (["AU1", "AU2"], ["AU2", "AU1"])  # the swap ranks first
    for swapped, alone, kind in (("AU1", "AU4", "missed"), ("AU2", "AU12", "spurious")):
        i, j = by_au[swapped], by_au[alone]
        assert flags.kind[i] == flags.kind[j] == kind and flags.context[i] == flags.context[j]
        assert flags.evidence[i] == pytest.approx(flags.evidence[j])  # the same disagreement on its own AU...
        assert flags.score[i] > flags.score[j]  # ...but the partner's disagreement adds to it: its evidence, in log-odds
        assert flags.swap_frames[i] == 10 and flags.confusion[i] > 1.0
        logit = np.log(flags.score / (1 - flags.score))
        assert logit[i] - logit[j] == pytest.approx(flags.confusion[i])
        assert flags.partner[j] == -1 and flags.swap_frames[j] == 0 and flags.confusion[j] == 0
    assert names[flags.partner[by_au["AU1"]]] == "AU2" and names[flags.partner[by_au["AU2"]]] == "AU1"
    reasons = flags.reasons(names)
    assert reasons[by_au["AU1"]].endswith("; confusion with AU2: AU2 is labelled present on these frames and the model sees no AU2 "
                                          "(labels of AU1 and AU2 swapped?)")
    assert "confusion with AU1: AU1 is labelled absent on these frames and the model sees AU1" in reasons[by_au["AU2"]]
    assert "confusion" not in reasons[by_au["AU4"]]
    # frame by frame too: each swapped frame outranks the lone one
    frame_scores = score_labels(probs, labels, one_sequence(80), th, ScoringConfig(temporal=False)).frame_scores
    assert np.all(frame_scores[20:30, 0] > frame_scores[20:30, 2]) and np.all(frame_scores[20:30, 1] > frame_scores[20:30, 3])
    # without confusion evidence the swap is two lone disagreements
    off = score_labels(probs, labels, one_sequence(80), th, ScoringConfig(confusion_pairs=[])).flag_table()
    assert off.score[off.au == 0][0] == pytest.approx(off.score[off.au == 2][0])
    assert off.score[off.au == 1][0] == pytest.approx(off.score[off.au == 3][0])


def test_a_swap_flags_labels_that_neither_disagreement_flags_alone() -> None:
    probs, labels, names = swap_table()
    probs[20:30, 0] = probs[20:30, 2] = 0.72  # AU1 and AU4 labelled absent: p below the missed threshold p* = 0.844
    probs[20:30, 1] = probs[20:30, 3] = 0.28  # AU2 and AU12 labelled present: p above the spurious threshold 1 - p* = 0.156
    th = derive_thresholds(names, gammas=1.0)
    flags = score_labels(probs, labels, one_sequence(80), th).flag_table()
    assert sorted(names[int(k)] for k in flags.au) == ["AU1", "AU2"]  # together past the threshold, alone not
    assert sorted(flags.kind.tolist()) == ["missed", "spurious"] and set(flags.swap_frames.tolist()) == {10}
    alone = score_labels(probs, labels, one_sequence(80), th, ScoringConfig(confusion_pairs=[])).flag_table()
    assert len(alone) == 0


def test_no_change_without_a_confusion_pair_or_a_swap() -> None:
    rng = np.random.default_rng(3)
    n = 400
    probs = rng.beta(0.5, 0.5, (n, 3))
    labels = (rng.random((n, 3)) < 0.3).astype(np.int8)
    labels[rng.random((n, 3)) < 0.05] = -1
    segments = segment_ids(np.repeat([0, 1], n // 2), np.zeros(n), np.r_[np.arange(n // 2), np.arange(n // 2)])

    def same(a, b) -> None:
        assert np.array_equal(a.frame_scores, b.frame_scores, equal_nan=True) and np.array_equal(a.flags, b.flags)
        for name in a.candidates.__dataclass_fields__:
            x, y = getattr(a.candidates, name), getattr(b.candidates, name)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name

    for temporal in (True, False):
        # no pair among the audited AUs: the defaults lend nothing
        th = derive_thresholds(["AU4", "AU12", "AU17"], gammas=1.0)
        default = score_labels(probs, labels, segments, th, ScoringConfig(temporal=temporal))
        assert default.pairs == [] and np.all(default.candidates.partner == -1)
        same(default, score_labels(probs, labels, segments, th, ScoringConfig(temporal=temporal, confusion_pairs=[])))
        # a pair whose labels never disagree: no swap, nothing changes
        th = derive_thresholds(["AU1", "AU2", "AU4"], gammas=1.0)
        agreeing = labels.copy()
        agreeing[:, 1] = agreeing[:, 0]
        default = score_labels(probs, agreeing, segments, th, ScoringConfig(temporal=temporal))
        assert default.pairs == [("AU1", "AU2")]
        same(default, score_labels(probs, agreeing, segments, th, ScoringConfig(temporal=temporal, confusion_pairs=[])))
        # an AU the model cannot judge lends no evidence to its partner
        swapped = score_labels(probs, labels, segments, th, ScoringConfig(temporal=temporal))
        assert np.any(swapped.candidates.partner >= 0)
        skipped = score_labels(probs, labels, segments, th, ScoringConfig(temporal=temporal), skip=["AU2"])
        assert skipped.pairs == []
        same(skipped, score_labels(probs, labels, segments, th, ScoringConfig(temporal=temporal, confusion_pairs=[])))


def test_confusion_pairs_settings() -> None:
    from aucli.audit.flags import DEFAULT_CONFUSION_PAIRS, parse_confusion_pairs
    from aucli.synth.noise import CONFUSION_PAIRS

    assert DEFAULT_CONFUSION_PAIRS == tuple((f"AU{a}", f"AU{b}") for a, b in CONFUSION_PAIRS)  # the pairs coders (and the synth noise) confuse
    assert parse_confusion_pairs("AU1/AU2, au06/7,AU2/AU1") == (("AU1", "AU2"), ("AU6", "AU7"))
    assert parse_confusion_pairs("none") == () and parse_confusion_pairs([["AU4", "AU7"]]) == (("AU4", "AU7"),)
    assert ScoringConfig(confusion_pairs="AU23/AU24").to_dict()["confusion_pairs"] == [["AU23", "AU24"]]
    with pytest.raises(UsageError, match=r"joined by '/' \(AU1/AU2\); found 'AU1-AU2'"):
        parse_confusion_pairs("AU1-AU2")
    with pytest.raises(UsageError, match="two different AUs; found AU1/AU1"):
        parse_confusion_pairs("AU1/AU01")
    with pytest.raises(UsageError, match="confusion_weight must be > 0"):
        ScoringConfig(confusion_weight=0)
    probs, labels, names = swap_table()
    th = derive_thresholds(names, gammas=1.0)
    with pytest.raises(UsageError, match=r"confusion pair AU6/AU7: AU6, AU7 not among the audited AUs \(AU1, AU2, AU4, AU12\)"):
        score_labels(probs, labels, one_sequence(80), th, ScoringConfig(confusion_pairs="AU6/AU7"))
    # an explicit pair replaces the defaults
    flags = score_labels(probs, labels, one_sequence(80), th, ScoringConfig(confusion_pairs="AU4/AU12")).flag_table()
    assert {names[int(k)]: int(p) for k, p in zip(flags.au, flags.partner)} == {"AU1": -1, "AU2": -1, "AU4": 3, "AU12": 2}
