"""Baseline methods (linear, AdaptFormer, LoRA, full fine-tuning): train, save, load, same outputs."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch
from engine_fixtures import TOY_AUS, make_toy_store, toy_recipe

from aucli.config import Method
from aucli.engine import train
from aucli.engine.data import AugmentedFaces, FaceTransform, store_dataset
from aucli.engine.evaluate import predict_logits
from aucli.engine.runs import load_tensors, read_json, save_tensors
from aucli.engine.fold import param_groups
from aucli.errors import ModelError
from aucli.model.baselines import Adapter, BaselineModel
from aucli.model.checkpoint import load_model_checkpoint
from aucli.model.methods import METHODS, build_method_model

STEPS = {"optim.epochs": 1, "optim.max_steps": 2, "data.batch_size": 8}


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("baselines") / "toy.h5", subjects=6, frames=6)


def _same_logits_after_loading(run_folder, store) -> None:
    fold = run_folder / "fold1"
    loaded = load_model_checkpoint(fold / "best.safetensors")
    saved = load_tensors(fold / "best_predictions.safetensors")
    base = store_dataset(store, labels="manual", label_aus=list(TOY_AUS))
    position = {int(r): i for i, r in enumerate(base.rows)}
    indices = np.asarray([position[int(r)] for r in saved["test_rows"].numpy()])
    size = int(loaded.data_config["input_size"][-1])
    faces = AugmentedFaces(base, FaceTransform.from_config(loaded.recipe.data, size, train=False), indices)
    rows, logits = predict_logits(loaded.model, faces, device=torch.device("cpu"), mean=loaded.data_config["mean"],
                                  std=loaded.data_config["std"])
    assert np.array_equal(rows, saved["test_rows"].numpy())
    np.testing.assert_allclose(logits, saved["test_logits"].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "adaptformer", "lora", "full"])
def test_method_trains_saves_and_loads(method, toy_store, tmp_path):
    recipe = toy_recipe(**STEPS, **{"train.method": method})
    result = train(toy_store, recipe, out=tmp_path / method, show_progress=False)
    fold = result.folds[0]
    assert fold.best_step == 2 and np.isfinite(fold.test.auc).any()
    meta = read_json(tmp_path / method / "fold1" / "best.json")
    assert meta["method"] == method and meta["recipe"]["train"]["method"] == method
    tensors = load_tensors(tmp_path / method / "fold1" / "best.safetensors")
    trainable = {k for k in tensors if not k.startswith("backbone.") or "lora_" in k}
    if method == "linear":
        assert trainable == {"head.mlp.0.weight", "head.mlp.0.bias"}
    elif method == "adaptformer":
        assert {k.split(".")[0] for k in trainable} == {"adapters", "head"}
    elif method == "lora":
        assert any("qkv.lora_A" in k for k in trainable) and any("qkv.lora_B" in k for k in trainable)
    else:
        assert meta["parameters"]["frozen"] == 0
    _same_logits_after_loading(tmp_path / method, toy_store)


def test_the_method_registry_builds_every_method_a_recipe_can_name():
    assert list(METHODS) == list(get_args(Method))
    recipe = toy_recipe()
    for method in METHODS:
        model = build_method_model(recipe.model, recipe.baseline, method, weights="random")
        assert getattr(model, "method", "auformer") == method and model.au_names == list(recipe.model.au_names)
        assert model(torch.zeros(2, 3, 32, 32)).logits.shape == (2, len(TOY_AUS))
    with pytest.raises(ModelError, match=r"unknown method 'dora'; choose one of auformer, linear"):
        build_method_model(recipe.model, recipe.baseline, "dora", weights="random")


def test_parameter_counts_and_groups():
    recipe = toy_recipe()
    counts = {}
    for method in ("auformer", "linear", "adaptformer", "lora", "full"):
        model = build_method_model(recipe.model, recipe.baseline, method, weights="random")
        counts[method] = model.parameter_summary()["trainable"]
        assert counts[method] == sum(p.numel() for p in model.trainable_parameters())
    assert counts["linear"] == 32 * 4 + 4
    depth, dim, r = 2, 32, 8
    assert counts["lora"] == counts["linear"] + depth * r * (dim + 3 * dim)
    assert counts["adaptformer"] == counts["linear"] + depth * (dim * 64 + 64 + 64 * dim + dim)
    assert counts["full"] > counts["auformer"] > counts["linear"]
    full = build_method_model(recipe.model, recipe.baseline, "full", weights="random")
    groups = param_groups(full, recipe)
    backbone = [g for g in groups if g["lr_scale"] == recipe.optim.backbone_lr_scale]
    assert backbone and all(g["lr"] == pytest.approx(recipe.optim.lr * recipe.optim.backbone_lr_scale) for g in backbone)
    assert all(g["weight_decay"] == 0 for g in groups if all(p.ndim <= 1 for p in g["params"]))


def test_adapter_starts_from_the_frozen_function():
    adapter = Adapter(16, 4, 0.1)
    assert torch.equal(adapter(torch.randn(2, 5, 16)), torch.zeros(2, 5, 16))
    recipe = toy_recipe()
    torch.manual_seed(0)
    model = build_method_model(recipe.model, recipe.baseline, "adaptformer", weights="random")
    assert isinstance(model, BaselineModel)
    images = torch.randn(2, 3, 32, 32)
    vit = model.backbone
    expected = model.head(vit.fc_norm(vit.forward_features(images)), model.num_prefix_tokens)
    torch.testing.assert_close(model(images).logits, expected)
    model.train()
    assert not model.backbone.training and model.head.training


def test_backbone_from_a_file_is_not_copied_into_the_checkpoint(toy_store, tmp_path):
    import timm

    recipe = toy_recipe()
    vit = timm.create_model("test_vit", num_classes=0, img_size=32, **recipe.model.backbone_overrides)
    weights = tmp_path / "backbone.safetensors"
    save_tensors(weights, vit.state_dict())
    recipe = toy_recipe(**STEPS, **{"train.method": "lora", "model.backbone_weights": str(weights)})
    train(toy_store, recipe, out=tmp_path / "run", show_progress=False)
    meta = read_json(tmp_path / "run" / "fold1" / "best.json")
    assert meta["backbone_source"] == str(weights) and meta["backbone_in_checkpoint"] is False
    tensors = load_tensors(tmp_path / "run" / "fold1" / "best.safetensors")
    assert all("lora_" in k or k.startswith("head.") for k in tensors)
    _same_logits_after_loading(tmp_path / "run", toy_store)
    weights.rename(tmp_path / "moved.safetensors")
    from aucli.errors import ModelError

    with pytest.raises(ModelError, match="backbone weights .* are not there any more; pass the file with --backbone-weights"):
        load_model_checkpoint(tmp_path / "run" / "fold1" / "best.json")
    loaded = load_model_checkpoint(tmp_path / "run" / "fold1" / "best", backbone_weights=str(tmp_path / "moved.safetensors"))
    assert loaded.method == "lora"


def test_the_moke_up_projections_can_train_at_a_lower_rate_and_the_default_keeps_the_groups():
    recipe = toy_recipe()
    model = build_method_model(recipe.model, recipe.baseline, "auformer", weights="random")
    names = {id(p): n for n, p in model.named_parameters()}
    default = param_groups(model, recipe)
    assert [g["lr_scale"] for g in default] == [1.0, 1.0]  # as before the option: saved optimiser states still fit

    slowed = param_groups(model, toy_recipe(**{"optim.moke_up_lr_scale": 0.25}))
    up = [g for g in slowed if g["lr_scale"] == 0.25]
    up_names = sorted(names[id(p)] for g in up for p in g["params"])
    assert up_names and all(n.startswith(("attn_experts.", "mlp_experts.")) and n.endswith((".up_weight", ".up_bias")) for n in up_names)
    assert len(up_names) == 2 * 2 * 2  # depth 2 x (attention, MLP) groups x (weight, bias)
    assert all(g["lr"] == pytest.approx(recipe.optim.lr * 0.25) for g in up)
    assert {names[id(p)] for g in slowed for p in g["params"]} == {names[id(p)] for g in default for p in g["params"]}
    # weight decay as for every tensor: the up biases get none
    assert all(g["weight_decay"] == 0 for g in up if all(p.ndim <= 1 for p in g["params"]))
