"""Per-AU F1 (summed over the set), AUC, thresholds, kappa, events and the report, on hand examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from aucli.audit.compare import compare_label_sets
from aucli.errors import LabelFormatError, UsageError
from aucli.events import event_agreement, find_events
from aucli.metrics import (
    MetricReport,
    agreement_f1,
    auc_scores,
    cohen_kappa,
    confusion_counts,
    evaluate,
    f1_scores,
    fit_thresholds,
    icc_3_1,
    intensity_icc,
)


def column(values) -> np.ndarray:
    return np.asarray(values).reshape(-1, 1)


def test_f1_is_summed_over_the_set_not_averaged_over_batches():
    # Batch 1: TP 1, FN 1 -> F1 2/3. Batch 2: TP 1, FP 2 -> F1 1/2. Mean of batches 7/12.
    # Summed over the set: TP 2, FP 2, FN 1 -> 4/7.
    labels = column([1, 1, 0, 0, 1, 0, 0, 0])
    probs = column([0.9, 0.2, 0.1, 0.3, 0.7, 0.6, 0.5, 0.1])
    batch_f1 = [f1_scores(probs[:4], labels[:4])[0], f1_scores(probs[4:], labels[4:])[0]]
    assert batch_f1 == pytest.approx([2 / 3, 1 / 2])
    assert f1_scores(probs, labels)[0] == pytest.approx(4 / 7)
    assert np.mean(batch_f1) != pytest.approx(4 / 7)
    summed = confusion_counts(probs[:4], labels[:4]) + confusion_counts(probs[4:], labels[4:])
    assert summed.f1[0] == pytest.approx(4 / 7)
    assert (summed.tp[0], summed.fp[0], summed.fn[0], summed.tn[0]) == (2, 2, 1, 3)
    assert summed.precision[0] == pytest.approx(0.5) and summed.recall[0] == pytest.approx(2 / 3)


def test_f1_masks_unknown_labels_and_applies_per_au_thresholds():
    probs = np.array([[0.9, 0.9], [0.6, 0.6], [0.4, 0.4], [0.95, 0.1]])
    labels = np.array([[1, 1], [0, 1], [1, 0], [-1, 9]])
    # AU0 at 0.5: TP 1 (row 0), FP 1 (row 1), FN 1 (row 2); row 3 unknown despite p = 0.95.
    # AU1 at 0.7: TP 1 (row 0), FN 1 (row 1), TN 1 (row 2).
    np.testing.assert_allclose(f1_scores(probs, labels, [0.5, 0.7]), [0.5, 2 / 3])
    # p >= threshold is positive: exactly at the threshold counts.
    assert f1_scores(column([0.5]), column([1]))[0] == 1.0
    # No positive label and no positive prediction: undefined (NaN), skipped by the mean.
    report = evaluate(np.array([[0.9, 0.1], [0.1, 0.2]]), np.array([[1, 0], [0, 0]]), au_names=["AU1", "AU2"])
    assert np.isnan(report.f1[1]) and report.mean_f1 == 1.0
    with pytest.raises(LabelFormatError, match=r"found \[2\]"):
        f1_scores(probs, np.array([[1, 2], [0, 1], [1, 0], [0, 0]]))
    with pytest.raises(UsageError, match=r"probabilities \(4, 2\) and labels \(4, 1\)"):
        f1_scores(probs, labels[:, :1])
    with pytest.raises(UsageError, match="3 thresholds given for 2 AUs"):
        f1_scores(probs, labels, [0.5, 0.5, 0.5])


def test_fit_thresholds_hand_example_and_optimality():
    p = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2]
    y = [1, 0, 1, 1, 0, 0]
    # Top-k cuts give F1 1/2, 2/5, 2/3, 6/7, 3/4, 2/3: best is the top 4, cut between 0.6 and 0.3.
    probs = np.column_stack([p, p, p])
    labels = np.column_stack([y, [0] * 6, [1, 1, 1, 1, -1, 9]])
    thresholds = fit_thresholds(probs, labels, default=0.5)
    assert thresholds[0] == pytest.approx(0.45)
    assert f1_scores(probs[:, :1], labels[:, :1], thresholds[0])[0] == pytest.approx(6 / 7)
    assert thresholds[1] == 0.5 and thresholds[2] == 0.5  # one class only: the default stays
    # On random data no threshold on a fine grid beats the fitted one.
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 4)) < [0.1, 0.3, 0.5, 0.05]).astype(int)
    probs = np.clip(0.3 * labels + rng.random((400, 4)) * 0.8, 0, 1).round(2)  # rounding makes ties
    fitted = f1_scores(probs, labels, fit_thresholds(probs, labels))
    grid = np.stack([f1_scores(probs, labels, t) for t in np.linspace(0, 1, 1001)])
    np.testing.assert_allclose(fitted, np.nanmax(grid, axis=0))


def test_auc_rank_based_with_ties_masking_and_one_class():
    probs = np.array([[0.1, 0.5, 0.3], [0.4, 0.5, 0.6], [0.35, 0.2, 0.9], [0.8, 0.9, 0.1], [0.99, 0.0, 0.5]])
    labels = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, -1], [-1, 9, 9]])
    auc = auc_scores(probs, labels)
    assert auc[0] == pytest.approx(0.75)  # pairs: (.35>.1) (.35<.4) (.8>.1) (.8>.4) -> 3/4
    assert auc[1] == pytest.approx(0.875)  # the tie .5 vs .5 counts half: 3.5/4
    assert np.isnan(auc[2])  # only negatives among the known labels
    flipped = auc_scores(1 - probs, labels)
    assert flipped[0] == pytest.approx(0.25) and flipped[1] == pytest.approx(0.125)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (300, 1))
    s = rng.random((300, 1))
    pairs = (s[y == 1][:, None] > s[y == 0][None, :]).mean()
    assert auc_scores(s, y)[0] == pytest.approx(pairs)


def test_cohen_kappa_hand_example():
    a = [1, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    b = [1, 0, 0, 0, 1, 0, 1, 0, 1, 1]
    # Observed 8/10; both code 5/10 positives -> chance 0.5; kappa (0.8 - 0.5) / 0.5 = 0.6.
    reference = np.column_stack([a, [0] * 10, a])
    other = np.column_stack([b, [0] * 10, b])
    other[:, 2][[1, 6]] = [-1, 9]  # the two disagreements unknown: perfect agreement on the rest
    kappa = cohen_kappa(reference, other)
    assert kappa[0] == pytest.approx(0.6)
    assert np.isnan(kappa[1])  # one and the same class throughout: chance agreement 1
    assert kappa[2] == pytest.approx(1.0)
    np.testing.assert_allclose(agreement_f1(reference, other)[[0, 2]], [0.8, 1.0])


def test_find_events_breaks_at_zeros_unknowns_and_sequences():
    labels = column([1, 1, 0, 1, 1, 1, -1, 1, 1, 1])
    sequences = ["v1"] * 5 + ["v2"] * 5
    starts, stops = find_events(labels, sequences)[0]
    np.testing.assert_array_equal(starts, [0, 3, 5, 7])
    np.testing.assert_array_equal(stops, [2, 5, 6, 10])
    starts, stops = find_events(labels)[0]  # one sequence: rows 3-5 are one run
    np.testing.assert_array_equal(starts, [0, 3, 7])
    np.testing.assert_array_equal(stops, [2, 6, 10])
    with pytest.raises(UsageError, match="grouped by sequence"):
        find_events(labels, ["v1", "v2"] * 5)


def test_event_agreement_overlap_criterion():
    # Reference events rows [2, 12) and [20, 24); other: [4, 14) (IoU 8/12 = 0.67, a match),
    # [20, 21) (IoU 1/4, no match at 0.5), and a stray event [30, 32).
    reference = np.zeros((40, 1), dtype=int)
    other = np.zeros((40, 1), dtype=int)
    reference[2:12] = 1
    reference[20:24] = 1
    other[4:14] = 1
    other[20:21] = 1
    other[30:32] = 1
    result = event_agreement(reference, other, min_iou=0.5)
    assert (result.n_reference[0], result.n_other[0], result.matched[0]) == (2, 3, 1)
    assert result.precision[0] == pytest.approx(1 / 3) and result.recall[0] == pytest.approx(1 / 2)
    assert result.f1[0] == pytest.approx(2 / 5)
    assert event_agreement(reference, other, min_iou=0.2).matched[0] == 2
    # One-to-one: a long event split in two halves matches only one of them.
    long_ref = np.zeros((20, 1), dtype=int)
    long_ref[0:10] = 1
    halves = long_ref.copy()
    halves[5] = 0
    halves[4] = 0  # [0, 4) and [6, 10): IoU 0.4 each
    assert event_agreement(long_ref, halves, min_iou=0.4).matched[0] == 1
    # Rows the other set leaves unknown are unknown in both.
    masked = reference.copy()
    masked[2:12] = -1
    assert event_agreement(reference, masked).n_reference[0] == 1


def test_metric_report_json_roundtrip_and_table():
    probs = np.array([[0.9, 0.2, 0.1], [0.2, 0.6, 0.3], [0.7, 0.4, 0.2], [0.1, 0.9, 0.6]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 9, 0], [0, 1, 0]])  # torch input is accepted
    report = evaluate(torch.tensor(probs), labels, au_names=["AU1", "AU2", "AU4"], thresholds=[0.5, 0.5, 0.5])
    np.testing.assert_allclose(report.f1[:2], [1.0, 1.0])
    assert report.f1[2] == 0.0 and np.isnan(report.auc[2])  # AU4: one FP, no positive label
    np.testing.assert_array_equal(report.n_valid, [4, 3, 4])
    np.testing.assert_allclose(report.rate, [0.5, 2 / 3, 0.0])
    data = json.loads(report.to_json())
    assert data["per_au"]["auc"][2] is None and data["mean_auc"] == pytest.approx(1.0)
    assert data["mean_f1"] == pytest.approx(2 / 3)
    back = MetricReport.from_dict(data)
    np.testing.assert_array_equal(back.n_valid, report.n_valid)
    np.testing.assert_allclose(back.f1, report.f1)
    assert np.isnan(back.auc[2]) and back.au_names == report.au_names
    console = Console(width=120, record=True)
    console.print(report)
    text = console.export_text()
    assert "AU2" in text and "100.0" in text and "66.7" in text and "mean" in text
    assert text.count(" - ") >= 1  # the missing AUC


def test_compare_label_sets_report():
    a = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0]])
    b = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [1, -1]])
    report = compare_label_sets(a, b, au_names=["AU6", "AU12"], sequences=[0, 0, 0, 1, 1, 1], names=("coder1", "coder2"))
    data = report.to_dict()
    # AU6: A [0,2) [4,6), B [0,2) [5,6) (IoU 1/2): both match. AU12: A [2,3) [3,4) in two sequences,
    # B [2,3) (row 3 is 0; row 5 unknown in B, so unknown in both).
    assert data["per_au"]["events_reference"] == [2, 2] and data["per_au"]["events_matched"] == [2, 1]
    assert data["per_au"]["kappa"][0] == pytest.approx((5 / 6 - 0.5) / 0.5)
    assert data["per_au"]["n_both"] == [6, 5]
    console = Console(width=160, record=True)
    console.print(report)
    assert "coder2 with coder1" in console.export_text()


def test_icc_3_1_on_shrout_and_fleiss_table_2():
    """Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; their ANOVA gives BMS = 11.24,
    EMS = 1.02, and they report ICC(3,1) = .71."""
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc_3_1(ratings) == pytest.approx((11.24 - 1.02) / (11.24 + 3 * 1.02), abs=1e-3)
    assert round(icc_3_1(ratings), 2) == 0.71


def test_icc_3_1_two_raters_by_hand_and_edge_cases():
    # Targets (1, 2), (2, 3), (3, 5); grand mean 8/3. Row means 1.5, 2.5, 4: SS rows = 2 * 19/6 = 19/3.
    # Column means 2, 10/3: SS raters = 3 * 8/9 = 8/3. SS total = 84/9 = 28/3, so SS error = 1/3.
    # BMS = (19/3) / 2 = 19/6, EMS = (1/3) / 2 = 1/6: ICC(3,1) = (19/6 - 1/6) / (19/6 + 1/6) = 0.9.
    assert icc_3_1(np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0]])) == pytest.approx(0.9)
    # a rater shifted by a constant is fully consistent: ICC(3,1) ignores the raters' means
    assert icc_3_1(np.array([[1.0, 3.0], [2.0, 4.0], [4.0, 6.0]])) == pytest.approx(1.0)
    assert np.isnan(icc_3_1(np.array([[1.0, 2.0]])))  # one target
    assert np.isnan(icc_3_1(np.ones((4, 2))))  # no variance
    # per AU over the rows where both are finite; the second AU keeps rows (0, 0) and (1, 1) only
    per_au = intensity_icc(np.array([[1.0, 0.0], [2.0, np.nan], [4.0, 1.0]]), np.array([[3.0, 0.0], [4.0, 1.0], [6.0, 1.0]]))
    assert per_au == pytest.approx([1.0, 1.0])
    with pytest.raises(UsageError):
        intensity_icc(np.zeros((3, 2)), np.zeros((3, 1)))
