"""MDWA, weighted dice and the total loss: formulas, gradients, masking, weights and gammas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aucli.errors import LabelFormatError, UnknownAUError, UsageError
from aucli.losses import (
    AUFormerLoss,
    MDWALoss,
    WeightedDiceLoss,
    difficulty_gammas,
    gradient_peak,
    negative_sample_gradient,
    occurrence_rates,
    occurrence_weights,
    resolve_gammas,
)

torch.set_num_threads(1)

BP4D_RATES = np.array([.21, .17, .20, .46, .55, .59, .56, .47, .17, .34, .17, .15])


def logit(p) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p) - torch.log1p(-p)


def autograd_negative_gradient(p: np.ndarray, gamma: float, margin: float) -> np.ndarray:
    """dl/dz for y = 0 through MDWALoss itself: one AU, weight 1, batch of len(p) negatives."""
    z = logit(p).reshape(-1, 1).requires_grad_(True)
    loss_fn = MDWALoss([1.0], [gamma], margin=margin)
    loss = loss_fn(z, torch.zeros_like(z, dtype=torch.long))
    (loss * len(p)).backward()  # the loss is a mean over the batch: undo it
    return z.grad.reshape(-1).numpy()


# ------------------------------------------------------------------ gradients


def test_gradcheck_mdwa_and_dice_float64():
    torch.manual_seed(0)
    labels = torch.tensor([[1, 0, -1, 0], [0, 1, 9, 1], [0, 0, 1, -1], [1, 0, 0, 0], [0, 9, 1, 1]])
    weights = occurrence_weights([.3, .2, .5, .4])
    for gammas, margin in [([0.75, 1.0, 1.25, 2.0], 0.05), ([1.0] * 4, 0.0), ([0.5, 1.5, 4.0, 1.0], 0.2)]:
        mdwa = MDWALoss(weights, gammas, margin=margin).double()
        logits = (torch.randn(5, 4, dtype=torch.float64) * 2).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda z: mdwa(z, labels), (logits,))
        expert = (torch.randn(5, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda z: mdwa(z, labels), (expert,))
    dice = WeightedDiceLoss(weights).double()
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: dice(z, labels), (logits,))


def test_negative_gradient_shape_gamma1_margin005_through_autograd():
    p = np.linspace(0.001, 0.999, 9981)
    grad = autograd_negative_gradient(p, gamma=1.0, margin=0.05)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[p < 0.0499] == 0.0)
    assert np.all(np.abs(grad[p <= 0.05]) < 1e-12)  # p = m itself: zero up to the logit's rounding
    assert np.all(grad[p > 0.051] > 0)
    k = int(np.argmax(grad))
    assert abs(p[k] - 0.844) <= 0.01
    assert abs(grad[k] - 0.715) <= 0.01
    assert autograd_negative_gradient(np.array([0.99]), 1.0, 0.05)[0] < 0.2
    # It falls monotonically past the peak: the "discard likely mislabeled negatives" region.
    assert np.all(np.diff(grad[k:]) < 0)


@pytest.mark.parametrize("gamma", [0.75, 1.0, 1.25, 2.0, 4.0])
@pytest.mark.parametrize("margin", [0.0, 0.05, 0.1])
def test_closed_form_gradient_matches_autograd(gamma, margin):
    p = np.concatenate([np.linspace(0.01, 0.99, 99), [0.999, 0.9999]])
    np.testing.assert_allclose(autograd_negative_gradient(p, gamma, margin),
                               negative_sample_gradient(p, gamma, margin), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(("gamma", "margin", "p_star", "value"), [
    (1.0, 0.05, 0.844, 0.715), (2.0, 0.05, 0.868, 0.741), (4.0, 0.05, 0.900, 0.733),
    (1.0, 0.1, 0.816, 0.568), (1.0, 0.2, 0.795, 0.387)])
def test_gradient_peak_values(gamma, margin, p_star, value):
    found_p, found_value = gradient_peak(gamma, margin)
    assert found_p == pytest.approx(p_star, abs=1.5e-3)
    assert found_value == pytest.approx(value, abs=1.5e-3)
    dense = np.linspace(margin + 1e-6, 1 - 1e-6, 200001)
    assert found_value >= negative_sample_gradient(dense, gamma, margin).max() - 1e-9


def test_below_margin_zero_loss_zero_gradient_no_nan_even_for_small_gamma():
    # p <= m: p_m = 0, and p_m**(gamma-1) is infinite for gamma < 1; nothing may leak.
    z = logit([1e-6, 0.01, 0.03, 0.05 - 1e-9]).reshape(-1, 1).float().requires_grad_(True)
    loss_fn = MDWALoss([1.0], [0.5], margin=0.05)
    loss = loss_fn(z, torch.zeros(4, 1, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))
    # Extreme logits stay finite in both directions.
    z = torch.tensor([[-80.0], [80.0], [0.0]], requires_grad=True)
    for y in (0, 1):
        z.grad = None
        loss = loss_fn(z, torch.full((3, 1), y))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


# ------------------------------------------------------------------ formula values


def test_mdwa_value_matches_hand_computation():
    # Two AUs, weights (1.5, 0.5), gammas (1, 2), m = 0.05; AU0 has a masked sample.
    p = torch.tensor([[0.9, 0.3], [0.2, 0.04], [0.6, 0.8]], dtype=torch.float64)
    labels = torch.tensor([[1, 0], [0, 0], [-1, 1]])
    loss_fn = MDWALoss([1.5, 0.5], [1.0, 2.0], margin=0.05).double()
    au0 = (-math.log(0.9) - 0.15 * math.log(1 - 0.15)) / 2          # samples 0 and 1
    au1 = (-(0.25**2) * math.log(0.75) + 0.0 - math.log(0.8)) / 3   # p=0.04 <= m gives 0
    expected = (1.5 * au0 + 0.5 * au1) / 2
    assert loss_fn(logit(p), labels).item() == pytest.approx(expected, rel=1e-12)


def test_positives_keep_the_plain_log_term():
    p = torch.tensor([0.01, 0.05, 0.3, 0.9, 0.999], dtype=torch.float64)
    for gamma, margin in [(0.75, 0.05), (4.0, 0.2), (1.0, 0.0)]:
        loss_fn = MDWALoss([1.0], [gamma], margin=margin).double()
        per_sample = loss_fn.elementwise(logit(p).reshape(-1, 1), torch.ones(5, 1)).reshape(-1)
        torch.testing.assert_close(per_sample, -torch.log(p), rtol=1e-12, atol=0)


def test_dice_matches_hand_computation_and_masks():
    p = torch.tensor([[0.8, 0.5], [0.4, 0.9], [0.7, 0.1]], dtype=torch.float64)
    labels = torch.tensor([[1, 0], [0, 9], [1, 1]])
    dice = WeightedDiceLoss([2.0, 1.0]).double()
    d0 = 1 - (2 * (0.8 + 0.7) + 1) / (0.64 + 0.16 + 0.49 + 2 + 1)
    d1 = 1 - (2 * 0.1 + 1) / (0.25 + 0.01 + 1 + 1)  # sample 1 masked
    assert dice(logit(p), labels).item() == pytest.approx((2.0 * d0 + 1.0 * d1) / 2, rel=1e-12)


def test_masked_labels_change_neither_loss_nor_gradient():
    torch.manual_seed(1)
    logits = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1]])
    loss_fn = AUFormerLoss([1.2, 0.8, 1.0], [0.75, 1.0, 1.25], margin=0.05, expert_weight=0.5).double()
    expert = torch.randn(6, 2, 3, dtype=torch.float64)

    def run(lab, z, e):
        z = z.clone().requires_grad_(True)
        e = e.clone().requires_grad_(True)
        loss_fn(z, lab, e).total.backward()
        return loss_fn(z, lab, e).total.item(), z.grad, e.grad

    masked_minus, masked_nine = labels.clone(), labels.clone()
    masked_minus[2, 1] = -1
    masked_nine[2, 1] = 9
    loss_a, grad_a, egrad_a = run(masked_minus, logits, expert)
    loss_b, grad_b, egrad_b = run(masked_nine, logits, expert)
    assert loss_a == loss_b and torch.equal(grad_a, grad_b) and torch.equal(egrad_a, egrad_b)
    assert grad_a[2, 1] == 0 and torch.all(egrad_a[2, :, 1] == 0)
    # Moving the masked sample's logits changes nothing.
    moved, emoved = logits.clone(), expert.clone()
    moved[2, 1] += 5.0
    emoved[2, :, 1] -= 3.0
    loss_c, grad_c, egrad_c = run(masked_minus, moved, emoved)
    assert loss_c == pytest.approx(loss_a, rel=1e-14)
    torch.testing.assert_close(grad_c, grad_a, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(egrad_c, egrad_a, rtol=1e-12, atol=1e-15)
    # The masked sample is simply absent: per-AU means are over the valid samples only.
    per_au = loss_fn.mdwa.per_au(logits, masked_minus)
    without = loss_fn.mdwa.per_au(logits[[0, 1, 3, 4, 5]], labels[[0, 1, 3, 4, 5]])
    assert per_au[1].item() == pytest.approx(without[1].item(), rel=1e-12)


def test_au_without_valid_sample_contributes_zero():
    logits = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1, -1], [0, 9], [0, -1], [1, -1]])
    loss_fn = AUFormerLoss([1.0, 1.0], 1.0).double()
    parts = loss_fn(logits, labels)
    parts.total.backward()
    assert torch.isfinite(parts.total)
    assert torch.equal(logits.grad[:, 1], torch.zeros(4, dtype=torch.float64))
    only_au0 = AUFormerLoss([1.0], 1.0).double()(logits[:, :1], labels[:, :1])
    assert parts.mdwa.item() == pytest.approx(only_au0.mdwa.item() / 2, rel=1e-12)


def test_total_with_lambda_and_expert_blocks():
    torch.manual_seed(2)
    weights, gammas = occurrence_weights(BP4D_RATES), difficulty_gammas(BP4D_RATES)
    logits = torch.randn(8, 12)
    expert = torch.randn(8, 3, 12)
    labels = torch.randint(0, 2, (8, 12))
    loss_fn = AUFormerLoss(weights, gammas, margin=0.05, expert_weight=0.3)
    mdwa, dice = MDWALoss(weights, gammas), WeightedDiceLoss(weights)
    parts = loss_fn(logits, labels, expert)
    blocks = torch.stack([mdwa(expert[:, s], labels) for s in range(3)]).mean()
    torch.testing.assert_close(parts.mdwa, mdwa(logits, labels))
    torch.testing.assert_close(parts.dice, dice(logits, labels))
    torch.testing.assert_close(parts.expert, blocks)
    torch.testing.assert_close(parts.total, parts.mdwa + parts.dice + 0.3 * blocks)
    no_dice = AUFormerLoss(weights, gammas, dice=False)(logits, labels)
    assert no_dice.dice.item() == 0.0 and no_dice.expert.item() == 0.0
    torch.testing.assert_close(no_dice.total, parts.mdwa)
    assert set(parts.detach()) == {"loss", "mdwa", "dice", "expert_mdwa"}
    with pytest.raises(UsageError, match="expert logits must be"):
        loss_fn(logits, labels, expert[:, 0])


def test_bf16_logits_give_float32_loss():
    logits = torch.randn(4, 12).to(torch.bfloat16).requires_grad_(True)
    parts = AUFormerLoss.from_rates(BP4D_RATES)(logits, torch.randint(0, 2, (4, 12)))
    assert parts.total.dtype == torch.float32 and torch.isfinite(parts.total)
    parts.total.backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()


# ------------------------------------------------------------------ rates, weights, gammas


def test_occurrence_rates_mask_unknown_and_reject_other_values():
    labels = np.array([[1, 0, -1], [0, 9, -1], [1, 1, -1], [-1, 0, -1]], dtype=np.int8)
    rates = occurrence_rates(labels)
    np.testing.assert_allclose(rates[:2], [2 / 3, 1 / 3])
    assert np.isnan(rates[2])
    np.testing.assert_allclose(occurrence_rates(torch.as_tensor(labels))[:2], rates[:2])
    with pytest.raises(LabelFormatError, match=r"found \[2, 3\]"):
        occurrence_rates(np.array([[0, 2], [3, 1]]))


def test_occurrence_weights_closed_form_floor_and_unknown():
    weights = occurrence_weights(BP4D_RATES)
    inverse = 1 / BP4D_RATES
    np.testing.assert_allclose(weights, 12 * inverse / inverse.sum(), rtol=1e-12)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[BP4D_RATES.argmin()] == weights.max()
    # An AU absent from a training subset (rate 0) is floored, not infinite.
    floored = occurrence_weights([0.0, 0.5, 0.25], floor=0.01)
    np.testing.assert_allclose(floored, 3 * np.array([100, 2, 4]) / 106)
    # No valid label at all: weight 0, the others normalised among themselves.
    np.testing.assert_allclose(occurrence_weights([np.nan, 0.5, 0.25]), [0, 2 * 2 / 6, 2 * 4 / 6])
    with pytest.raises(UsageError, match="rate floor"):
        occurrence_weights(BP4D_RATES, floor=0)


def test_difficulty_gamma_tiers():
    gammas = difficulty_gammas(BP4D_RATES)
    # Rarest four (AU24 .15, AU2 .17, AU15 .17, AU23 .17) get 0.75, commonest four 1.25.
    np.testing.assert_array_equal(np.flatnonzero(gammas == 0.75), [1, 8, 10, 11])
    np.testing.assert_array_equal(np.flatnonzero(gammas == 1.25), [4, 5, 6, 7])
    assert (gammas == 1.0).sum() == 4
    eight = difficulty_gammas(np.arange(8) / 10)
    np.testing.assert_array_equal(eight, [0.75] * 3 + [1.0] * 2 + [1.25] * 3)
    assert difficulty_gammas([0.3]).tolist() == [1.0]
    assert difficulty_gammas([0.4, 0.1], tiers=(0.5, 1.0, 2.0)).tolist() == [2.0, 0.5]
    # Explicit gammas override the tiers; one value applies to all AUs.
    assert resolve_gammas(BP4D_RATES, 2.0).tolist() == [2.0] * 12
    explicit = np.linspace(0.5, 1.6, 12)
    np.testing.assert_array_equal(resolve_gammas(BP4D_RATES, explicit), explicit)
    np.testing.assert_array_equal(MDWALoss.from_rates(BP4D_RATES).gammas.numpy(), gammas.astype(np.float32))
    names = [f"AU{n}" for n in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)]
    by_name = resolve_gammas(BP4D_RATES, {"au01": 2.0, "AU24": 0.5}, au_names=names)
    np.testing.assert_array_equal(by_name, np.r_[2.0, gammas[1:11], 0.5])
    with pytest.raises(UnknownAUError):
        resolve_gammas(BP4D_RATES, {"AU9": 2.0}, au_names=names)
    with pytest.raises(UsageError, match="gammas lists 3 values but there are 12 AUs"):
        resolve_gammas(BP4D_RATES, [1.0, 1.0, 1.0])
    with pytest.raises(UsageError, match="margin must be in"):
        MDWALoss([1.0], 1.0, margin=1.0)
