"""aucli pretrain: a tiny real MAE run on rendered faces, resume, loading into AUFormer, the embedded backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aucli.config import ModelConfig
from aucli.errors import ModelError
from aucli.fileio import file_sha256
from aucli.model.auformer import build_model
from aucli.model.weights import EMBEDDED_PREFIX, embedded_backbone, read_backbone_card, resolve_backbone_weights
from aucli.pretrain import load_pretrain_config, pretrain
from aucli.pretrain.data import FaceSampling, render_block
from aucli.pretrain.mae import patchify, sincos_pos_embed

#: A 32 px encoder of depth 2 on 96 px frames: a few seconds from rendering to probe.
TINY = [
    "img_size=32", "overrides={patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}", "identities=3", "frames_per_identity=8",
    "val_identities=1", "frame_size=96", "steps=14", "batch_size=8", "warmup_steps=2", "lr=0.003", "decoder_dim=32",
    "decoder_depth=1", "decoder_heads=2", "eval_every=7", "log_every=2", "save_every=5", "probe_identities=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    config = load_pretrain_config([*TINY, "probe_identities=6", "probe_frames=4"])
    return pretrain(config, tmp_path_factory.mktemp("pretrain") / "run", show_progress=False)


def _images(size: int, n: int = 2) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(0, 1, (n, 3, size, size)).astype(np.float32))


def test_tiny_pretraining_learns_and_saves_a_timm_encoder(tiny_run):
    assert tiny_run.finished and tiny_run.step == 14
    val = [loss for _, loss in tiny_run.val_loss]
    train = [loss for _, loss in tiny_run.train_loss]
    assert [s for s, _ in tiny_run.val_loss] == [0, 7, 14]
    assert val[-1] < val[0] - 0.1, val
    assert train[-1] < train[0], train
    files = {p.name for p in tiny_run.out.iterdir()}
    assert files == {
        "config.json",
        "metrics.jsonl",
        "encoder.safetensors",
        "encoder.json",
        "MODEL_CARD.md",
    }  # state and cache removed
    card = read_backbone_card(tiny_run.out / "encoder.json")
    assert card["weights"]["sha256"] == file_sha256(tiny_run.encoder_path)
    assert card["model_config"] == {"backbone": "vit_tiny_patch16_224", "img_size": 32,
                                    "backbone_overrides": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}}  # fmt: skip
    assert card["input"]["mean"] == [0.5, 0.5, 0.5]
    from safetensors import safe_open

    with safe_open(str(tiny_run.encoder_path), "pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("blocks.0.attn.qkv.weight").dtype == torch.float16
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight", "blocks.1.mlp.fc2.bias"} <= keys
    assert not any(k.startswith(("head", "decoder", "mask_token")) for k in keys)
    probe = card["probe"]["results"]
    assert set(probe) == {"pretrained", "random init", "pixels"}
    assert 0.0 <= probe["pretrained"]["cls+mean"]["mean_auc"] <= 1.0 and len(probe["pretrained"]["grid"]["f1"]) == 15
    assert "AU linear probe" in (tiny_run.out / "MODEL_CARD.md").read_text()


def test_saved_encoder_loads_into_auformer_with_identical_backbone_outputs(tiny_run):
    cfg = ModelConfig(**tiny_run.card["model_config"], au_names=["AU1", "AU12"], backbone_weights=str(tiny_run.encoder_path))
    model = build_model(cfg)
    x = _images(32)
    with torch.no_grad():
        expected = tiny_run.encoder.forward_features(x)
        assert torch.equal(model.backbone.forward_features(x), expected)
    # and through timm's own loader, as the card says
    import timm

    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=True, num_classes=0, img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2,
        pretrained_cfg_overlay=dict(file=str(tiny_run.encoder_path), custom_load=False),
    ).eval()  # fmt: skip
    with torch.no_grad():
        assert torch.equal(vit.forward_features(x), expected)


def test_stopped_run_resumes_to_the_same_encoder(tiny_run, tmp_path, runner):
    from aucli.cli.main import cli

    args = ["pretrain", "--out", str(tmp_path / "run"), "--threads", "1", "--quiet", *[a for item in TINY for a in ("-o", item)]]
    stopped = runner.invoke(cli, [*args, "--max-minutes", "0.00001"])
    assert stopped.exit_code == 0, stopped.output
    assert "Stopped at step 1/14 (state saved)" in stopped.output
    assert (tmp_path / "run" / "state.json").is_file()
    again = runner.invoke(cli, args)
    assert again.exit_code == 2
    assert (
        f"Error: {tmp_path / 'run'} already holds a pretraining run; add --resume to continue it, or choose another --out"
        in again.output
    )
    other = runner.invoke(cli, [*args, "--resume", "--steps", "20"])
    assert other.exit_code == 2 and "cannot resume" in other.output and "steps: 14 in the run, 20 now" in other.output
    resumed = runner.invoke(cli, [*args, "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.output)
    assert summary["finished"] and summary["step"] == 14
    # the uninterrupted run (same settings, plus a probe that does not touch the encoder) gave the same bytes
    assert file_sha256(tmp_path / "run" / "encoder.safetensors") == file_sha256(tiny_run.encoder_path)
    assert summary["val_loss"] == tiny_run.val_loss


def test_rendered_faces_are_deterministic_and_aligned_like_preprocess():
    sampling = FaceSampling(frame_size=96, crop_size=37, frames_per_identity=3)
    a, b = render_block(5, "train", 2, sampling), render_block(5, "train", 2, sampling)
    assert a.crops.shape == (3, 37, 37, 3) and a.crops.dtype == np.uint8
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.intensity, b.intensity)
    assert not np.array_equal(a.crops, render_block(5, "probe", 2, sampling).crops)
    # the face fills the aligned crop: the centre is skin, not the black border of the warp
    centre = a.crops[:, 12:25, 12:25].astype(float).mean()
    assert centre > 40


def test_mae_parts():
    x = torch.arange(4 * 4, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(1, 3, 1, 1)
    patches = patchify(x, 2)  # timm's token order: row-major over the patch grid
    assert patches.shape == (1, 4, 12)
    assert patches[0, 1].tolist()[:4] == [2.0, 2.0, 2.0, 3.0]  # patch (0, 1): pixels (0,2) (0,2)c (0,2)c (0,3) ...
    table = sincos_pos_embed(8, (2, 3))
    assert table.shape == (1, 7, 8) and torch.all(table[0, 0] == 0)
    assert not torch.equal(table[0, 1], table[0, 2])


def test_pretrain_cli_help_and_bad_override(runner, tmp_path):
    from aucli.cli.main import cli

    result = runner.invoke(cli, ["pretrain", "--help"])
    assert result.exit_code == 0
    assert "masked autoencoder" in result.output and "Examples:" in result.output
    bad = runner.invoke(cli, ["pretrain", "--out", str(tmp_path / "x"), "-o", "stepz=3"])
    assert bad.exit_code == 2
    assert "Error: unknown key 'stepz'; did you mean 'steps'?" in bad.output


def test_resolve_backbone_weights_passes_other_sources_through(tmp_path):
    assert resolve_backbone_weights(None) is None
    assert resolve_backbone_weights("hub") == "hub" and resolve_backbone_weights("random") == "random"
    assert resolve_backbone_weights(str(tmp_path / "w.safetensors")) == str(tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match=r"no embedded backbone 'synthfase'; did you mean embedded:synthface\?"):
        resolve_backbone_weights(f"{EMBEDDED_PREFIX}synthfase")


def test_embedded_backbone_matches_its_card_and_loads_into_auformer():
    entry = embedded_backbone("synthface")
    assert entry.weights.name == "synthface_vit_s112.safetensors"
    assert file_sha256(entry.weights) == entry.data["weights"]["sha256"]
    assert resolve_backbone_weights("embedded:synthface") == str(entry.weights)
    model_config = entry.model_config()
    assert model_config["backbone_weights"] == "embedded:synthface" and model_config["img_size"] == 112
    cfg = ModelConfig(**{**model_config, "backbone_weights": str(entry.weights)}, au_names="bp4d")
    model = build_model(cfg).eval()
    assert model.backbone.patch_embed.grid_size == (14, 14)
    with torch.no_grad():
        out = model(_images(112, 1))
    assert out.logits.shape == (1, 12) and torch.isfinite(out.logits).all()


def test_the_shipped_model_card_is_its_json_card_rendered_with_its_evaluations():
    from aucli.pretrain.card import card_markdown
    from aucli.resources import card_path

    entry = embedded_backbone("synthface")
    shipped = card_path(entry.data["name"]).read_text(encoding="utf-8")
    assert shipped == card_markdown(entry.data)
    evaluation = shipped.split("## Evaluations", 1)[1].split("## Use", 1)[0]
    assert "| AUFormer on this backbone | 57.5 ± 0.4 | 75.6 |" in evaluation and "learnability.json" in evaluation
    # the table takes a plain fraction or [mean, std], and a model without a metric gets "-"
    extra = {"task": "t", "setting": "s", "source": "x", "results": {"a": {"F1": 0.5}, "b": {"F1": [0.25, 0.01], "AUC": 0.6}}}
    lines = card_markdown({**entry.data, "evaluations": [extra]}).splitlines()
    assert "| a | 50.0 | - |" in lines and "| b | 25.0 ± 1.0 | 60.0 |" in lines
    assert "## Evaluations" not in card_markdown({k: v for k, v in entry.data.items() if k != "evaluations"})


def test_install_publishes_an_embedded_and_registered_backbone(tiny_run, tmp_path):
    from aucli.model.registry import load_registry
    from aucli.pretrain import install_backbone

    assets, models = tmp_path / "assets", tmp_path / "models"
    models.mkdir()
    (models / "registry.json").write_text(json.dumps({"format_version": 1, "checkpoints": {}}))
    entry = install_backbone(tiny_run.out, name="tiny", stem="tiny_vit", registry_name="tiny-vit", assets=assets, models=models)
    assert entry.weights == assets / "tiny_vit.safetensors" and entry.data["name"] == "tiny-vit"
    assert entry.model_config()["backbone_weights"] == "embedded:tiny"
    assert load_registry(models / "registry.json") == {}  # checkpoints untouched; backbones are a section of their own
    resolved = resolve_backbone_weights("tiny-vit", registry=models / "registry.json")
    assert resolved == str(entry.weights) and file_sha256(resolved) == tiny_run.card["weights"]["sha256"]
    assert "backbone_weights: embedded:tiny" in (models / "cards" / "tiny-vit.md").read_text()
    entry.weights.write_bytes(entry.weights.read_bytes()[:-8] + b"\0" * 8)  # a changed file is refused
    with pytest.raises(ModelError, match="does not match the sha256 in its card"):
        embedded_backbone("tiny", folder=assets)


def test_hog_target_run_learns_and_says_so_in_its_card(tmp_path):
    torch.set_num_threads(1)
    config = load_pretrain_config([*TINY, "target=hog", "mask_ratio=0.5", "visible_weight=1.0"])
    run = pretrain(config, tmp_path / "hog", show_progress=False)
    val = [loss for _, loss in run.val_loss]
    assert run.finished and val[-1] < val[0] - 0.1, val
    card = read_backbone_card(run.out / "encoder.json")
    objective = card["pretraining"]["objective"]
    assert "HOG (9 orientation bins, 4 px cells" in objective and "visible ones at weight 1" in objective
    assert card["pretraining"]["config"]["target"] == "hog"
    with pytest.raises(ModelError, match="must divide the encoder's patch"):
        from aucli.pretrain.trainer import build_mae

        build_mae(load_pretrain_config([*TINY, "target=hog", "hog_cell=3"]))
