"""bench/threshold_rules.py: threshold rules re-scored on a run's kept validation and test logits."""

from __future__ import annotations

import numpy as np
import pytest
import threshold_rules
from engine_fixtures import make_toy_store, toy_recipe


def test_the_f1_curve_and_the_lowest_cut_within_a_margin():
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    positive = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    cuts, f1 = threshold_rules.f1_curve(probs, positive)
    assert cuts.tolist() == probs.tolist()
    # cut 0.6: TP 3, predicted 4 -> 2*3 / (4 + 4); cut 0.2: TP 4, predicted 7 -> 8 / 11
    assert f1[3] == pytest.approx(0.75) and f1[6] == pytest.approx(8 / 11) and f1.argmax() == 3

    labels = positive.astype(int)[:, None]
    assert threshold_rules.lowest_cut_within(probs[:, None], labels, 0.0)[0] == 0.6
    assert threshold_rules.lowest_cut_within(probs[:, None], labels, 0.03)[0] == 0.2  # 8/11 = 0.727 >= 0.75 - 0.03
    assert threshold_rules.lowest_cut_within(probs[:, None], labels, 1.0)[0] == 0.1  # every face predicted present
    # the standard error widens the margin when positives are few
    assert threshold_rules.one_standard_error(0.75, 4) == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    assert threshold_rules.lowest_cut_within(probs[:, None], labels, threshold_rules.one_standard_error)[0] == 0.1
    # an AU with no known positive keeps 0.5; unknown labels (-1, 9) are left out
    unknown = np.array([[0], [0], [-1], [9], [0], [0], [0], [0]])
    assert threshold_rules.lowest_cut_within(probs[:, None], unknown, 0.05)[0] == 0.5


def test_a_runs_folds_are_re_scored_and_the_fitted_rule_reproduces_the_trainer(tmp_path, capsys):
    from aucli.engine import train

    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=8)
    recipe = toy_recipe(**{"optim.epochs": 1, "optim.max_steps": 3, "data.batch_size": 4, "train.method": "linear", "train.fold": "all"})
    run = tmp_path / "runs" / "steps3" / "linear" / "seed0"
    result = train(store, recipe, out=run, show_progress=False)

    scored = threshold_rules.score_run(run, None, [0.05])
    assert [r["fold"] for r in scored] == ["fold1", "fold2", "fold3"]
    assert "warning" not in capsys.readouterr().err
    for row, fold in zip(scored, result.folds):
        figures = row["f1"]
        assert set(figures) == {"fitted", "0.5", "present", "within 0.05", "1-SE", "test-optimal"}
        assert figures["fitted"] == pytest.approx(fold.test.mean_f1, nan_ok=True)
        assert figures["test-optimal"] >= max(v for k, v in figures.items() if k != "test-optimal") - 1e-9

    payload = threshold_rules.main([str(run), "--json", str(tmp_path / "rules.json")])
    assert payload["groups"]["steps3/linear"]["folds"] == 3 and (tmp_path / "rules.json").is_file()
    with pytest.raises(SystemExit, match="no fold predictions"):
        threshold_rules.main([str(tmp_path)])
    # a rebuild of the store with other faces misaligns the logits' rows: a plain stop, not misaligned figures
    other = make_toy_store(tmp_path / "other.h5", subjects=6, frames=9)
    with pytest.raises(SystemExit, match="is not the store"):
        threshold_rules.score_run(run, other, [0.05])
