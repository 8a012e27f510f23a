"""The grouped MoKE form equals the literal loop-per-expert AUFormer, outputs and gradients, in float64.

The reference (:mod:`benchlib.moke_reference`) holds one module per expert with ordinary convs and a
hand-written softmax attention, feeds every expert ``Norm(X) + K_partner`` built at full width, and
pools every expert's full-width output for its head. Up-projections are random and non-zero: at
zero init every form agrees trivially.
"""

from __future__ import annotations

import pytest
import torch

from aucli.aus import au_name
from aucli.config import ModelConfig
from aucli.model import AUFormer
from aucli.nn import MoKEGroup
from benchlib.moke_reference import ReferenceAUFormer, ReferenceExpert

TOLERANCE = 1e-6
TINY = dict(depth=2, embed_dim=32, num_heads=2, patch_size=8)


def tiny_config(n_aus: int, **changes) -> ModelConfig:
    overrides = dict(TINY, **changes.pop("backbone_overrides", {}))
    return ModelConfig(
        backbone="vit_base_patch16_224",
        backbone_overrides=overrides,
        img_size=48,  # a 6 x 6 grid: the dilation-5 taps reach inside it
        au_names=[au_name(i) for i in range(1, n_aus + 1)],
        **changes,
    )


def randomise(model: AUFormer, seed: int) -> None:
    """Non-zero up-projections and biases everywhere (the init zeroes them)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and (name.endswith(("up_weight", "up_bias")) or "head" in name):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator, dtype=param.dtype))


CASES = [
    pytest.param(1, dict(head_pool="cls", expert_pool="mean", expert_supervision="last"), id="N1-cls-last"),
    pytest.param(5, dict(head_pool="both", expert_pool="cls", expert_supervision="all", moke={"bottleneck": 4, "scale": 0.7}), id="N5-both-all"),
    pytest.param(12, dict(head_pool="mean", expert_pool="both", expert_supervision="last"), id="N12-mean-last"),
    pytest.param(5, dict(head_pool="mean", head_norm="batch", expert_pool="mean", expert_supervision="last"), id="N5-mean-standardised"),
    pytest.param(5, dict(head_pool="mean", expert_pool="mean", expert_supervision="all", backbone_overrides={"class_token": False, "global_pool": "avg"}), id="N5-no-cls-token"),
    pytest.param(5, dict(head_pool="cls", expert_pool="cls", expert_supervision="none", backbone_overrides={"reg_tokens": 2}), id="N5-registers-none"),
]


@pytest.mark.parametrize(("n_aus", "changes"), CASES)
def test_grouped_equals_loop_per_expert(n_aus: int, changes: dict) -> None:
    torch.manual_seed(n_aus)
    moke = changes.pop("moke", None)
    cfg = tiny_config(n_aus, **changes)
    if moke:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "moke": {**cfg.moke.to_dict(), **moke}})
    model = AUFormer(cfg).double()
    randomise(model, seed=n_aus)
    reference = ReferenceAUFormer(model)

    images = torch.randn(2, 3, 48, 48, dtype=torch.float64, requires_grad=True)
    images_ref = images.detach().clone().requires_grad_(True)
    out = model(images)
    logits_ref, expert_ref = reference(images_ref)

    torch.testing.assert_close(out.logits, logits_ref, atol=TOLERANCE, rtol=TOLERANCE)
    if cfg.expert_supervision == "none":
        assert out.expert_logits is None and expert_ref is None
    else:
        n_supervised = model.depth if cfg.expert_supervision == "all" else 1
        assert out.expert_logits.shape == (2, n_supervised, n_aus)
        torch.testing.assert_close(out.expert_logits, expert_ref, atol=TOLERANCE, rtol=TOLERANCE)

    # Gradients of one random linear functional of all outputs.
    weights = torch.randn_like(out.logits)
    loss = (out.logits * weights).sum()
    loss_ref = (logits_ref * weights).sum()
    if out.expert_logits is not None:
        expert_weights = torch.randn_like(out.expert_logits)
        loss = loss + (out.expert_logits * expert_weights).sum()
        loss_ref = loss_ref + (expert_ref * expert_weights).sum()
    loss.backward()
    loss_ref.backward()
    torch.testing.assert_close(images.grad, images_ref.grad, atol=TOLERANCE, rtol=TOLERANCE)
    assert images.grad.abs().max() > 0

    reference_grads = reference.grouped_gradients()
    compared = 0
    for name, param in model.named_parameters():
        if not param.requires_grad or name.startswith("head."):
            continue  # the main head's layers are shared by both models
        assert name in reference_grads, f"{name} has no counterpart in the reference"
        torch.testing.assert_close(param.grad, reference_grads[name], atol=TOLERANCE, rtol=TOLERANCE, msg=name)
        compared += 1
    assert compared == len(reference_grads)
    # The gradient reaches the first expert layers of the first block, through the collaboration.
    assert model.attn_experts[0].down_weight.grad.abs().max() > 0


def test_experts_change_the_function_once_up_projections_are_non_zero() -> None:
    """Guards the comparison above against a trivial pass: with zero up-projections the experts are
    invisible (AUFormer starts as the frozen ViT), with non-zero ones they are not."""
    torch.manual_seed(0)
    model = AUFormer(tiny_config(5)).double().eval()
    images = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        tokens, _ = model.forward_features(images)
        plain = model.backbone.forward_features(images)
        torch.testing.assert_close(tokens, plain, atol=1e-12, rtol=0)
        randomise(model, seed=1)
        changed, _ = model.forward_features(images)
    assert (changed - plain).abs().max() > 1e-3


def test_one_group_with_partner_equals_literal_experts() -> None:
    """Collaboration at the level of one pair of groups: expert i reads Y + K_i of its partner."""
    torch.manual_seed(3)
    dim, n, d, grid, prefix = 16, 4, 3, (5, 4), 1
    first = MoKEGroup(dim, n, d, (1, 2)).double()
    second = MoKEGroup(dim, n, d, (1, 2)).double()
    with torch.no_grad():
        for group in (first, second):
            group.up_weight.normal_(0, 0.5)
            group.up_bias.normal_(0, 0.5)
    y1 = torch.randn(2, prefix + 20, dim, dtype=torch.float64)
    y2 = torch.randn(2, prefix + 20, dim, dtype=torch.float64)
    g1 = first(y1, grid, prefix)
    g2 = second(y2, grid, prefix, first, g1)
    knowledge1, knowledge2 = first.knowledge(g1), second.knowledge(g2)
    for i in range(n):
        expert1 = ReferenceExpert(dim, d, (1, 2)).double()
        expert2 = ReferenceExpert(dim, d, (1, 2)).double()
        expert1.copy_from(first, i)
        expert2.copy_from(second, i)
        k1 = expert1(y1, grid, prefix)
        k2 = expert2(y2 + k1, grid, prefix)
        torch.testing.assert_close(knowledge1[:, :, i], k1, atol=TOLERANCE, rtol=TOLERANCE)
        torch.testing.assert_close(knowledge2[:, :, i], k2, atol=TOLERANCE, rtol=TOLERANCE)
    torch.testing.assert_close(second.mean_knowledge(g2, 0.5), 0.5 * knowledge2.mean(dim=2), atol=TOLERANCE, rtol=TOLERANCE)


def test_grouped_equals_loop_per_expert_in_float32() -> None:
    """The fast path in fp32 (what the CPU trains and predicts in) agrees with the reference within 1e-4."""
    torch.manual_seed(7)
    cfg = tiny_config(6, head_pool="both", expert_pool="both", expert_supervision="all")
    model = AUFormer(cfg)
    randomise(model, seed=7)
    reference = ReferenceAUFormer(model)
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        out = model(images)
        logits_ref, expert_ref = reference(images)
    torch.testing.assert_close(out.logits, logits_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.expert_logits, expert_ref, atol=1e-4, rtol=1e-4)
