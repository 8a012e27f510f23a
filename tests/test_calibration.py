"""Per-AU calibration: recovers a known distortion on held-out data, falls back honestly, round-trips JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from aucli.calibration import Calibration, calibration_error, fit_calibration, logit, sigmoid
from aucli.errors import ModelError, UsageError
from aucli.metrics import auc_scores


def distorted_world(n: int, seed: int, n_aus: int = 3):
    """Labels drawn from sigmoid(z_true); the model reports 2 z_true + 1.5: overconfident, pushed up."""
    rng = np.random.default_rng(seed)
    z_true = rng.normal(-1.0, 2.0, (n, n_aus))
    labels = (rng.random(z_true.shape) < sigmoid(z_true)).astype(np.int8)
    return 2.0 * z_true + 1.5, labels


def test_platt_recovers_the_distortion_and_calibrates_held_out_data():
    fit_logits, fit_labels = distorted_world(6000, seed=0)
    test_logits, test_labels = distorted_world(6000, seed=1)
    calibration = fit_calibration(fit_logits, fit_labels, au_names=["AU1", "AU2", "AU4"])
    for cal in calibration.per_au:
        assert cal.method == "platt"
        assert cal.slope == pytest.approx(0.5, abs=0.05)
        assert cal.intercept == pytest.approx(-0.75, abs=0.12)
        assert cal.log_loss_calibrated < cal.log_loss_raw
    raw_error = calibration_error(sigmoid(test_logits), test_labels)
    calibrated = calibration.apply(test_logits)
    assert np.all(raw_error > 0.1)
    assert np.all(calibration_error(calibrated, test_labels) < 0.03)
    # Strictly increasing map: rankings (AUC, audit order) are unchanged.
    np.testing.assert_allclose(auc_scores(calibrated, test_labels), auc_scores(test_logits, test_labels))
    np.testing.assert_allclose(calibration.apply_probs(sigmoid(test_logits)), calibrated, atol=1e-9)
    assert calibration.fallbacks == {}


def test_isotonic_is_monotone_bounded_and_calibrates():
    fit_logits, fit_labels = distorted_world(6000, seed=2, n_aus=1)
    test_logits, test_labels = distorted_world(6000, seed=3, n_aus=1)
    calibration = fit_calibration(fit_logits, fit_labels, method="isotonic")
    cal = calibration.per_au[0]
    assert cal.method == "isotonic" and np.all(np.diff(cal.x) >= 0) and np.all(np.diff(cal.y) >= 0)
    grid = np.linspace(-30, 30, 2001).reshape(-1, 1)
    mapped = calibration.apply(grid)[:, 0]
    assert np.all(np.diff(mapped) >= 0) and 0 < mapped.min() and mapped.max() < 1
    assert calibration_error(calibration.apply(test_logits), test_labels)[0] < 0.03


def test_fallbacks_are_identity_and_reported():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (200, 4))
    labels = (rng.random((200, 4)) < sigmoid(logits)).astype(np.int8)
    labels[:, 0] = 0
    labels[:3, 0] = 1  # three positives
    labels[:, 1] = 1  # one class only
    labels[:, 2] = -1  # nothing known
    labels[:, 3] = (logits[:, 3] < 0).astype(np.int8)  # ranked backwards
    calibration = fit_calibration(logits, labels, au_names=["AU1", "AU2", "AU4", "AU6"], min_per_class=5)
    fallbacks = calibration.fallbacks
    assert fallbacks["AU1"] == "too few held-out samples: 3 positive, 197 negative (need 5 of each)"
    assert fallbacks["AU2"] == "too few held-out samples: 200 positive, 0 negative (need 5 of each)"
    assert fallbacks["AU4"] == "too few held-out samples: 0 positive, 0 negative (need 5 of each)"
    assert fallbacks["AU6"].startswith("fitted slope") and "backwards" in fallbacks["AU6"]
    np.testing.assert_allclose(calibration.apply(logits), sigmoid(logits))
    console = Console(width=200, record=True)
    console.print(calibration)
    assert "too few held-out samples" in console.export_text()


def test_unknown_labels_are_ignored():
    logits, labels = distorted_world(2000, seed=5, n_aus=2)
    noisy_logits = np.vstack([logits, np.full((50, 2), 25.0)])
    noisy_labels = np.vstack([labels, np.tile([[-1, 9]], (50, 1))])
    a = fit_calibration(logits, labels)
    b = fit_calibration(noisy_logits, noisy_labels)
    for x, y in zip(a.per_au, b.per_au):
        assert (x.slope, x.intercept) == pytest.approx((y.slope, y.intercept), rel=1e-9)


def test_json_roundtrip_and_errors():
    logits, labels = distorted_world(1500, seed=6, n_aus=2)
    for method in ("platt", "isotonic"):
        calibration = fit_calibration(torch.tensor(logits), torch.tensor(labels), au_names=["AU12", "AU6"], method=method)
        restored = Calibration.from_json(json.dumps(json.loads(calibration.to_json())))
        assert restored.au_names == ["AU12", "AU6"] and restored.method == method
        np.testing.assert_array_equal(restored.apply(logits), calibration.apply(logits))
        swapped = restored.subset(["AU6", "AU12"])
        np.testing.assert_array_equal(swapped.apply(logits[:, ::-1]), calibration.apply(logits)[:, ::-1])
    identity = Calibration.identity(["AU1"])
    np.testing.assert_allclose(identity.apply(np.array([[0.0], [2.0]])), sigmoid(np.array([[0.0], [2.0]])))
    with pytest.raises(ModelError, match="expected format 'aucli.calibration/1', found None"):
        Calibration.from_dict({"per_au": []})
    with pytest.raises(UsageError, match=r"logits must be \(n_frames, 2\)"):
        calibration.apply(logits[:, :1])
    with pytest.raises(UsageError, match="'platt' or 'isotonic'"):
        fit_calibration(logits, labels, method="beta")
    with pytest.raises(UsageError, match="no calibration for"):
        calibration.subset(["AU1"])
    assert logit(np.array([0.0, 1.0])).tolist() == pytest.approx([-16.118, 16.118], abs=1e-3)
