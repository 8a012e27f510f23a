"""``aucli info``: parameter counts of configurations, recipes and checkpoints; dispatch to stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from aucli.aus import au_name
from aucli.cli.main import cli
from aucli.config import ModelConfig
from aucli.model import AUFormer
from aucli.model.checkpoint import save_checkpoint
from aucli.resources import recipes_dir

RECIPES = recipes_dir()


def expected_expert_parameters(dim: int, depth: int, n_aus: int, d: int, n_dilations: int = 3) -> int:
    """Closed form of one model's MoKE parameters (both groups of every block)."""
    per_expert = (
        dim * d + d  # down-projection
        + d * d * 9 + d  # 3x3 conv
        + n_dilations * (d * d * 9 + d)  # dilated convs
        + n_dilations * d * d + d  # 1x1 fusion of the concatenation
        + 3 * (d * d + d)  # Q, K, V
        + d * dim + dim  # up-projection
    )
    return 2 * depth * n_aus * per_expert


def test_vit_base_12_aus_counts_without_weights_or_memory(runner, monkeypatch) -> None:
    """Counted on the meta device: no weights are read or downloaded."""
    from aucli.model import backbone

    def no_weights(*args, **kwargs):
        raise AssertionError("aucli info loaded weights")

    monkeypatch.setattr(backbone, "_load_weight_file", no_weights)
    monkeypatch.setattr(backbone, "_check_hub_weights", no_weights)
    result = runner.invoke(cli, ["info", "--backbone", "vit_base_patch16_224", "--aus", "12", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    parameters = info["parameters"]
    components = parameters["components"]
    with torch.device("meta"):
        vit = timm.create_model("vit_base_patch16_224", num_classes=0)
    assert components["backbone"] == {"trainable": 0, "frozen": sum(p.numel() for p in vit.parameters())}
    experts = components["attention_experts"]["trainable"] + components["mlp_experts"]["trainable"]
    assert experts == expected_expert_parameters(768, 12, 12, 8)
    assert components["main_head"]["trainable"] == 768 * 12 + 12
    assert components["expert_heads"]["trainable"] == 12 * 768 + 12  # last block supervised
    assert parameters["trainable"] == experts + 2 * (768 * 12 + 12)
    assert parameters["total"] == parameters["trainable"] + parameters["frozen"]
    assert info["au_names"][:3] == ["AU1", "AU2", "AU4"] and len(info["au_names"]) == 12
    assert info["grid"] == [14, 14] and info["supervised_blocks"] == [12]


def test_table_output(runner) -> None:
    result = runner.invoke(cli, ["info", "--backbone", "vit_base_patch16_224", "--aus", "disfa", "--override", "model.moke.bottleneck=4"])
    assert result.exit_code == 0, result.output
    for text in ("backbone (timm ViT, frozen)", "attention MoKE groups (12 x 8 experts)", "MLP MoKE groups", "main head", "expert heads", "total", "trainable:", "d = 4"):
        assert text in result.output, text


def test_recipe_target_with_overrides(runner) -> None:
    result = runner.invoke(cli, ["info", str(RECIPES / "disfa.yaml"), "--override", "model.expert_supervision=all", "--aus", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["kind"] == "recipe" and info["backbone"] == "vit_base_patch16_224.augreg_in21k"
    assert info["au_names"] == ["AU1", "AU2"] and info["supervised_blocks"] == list(range(1, 13))
    assert info["parameters"]["components"]["expert_heads"]["trainable"] == 12 * (2 * 768 + 2)


def test_checkpoint_target(runner, tmp_path: Path) -> None:
    cfg = ModelConfig(backbone="vit_base_patch16_224", backbone_overrides=dict(depth=2, embed_dim=32, num_heads=2, patch_size=8), img_size=32, au_names="disfa")
    model = AUFormer(cfg)
    weights, meta = save_checkpoint(tmp_path / "best", model, thresholds=[0.4] * 8, training={"epoch": 2})
    result = runner.invoke(cli, ["info", str(weights), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["kind"] == "checkpoint"
    assert info["checkpoint"]["weights_bytes"] == weights.stat().st_size
    assert info["checkpoint"]["total_bytes"] == weights.stat().st_size + meta.stat().st_size
    assert info["checkpoint"]["thresholds"] == {au_name(n): 0.4 for n in (1, 2, 4, 6, 9, 12, 25, 26)}
    assert info["parameters"] == json.loads(json.dumps(model.parameter_summary()))
    table = runner.invoke(cli, ["info", str(tmp_path / "best")])
    assert table.exit_code == 0, table.output
    assert "on disk" in table.output and "stored in the checkpoint" in table.output and "epoch=2" in table.output


def test_store_target_dispatches_to_the_store_summary(runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aucli.store.summary as store_summary

    seen = []
    monkeypatch.setattr(store_summary, "summarize_store", lambda path: seen.append(path) or {"path": str(path), "frames": 3})
    monkeypatch.setattr(store_summary, "render_store_summary", lambda summary: print(f"rendered {summary['frames']} frames"))
    store = str(tmp_path / "corpus.h5")
    result = runner.invoke(cli, ["info", store])
    assert result.exit_code == 0 and result.output.strip() == "rendered 3 frames" and seen == [store]
    result = runner.invoke(cli, ["info", store, "--json"])
    assert json.loads(result.output) == {"path": store, "frames": 3}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--aus", "99"], 2, "Error: --aus 99: a count must be between 1 and 27 (for one AU write AU99)"),
        (["--aus", "AU1,AU1"], 2, "Error: AU list names AU1 more than once"),
        (["--backbone", "vit_bse_patch16_224"], 1, "Error: unknown timm backbone 'vit_bse_patch16_224'; did you mean vit_base_patch16_224"),
        (["--backbone", "vit_base_patch16_rpn_224", "--override", "model.head_pool=mean"], 1, "Error: vit_base_patch16_rpn_224 uses ResPostBlock blocks"),
        (["--override", "model.moke.botleneck=4"], 2, "Error: unknown key 'model.moke.botleneck'; did you mean 'model.moke.bottleneck'?"),
        (["no_such_checkpoint"], 1, "Error: no checkpoint file no_such_checkpoint.json and no registry entry named 'no_such_checkpoint'"),
        (["missing/best.safetensors"], 1, "Error: checkpoint not found: missing/best.json (a checkpoint is NAME.safetensors with NAME.json beside it)"),
        (["x.h5", "--aus", "12"], 2, "Error: --backbone, --aus and --override apply to a recipe or a configuration, not to a store"),
        (["missing.yaml"], 2, "Error: recipe file not found: missing.yaml"),
    ],
)
def test_errors(runner, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(cli, ["info", *args])
    assert result.exit_code == code, result.output
    assert result.output.startswith(message), result.output
