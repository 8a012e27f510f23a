"""Checkpoints: round trips, what is stored, mismatch errors, no unpickling, the registry."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from aucli.aus import au_name
from aucli.config import ModelConfig
from aucli.errors import ModelError
from aucli.model import AUFormer, build_model
from aucli.model.checkpoint import CHECKPOINT_FORMAT, checkpoint_paths, load_checkpoint, save_checkpoint
from aucli.model.registry import default_registry_path, load_registry, register_checkpoint, resolve_checkpoint

TINY = dict(depth=2, embed_dim=32, num_heads=2, patch_size=8)


def tiny_config(n_aus: int = 5, **changes) -> ModelConfig:
    return ModelConfig(
        backbone="vit_base_patch16_224", backbone_overrides=dict(TINY), img_size=32, au_names=[au_name(i) for i in range(1, n_aus + 1)], **changes
    )


def trained(model: AUFormer, seed: int = 0) -> AUFormer:
    """Stand-in for training: every trainable tensor random and non-zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backbone") / "tiny_vit.safetensors"
    torch.manual_seed(11)
    vit = timm.create_model("vit_base_patch16_224", img_size=32, num_classes=0, **TINY)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("given", ["stem", ".json", ".safetensors"])
def test_round_trip_with_a_backbone_file(tmp_path: Path, backbone_file: Path, given: str) -> None:
    model = trained(build_model(tiny_config(5, head_pool="both", expert_supervision="all"), weights=str(backbone_file)))
    weights, meta_path = save_checkpoint(tmp_path / "run" / "best", model, thresholds=[0.3, 0.4, 0.5, 0.6, 0.7], training={"epoch": 3, "val_f1": 0.61})
    assert (weights.name, meta_path.name) == ("best.safetensors", "best.json")
    path = {"stem": tmp_path / "run" / "best", ".json": meta_path, ".safetensors": weights}[given]
    loaded, meta = load_checkpoint(path)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = model(images), loaded(images)
    torch.testing.assert_close(got.logits, expected.logits, atol=0, rtol=0)
    torch.testing.assert_close(got.expert_logits, expected.expert_logits, atol=0, rtol=0)
    assert not loaded.training and loaded.cfg == model.cfg
    assert meta["thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7] and meta["training"] == {"epoch": 3, "val_f1": 0.61}


def test_round_trip_keeps_the_standardised_heads_statistics(tmp_path: Path, backbone_file: Path) -> None:
    model = trained(build_model(tiny_config(4, head_pool="mean", head_norm="batch"), weights=str(backbone_file)))
    model.train()
    with torch.no_grad():  # training batches move the head's running statistics away from (0, 1)
        for seed in range(3):
            model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 + 1)
    model.eval()
    assert not torch.allclose(model.head.norm.running_var, torch.ones_like(model.head.norm.running_var))
    weights, _ = save_checkpoint(tmp_path / "ck", model, thresholds=[0.5] * 4)
    assert {"head.norm.running_mean", "head.norm.running_var"} <= set(load_file(str(weights)))
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["recipe"]["model"]["head_norm"] == "batch"
    torch.testing.assert_close(loaded.head.norm.running_var, model.head.norm.running_var, atol=0, rtol=0)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, model(images).logits, atol=0, rtol=0)


def test_only_trainable_tensors_and_a_complete_json(tmp_path: Path, backbone_file: Path) -> None:
    model = trained(build_model(tiny_config(4), weights=str(backbone_file)))
    weights, meta_path = save_checkpoint(tmp_path / "ck", model, thresholds={"AU2": 0.2, "AU1": 0.1, "AU3": 0.3, "AU4": 0.4})
    tensors = load_file(str(weights))
    assert set(tensors) == set(model.trainable_state_dict())
    assert not any(name.startswith("backbone.") for name in tensors)
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == CHECKPOINT_FORMAT and meta["format_version"] == 1 and meta["method"] == "auformer"
    assert meta["au_names"] == ["AU1", "AU2", "AU3", "AU4"] and meta["thresholds"] == [0.1, 0.2, 0.3, 0.4]
    model_section = meta["recipe"]["model"]
    assert model_section["backbone"] == "vit_base_patch16_224" and model_section["backbone_overrides"] == TINY
    assert model_section["img_size"] == 32 and model_section["moke"] == {"bottleneck": 8, "dilations": [1, 3, 5], "scale": 1.0}
    assert model_section["head_pool"] == "cls"
    assert meta["data_config"]["input_size"] == [3, 32, 32] and len(meta["data_config"]["mean"]) == 3
    assert meta["backbone_source"] == str(backbone_file) and meta["backbone_in_checkpoint"] is False
    assert len(meta["backbone_sha256"]) == 64
    assert meta["aucli_version"] and meta["parameters"]["trainable"] == sum(p.numel() for p in model.trainable_parameters())


def test_random_backbone_is_stored_so_the_function_survives(tmp_path: Path) -> None:
    model = trained(AUFormer(tiny_config(3)))
    weights, _ = save_checkpoint(tmp_path / "ck", model)
    assert any(name.startswith("backbone.") for name in load_file(str(weights)))
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["backbone_in_checkpoint"] is True and meta["thresholds"] == [0.5, 0.5, 0.5]
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, model(images).logits, atol=0, rtol=0)


def test_mismatches_are_one_clear_error(tmp_path: Path, backbone_file: Path) -> None:
    model = trained(build_model(tiny_config(5), weights=str(backbone_file)))
    save_checkpoint(tmp_path / "five", model)
    with pytest.raises(ModelError, match=r"^the checkpoint detects AU1, AU2, AU3, AU4, AU5, but AU1, AU2 were expected"):
        load_checkpoint(tmp_path / "five", expected_au_names=["AU1", "AU2"])
    with pytest.raises(ModelError, match=r"^the checkpoint is built on backbone 'vit_base_patch16_224', not 'vit_small_patch16_224'"):
        load_checkpoint(tmp_path / "five", expected_backbone="vit_small_patch16_224")

    # Tensors of a 3-AU model behind the 5-AU JSON.
    save_checkpoint(tmp_path / "three", trained(build_model(tiny_config(3), weights=str(backbone_file))))
    (tmp_path / "mixed.json").write_text((tmp_path / "five.json").read_text())
    (tmp_path / "mixed.safetensors").write_bytes((tmp_path / "three.safetensors").read_bytes())
    # the tensor file is not the one the JSON's sha256 names; accepted on purpose, it still does not fit
    with pytest.raises(ModelError, match=r"mixed\.safetensors does not match the sha256 recorded in .*mixed\.json"):
        load_checkpoint(tmp_path / "mixed")
    with pytest.raises(ModelError, match=r"mixed\.safetensors does not fit the model its JSON describes \(.* has shape"):
        load_checkpoint(tmp_path / "mixed", accept_modified_weights=True)

    meta = json.loads((tmp_path / "five.json").read_text())
    for fmt, message in (("aucli-checkpoint-2", "written by another aucli version"), ("something-else", "is not an aucli checkpoint")):
        (tmp_path / "other.json").write_text(json.dumps(dict(meta, format=fmt)))
        (tmp_path / "other.safetensors").write_bytes((tmp_path / "five.safetensors").read_bytes())
        with pytest.raises(ModelError, match=message):
            load_checkpoint(tmp_path / "other")
    with pytest.raises(ModelError, match=r"checkpoint not found: .*absent\.json"):
        load_checkpoint(tmp_path / "absent")
    (tmp_path / "lonely.json").write_text((tmp_path / "five.json").read_text())
    with pytest.raises(ModelError, match=r"checkpoint weights not found: .*lonely\.safetensors"):
        load_checkpoint(tmp_path / "lonely")


def test_moved_or_changed_backbone_file(tmp_path: Path, backbone_file: Path) -> None:
    moved = tmp_path / "vit.safetensors"
    moved.write_bytes(backbone_file.read_bytes())
    save_checkpoint(tmp_path / "ck", trained(build_model(tiny_config(2), weights=str(moved))))
    original = moved.read_bytes()
    moved.write_bytes(original[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ModelError, match=r"differs from the one this checkpoint was trained with \(sha256 mismatch\); pass the file it was trained with: --backbone-weights PATH"):
        load_checkpoint(tmp_path / "ck")
    moved.unlink()
    with pytest.raises(ModelError, match=r"backbone weights .*vit\.safetensors are not there any more; pass the file with --backbone-weights PATH \(backbone_weights= in Python\)"):
        load_checkpoint(tmp_path / "ck")
    loaded, _ = load_checkpoint(tmp_path / "ck", backbone_weights=str(backbone_file))
    assert loaded.backbone_source == str(backbone_file)


def test_loading_never_unpickles(tmp_path: Path, backbone_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained(build_model(tiny_config(3), weights=str(backbone_file)))
    save_checkpoint(tmp_path / "ck", model)

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.ones(1, 3, 32, 32)).logits, model(torch.ones(1, 3, 32, 32)).logits, atol=0, rtol=0)


def test_bad_thresholds_are_refused(tmp_path: Path) -> None:
    model = AUFormer(tiny_config(2))
    with pytest.raises(ModelError, match="3 thresholds for 2 AUs"):
        save_checkpoint(tmp_path / "ck", model, thresholds=[0.5, 0.5, 0.5])
    with pytest.raises(ModelError, match=r"thresholds must lie in \[0, 1\]"):
        save_checkpoint(tmp_path / "ck", model, thresholds=[0.5, 1.5])
    assert not checkpoint_paths(tmp_path / "ck")[0].exists()


def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipped registry is valid (and honestly empty until a checkpoint is published).
    monkeypatch.delenv("AUCLI_MODELS", raising=False)
    assert default_registry_path().is_file()
    assert isinstance(load_registry(), dict)

    monkeypatch.setenv("AUCLI_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match=r"no registry entry named 'tiny'.*lists no checkpoints yet"):
        resolve_checkpoint("tiny")
    save_checkpoint(tmp_path / "tiny-5au", trained(AUFormer(tiny_config(5))))
    entry = register_checkpoint(tmp_path / "tiny-5au", "tiny", card="cards/tiny.md")
    assert entry.au_names == tuple(au_name(i) for i in range(1, 6)) and entry.backbone == "vit_base_patch16_224"
    assert resolve_checkpoint("tiny") == tmp_path / "tiny-5au.json"
    loaded, _ = load_checkpoint(resolve_checkpoint("tiny"))
    assert loaded.au_names == list(entry.au_names)
    with pytest.raises(ModelError, match="did you mean tiny"):
        resolve_checkpoint("tinny")
    data = (tmp_path / "tiny-5au.safetensors").read_bytes()
    (tmp_path / "tiny-5au.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelError, match="does not match its registered sha256"):
        resolve_checkpoint("tiny")
    (tmp_path / "tiny-5au.safetensors").unlink()
    with pytest.raises(ModelError, match=r"its weights file .*tiny-5au\.safetensors is not present"):
        resolve_checkpoint("tiny")


def test_a_checkpoint_made_on_another_machine_finds_the_embedded_backbone_here(tmp_path):
    from aucli.model.weights import resolve_backbone_weights

    cfg = ModelConfig(backbone="vit_tiny_patch16_224", backbone_overrides={"depth": 6, "patch_size": 8}, img_size=112,
                      backbone_weights="embedded:synthface", au_names=["AU1", "AU2", "AU12"])
    model = trained(build_model(cfg))
    save_checkpoint(tmp_path / "m", model)
    local = resolve_backbone_weights("embedded:synthface")
    meta_path = tmp_path / "m.json"
    meta = json.loads(meta_path.read_text())
    assert meta["backbone_source"] == local
    meta["backbone_source"] = "/elsewhere/site-packages/aucli/assets/synthface_vit_s112.safetensors"
    meta_path.write_text(json.dumps(meta))
    loaded, read = load_checkpoint(tmp_path / "m")
    assert read["backbone_source"] == local
    for name, tensor in model.trainable_state_dict().items():
        assert torch.equal(loaded.trainable_state_dict()[name], tensor)
    meta["backbone_sha256"] = "0" * 64  # another backbone file: the local copy must not stand in for it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not there"):
        load_checkpoint(tmp_path / "m")
