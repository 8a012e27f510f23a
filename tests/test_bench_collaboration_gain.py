"""bench/collaboration_gain.py: the collaboration chain's link gains, and a fold trained while they are logged."""

from __future__ import annotations

import math

import pytest
import torch
import collaboration_gain
from engine_fixtures import toy_recipe

from aucli.model.methods import build_method_model


def test_link_gains_follow_the_chain_and_start_at_zero():
    recipe = toy_recipe()
    torch.manual_seed(0)
    model = build_method_model(recipe.model, recipe.baseline, "auformer", weights="random")
    assert collaboration_gain.link_gains(model) == [0.0] * (2 * model.depth - 1)  # zero-initialised up-projections
    with torch.no_grad():
        for group in [*model.attn_experts, *model.mlp_experts]:
            group.up_weight.normal_(0, 0.5)
    gains = collaboration_gain.link_gains(model)
    assert len(gains) == 2 * model.depth - 1 and all(g > 0 for g in gains)
    # the first link: block 0's MLP experts read block 0's attention experts through W_i U_i
    mlp, attn = model.mlp_experts[0], model.attn_experts[0]
    direct = max(torch.linalg.matrix_norm(mlp.down_weight[i] @ attn.up_weight[i], ord=2).item() for i in range(mlp.down_weight.shape[0]))
    assert gains[0] == pytest.approx(direct, rel=1e-5)
    summary = collaboration_gain.chain_summary(model)
    assert summary["max_gain"] == max(gains) and summary["product"] == pytest.approx(math.prod(gains))


def test_a_fold_trains_with_its_gains_logged(tmp_path, capsys):
    result = collaboration_gain.main(["--fold", "1", "--log-every", "1", "--work", str(tmp_path), "--subjects", "6", "--tasks", "1", "--frames", "10",
                         "--every", "5", "--detector", "none", "--steps", "3", "--batch", "4", "--threads", "1",
                         "-o", "optim.moke_up_lr_scale=0.25", "--out", str(tmp_path / "run")])  # fmt: skip
    out = capsys.readouterr().out
    assert result["status"] == "done" and [r["step"] for r in result["rows"]] == [1, 2, 3]
    assert "moke_up_lr_scale 0.25" in out and "largest link gain" in out and "done: test F1" in out
    assert (tmp_path / "run" / "fold1" / "result.json").is_file()
