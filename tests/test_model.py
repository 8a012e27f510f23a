"""AUFormer on timm ViTs: shapes, the frozen backbone, refused blocks, checkpointing, bf16, weights, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from aucli.aus import au_name
from aucli.config import ModelConfig
from aucli.errors import ModelError
from aucli.model import AUFormer, build_model
from aucli.model import backbone as backbone_module
from aucli.model.backbone import create_backbone, ensure_offline_when_unreachable, probe_host

TINY = dict(depth=2, embed_dim=32, num_heads=2, patch_size=8)


def tiny_config(n_aus: int = 5, **changes) -> ModelConfig:
    return ModelConfig(
        backbone="vit_base_patch16_224", backbone_overrides=dict(TINY), img_size=32, au_names=[au_name(i) for i in range(1, n_aus + 1)], **changes
    )


def randomise_up_projections(model: AUFormer, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in [*model.attn_experts, *model.mlp_experts]:
            group.up_weight.copy_(0.2 * torch.randn(group.up_weight.shape, generator=generator))
            group.up_bias.copy_(0.2 * torch.randn(group.up_bias.shape, generator=generator))


@pytest.mark.parametrize(("supervision", "n_supervised"), [("last", 1), ("all", 2), ("none", None)])
def test_tiny_forward_shapes(supervision: str, n_supervised: int | None) -> None:
    model = AUFormer(tiny_config(5, expert_supervision=supervision))
    out = model(torch.randn(3, 3, 32, 32))
    assert out.logits.shape == (3, 5)
    if n_supervised is None:
        assert out.expert_logits is None and len(model.expert_heads) == 0
    else:
        assert out.expert_logits.shape == (3, n_supervised, 5)
    assert model.data_config["input_size"] == (3, 32, 32)


def test_vit_base_architecture_runs() -> None:
    """ViT-B/16 (random weights), 12 AUs, batch 1: builds, runs, counts as documented."""
    torch.manual_seed(0)
    model = AUFormer(ModelConfig(backbone="vit_base_patch16_224", au_names="bp4d")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.logits.shape == (1, 12) and out.expert_logits.shape == (1, 1, 12)
    assert torch.isfinite(out.logits).all()
    summary = model.parameter_summary()
    assert summary["components"]["backbone"] == {"trainable": 0, "frozen": 85_798_656}
    assert summary["trainable"] == sum(p.numel() for p in model.trainable_parameters())
    assert len(model.attn_experts) == len(model.mlp_experts) == 12


def test_backbone_frozen_and_in_eval_mode_while_training() -> None:
    model = AUFormer(tiny_config(3)).train()
    randomise_up_projections(model)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and not any(m.training for m in model.backbone.modules())
    assert model.head.training and model.attn_experts[0].training
    # No dropout or drop-path can exist in it.
    assert all(not isinstance(m, torch.nn.Dropout) or m.p == 0 for m in model.backbone.modules())
    assert all(type(block.drop_path1).__name__ == "Identity" for block in model.backbone.blocks)
    out = model(torch.randn(2, 3, 32, 32))
    (out.logits.sum() + out.expert_logits.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())
    assert all(block.attn.fused_attn for block in model.backbone.blocks)


def test_same_output_in_train_and_eval_mode() -> None:
    """Nothing stochastic anywhere: training mode changes nothing in the function."""
    model = AUFormer(tiny_config(3))
    randomise_up_projections(model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        train_logits = model.train()(images).logits
        eval_logits = model.eval()(images).logits
    torch.testing.assert_close(train_logits, eval_logits)


def test_standardised_main_head() -> None:
    """head_norm=batch: pooled features standardised by batch statistics in training, by the running ones
    in eval mode and for a training batch of a single face."""
    model = AUFormer(tiny_config(3, head_pool="mean", head_norm="batch"))
    randomise_up_projections(model)
    seen: list[torch.Tensor] = []
    model.head.norm.register_forward_hook(lambda module, inputs, output: seen.append(output.detach()))
    images = torch.randn(6, 3, 32, 32)
    model.train()
    with torch.no_grad():
        model(images)
    standardised = seen[-1]
    torch.testing.assert_close(standardised.mean(0), torch.zeros(standardised.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardised.var(0, unbiased=False), torch.ones(standardised.shape[1]), atol=1e-2, rtol=0)  # eps 1e-5 against small variances
    assert int(model.head.norm.num_batches_tracked) == 1
    with torch.no_grad():
        single_train = model(images[:1]).logits
        single_eval = model.eval()(images[:1]).logits
    torch.testing.assert_close(single_train, single_eval)
    assert int(model.head.norm.num_batches_tracked) == 1, "a batch of one must not update the running statistics"


@pytest.mark.parametrize(
    ("name", "block"),
    [("vit_base_patch16_rpn_224", "ResPostBlock"), ("vit_base_patch16_xp_224", "ParallelScalingBlock")],
)
def test_non_standard_blocks_are_refused(name: str, block: str) -> None:
    cfg = ModelConfig(backbone=name, backbone_overrides=dict(TINY), img_size=32, head_pool="mean")
    with pytest.raises(ModelError) as error:
        AUFormer(cfg)
    assert str(error.value).startswith(f"{name} uses {block} blocks (block 0); AUFormer supports only timm's standard pre-norm Block")


def test_other_architectures_are_refused() -> None:
    with pytest.raises(ModelError, match="resnet18 is a timm ResNet, not a VisionTransformer"):
        create_backbone(ModelConfig(backbone="resnet18"))
    with pytest.raises(ModelError, match=r"unknown timm backbone 'vit_bse_patch16_224'; did you mean vit_base_patch16_224"):
        create_backbone(ModelConfig(backbone="vit_bse_patch16_224"))
    with pytest.raises(ModelError, match="needs a class token"):
        AUFormer(ModelConfig(backbone="vit_base_patch16_224", backbone_overrides=dict(TINY, class_token=False, global_pool="avg"), img_size=32))


@pytest.mark.parametrize("scope", ["block", "backbone"])
def test_gradient_checkpointing_gives_the_experts_the_same_gradients(scope: str) -> None:
    torch.manual_seed(0)
    model = AUFormer(tiny_config(4, expert_supervision="all"), checkpoint_scope=scope).train()
    randomise_up_projections(model)
    images = torch.randn(2, 3, 32, 32)
    calls = {"attn": 0, "experts": 0}
    model.backbone.blocks[-1].attn.register_forward_pre_hook(lambda *_: calls.__setitem__("attn", calls["attn"] + 1))
    model.attn_experts[-1].register_forward_pre_hook(lambda *_: calls.__setitem__("experts", calls["experts"] + 1))
    results, counts = [], []
    for enabled in (False, True):
        calls.update(attn=0, experts=0)
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(enabled)
        out = model(images)
        (out.logits.square().sum() + out.expert_logits.square().sum()).backward()
        results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
        counts.append(dict(calls))
    (plain_logits, plain_grads), (ckpt_logits, ckpt_grads) = results
    torch.testing.assert_close(ckpt_logits, plain_logits)
    # Without checkpointing each module of the last block runs once; with it the backward pass runs the
    # recomputed part again (block 0's attention is not recomputed: no gradient flows through it).
    # Pre-hooks count the calls: a recomputation stops early, once its saved tensors are back.
    assert counts[0] == {"attn": 1, "experts": 1}
    assert counts[1] == ({"attn": 2, "experts": 2} if scope == "block" else {"attn": 2, "experts": 1})
    assert ckpt_grads["attn_experts.0.down_weight"].abs().max() > 0  # the experts of the first block learn
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, msg=name, atol=1e-5, rtol=1e-5)


def test_checkpoint_scope_is_checked() -> None:
    with pytest.raises(ModelError, match="checkpoint_scope must be one of block, backbone"):
        AUFormer(tiny_config(2), checkpoint_scope="experts")  # type: ignore[arg-type]
    model = AUFormer(tiny_config(2))
    model.set_grad_checkpointing(True, scope="backbone")
    assert (model.grad_checkpointing, model.checkpoint_scope) == (True, "backbone")


def test_training_step_under_cpu_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = AUFormer(tiny_config(5)).train()
    randomise_up_projections(model)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    targets = (torch.rand(2, 5) < 0.5).float()
    before = model.attn_experts[0].down_weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
        assert out.logits.dtype == torch.bfloat16
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits.float(), targets)
        loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(out.expert_logits[:, -1].float(), targets)
    loss.backward()
    grads = [p.grad for p in model.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)
    optimizer.step()
    assert not torch.equal(model.attn_experts[0].down_weight, before)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, dict[str, Path]]:
    """A tiny timm ViT and its weights as .safetensors (no classifier) and .pth (with a 1000-class head)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(7)
    with_head = timm.create_model("vit_base_patch16_224", img_size=32, **TINY).eval()
    save_file({k: v.contiguous() for k, v in with_head.state_dict().items() if not k.startswith("head.")}, folder / "vit.safetensors")
    torch.save(with_head.state_dict(), folder / "vit.pth")
    return with_head, {"safetensors": folder / "vit.safetensors", "pth": folder / "vit.pth"}


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_local_weight_files_load(weight_files: tuple, kind: str) -> None:
    source, files = weight_files
    cfg = tiny_config(3, backbone_weights=str(files[kind]))
    model = build_model(cfg)
    assert model.backbone_source == str(files[kind])
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.forward_features(images), source.forward_features(images), atol=0, rtol=0)
        # zero up-projections: AUFormer's tokens are the pretrained ViT's
        torch.testing.assert_close(model.forward_features(images)[0], source.forward_features(images), atol=1e-6, rtol=1e-6)


def test_bad_weight_files_give_clear_errors(tmp_path: Path, weight_files: tuple) -> None:
    _, files = weight_files
    with pytest.raises(ModelError, match="backbone weight file not found"):
        build_model(tiny_config(), weights=str(tmp_path / "missing.safetensors"))
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelError, match=r"has suffix '\.txt'; expected one of \.safetensors, \.pth"):
        build_model(tiny_config(), weights=str(tmp_path / "weights.txt"))
    wrong = ModelConfig(backbone="vit_base_patch16_224", backbone_overrides=dict(TINY, depth=3), img_size=32)
    with pytest.raises(ModelError, match=r"The file must hold weights of this architecture"):
        build_model(wrong, weights=str(files["safetensors"]))
    import numpy as np

    np.savez(tmp_path / "not_jax.npz", a=np.zeros(3))
    with pytest.raises(ModelError, match="could not load .*not_jax.npz"):
        build_model(tiny_config(), weights=str(tmp_path / "not_jax.npz"))


def test_offline_missing_hub_weights_fail_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline with an empty cache: one clear error at once, without a single connection attempt."""
    import socket

    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked although it is offline")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ModelError) as error:
        build_model(ModelConfig())  # ViT-B/16 augreg_in21k from the hub
    message = str(error.value)
    assert message.startswith("the pretrained weights of 'vit_base_patch16_224.augreg_in21k' are not in the local cache")
    assert "HF_HUB_OFFLINE=1" in message and "--backbone-weights PATH" in message


def test_no_network_switches_the_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # behind a proxy, the proxy is probed
    probed = []
    monkeypatch.setattr(backbone_module, "probe_host", lambda host, port, timeout: probed.append((host, port)) or False)
    assert ensure_offline_when_unreachable() is True
    assert probed == [("proxy.invalid", 3128)]
    assert constants.HF_HUB_OFFLINE is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_probe_host_answers_false_for_a_closed_port_and_does_not_wait_for_a_hanging_connect(monkeypatch) -> None:
    import socket
    import threading

    with socket.socket() as server:  # a port that is certainly closed: bound, never listening
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert probe_host("127.0.0.1", port, timeout=0.5) is False

    # A connection that never completes (a hanging DNS lookup or SYN): probe_host gives up after its
    # timeout while the attempt is still blocked, and answers False.
    release = threading.Event()
    threading.Timer(60.0, release.set).start()  # a safety valve: the attempt ends one day in any case

    def hanging_connect(address, timeout=None):
        release.wait()
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    assert probe_host("example.invalid", 443, timeout=0.2) is False
    assert not release.is_set()  # it did not wait for the attempt
    release.set()


def test_hub_weights_from_the_local_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub name offline loads from the Hugging Face cache (here a tiny stand-in), strictly."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    torch.manual_seed(5)
    source = timm.create_model("vit_base_patch16_224", img_size=32, num_classes=21843, **TINY).eval()
    repo = tmp_path / "models--timm--vit_base_patch16_224.augreg_in21k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, snapshot / "model.safetensors")

    cfg = ModelConfig(backbone="vit_base_patch16_224.augreg_in21k", backbone_overrides=dict(TINY), img_size=32, au_names="1,2")
    model = build_model(cfg)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.forward_features(images), source.forward_features(images), atol=0, rtol=0)
    assert model.backbone_source == "hub" and isinstance(model.backbone.head, torch.nn.Identity)
    assert model.data_config["mean"] == (0.5, 0.5, 0.5)  # augreg normalisation

    shallower = ModelConfig.from_dict({**cfg.to_dict(), "backbone_overrides": dict(TINY, depth=1)})
    with pytest.raises(ModelError, match=r"do not fit it with the overrides \(depth=1, .*Unexpected key\(s\)"):
        build_model(shallower)
