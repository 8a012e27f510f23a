"""The comparison methods, on the same timm ViT backbone, data, loss and schedule as AUFormer.

- ``linear``: the frozen backbone and a linear AU head on its pooled final tokens (a linear probe).
- ``adaptformer``: AdaptFormer (Chen et al., NeurIPS 2022): beside every block's MLP a bottleneck
  adapter ``s * up(ReLU(down(x')))`` reads the residual stream ``x'`` before ``norm2``; ReLU, scale
  ``s = 0.1``, bottleneck 64, up-projection zero-initialised (training starts from the frozen ViT).
- ``lora``: LoRA (Hu et al., ICLR 2022) through ``peft`` on every block's fused ``qkv`` projection
  (rank 8); ``lora_B`` starts at zero.
- ``full``: full fine-tuning of the backbone (its learning rate scaled by ``optim.backbone_lr_scale``)
  and the head.

Every method's model returns :class:`aucli.model.AUFormerOutput` (``expert_logits`` None), and
exposes ``au_names``, ``cfg``, ``data_config``, ``trainable_parameters()``,
``trainable_state_dict()`` and ``parameter_summary()`` like :class:`aucli.model.AUFormer`. They are
built by name through the method registry, :mod:`aucli.model.methods`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from aucli.config import BaselineConfig, ModelConfig
from aucli.errors import ModelError
from aucli.model.auformer import AUFormerOutput, checkpoint_tensors
from aucli.model.backbone import backbone_data_config, check_backbone, freeze_backbone
from aucli.nn import MainHead

__all__ = ["BASELINES", "Adapter", "BaselineModel"]

BASELINES = ("linear", "adaptformer", "lora", "full")


class Adapter(nn.Module):
    """AdaptFormer's bottleneck: ``scale * up(ReLU(down(x)))``, ``(B, T, D) -> (B, T, D)``; zero-initialised up."""

    def __init__(self, dim: int, bottleneck: int, scale: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = float(scale)
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(torch.relu(self.down(x))) * self.scale


class BaselineModel(nn.Module):
    """A timm ViT adapted by one of :data:`BASELINES`, with a main AU head on its final tokens.

    Args:
        cfg: the model configuration (backbone, AUs, ``head_pool``, ``head_hidden``, checkpointing).
        baseline: adapter and LoRA settings.
        method: ``linear``, ``adaptformer``, ``lora`` or ``full``.
        backbone: the built timm ViT (weights loaded); it is frozen here except for ``full``.
        backbone_source: where its weights came from: "hub", a weight file, or "random".
    """

    def __init__(self, cfg: ModelConfig, baseline: BaselineConfig, method: str, backbone: nn.Module, *, backbone_source: str = "random") -> None:
        super().__init__()
        if method not in BASELINES:
            raise ModelError(f"unknown baseline method {method!r}; choose one of {', '.join(BASELINES)}")
        check_backbone(backbone, cfg.backbone)
        freeze_backbone(backbone)
        self.cfg = cfg
        self.method = method
        self.backbone_source = backbone_source
        self.au_names: list[str] = list(cfg.au_names)
        self.num_prefix_tokens = int(backbone.num_prefix_tokens)
        self.grad_checkpointing = bool(cfg.grad_checkpointing)
        dim, depth = int(backbone.embed_dim), len(backbone.blocks)
        if cfg.head_pool in ("cls", "both") and getattr(backbone, "cls_token", None) is None:
            raise ModelError(f"model.head_pool={cfg.head_pool!r} needs a class token, and {cfg.backbone} has none; use mean")
        reference = next(backbone.parameters())
        if method == "full":
            backbone.requires_grad_(True)
        elif method == "lora":
            backbone = _inject_lora(backbone, baseline)
        self.backbone = backbone
        with torch.device(reference.device):
            self.adapters = (
                nn.ModuleList(Adapter(dim, baseline.adapter_bottleneck, baseline.adapter_scale) for _ in range(depth))
                if method == "adaptformer"
                else None
            )
            self.head = MainHead(dim, len(self.au_names), cfg.head_pool, cfg.head_hidden, cfg.head_norm)
        self.to(reference.dtype)
        if self.grad_checkpointing and method != "adaptformer":
            backbone.set_grad_checkpointing(True)

    @property
    def data_config(self) -> dict[str, Any]:
        return backbone_data_config(self.backbone)

    def train(self, mode: bool = True) -> BaselineModel:
        """Train mode; a frozen (or LoRA-adapted) backbone stays in eval mode, as in AUFormer."""
        super().train(mode)
        if self.method != "full":
            self.backbone.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        if self.method != "adaptformer":
            self.backbone.set_grad_checkpointing(enable)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores: :func:`aucli.model.auformer.checkpoint_tensors`."""
        return checkpoint_tensors(self)

    def parameter_summary(self) -> dict[str, Any]:
        backbone_trainable = {n for n, p in self.backbone.named_parameters() if p.requires_grad}
        lora = sum(p.numel() for n, p in self.backbone.named_parameters() if "lora_" in n)
        components = {
            "backbone": (
                sum(p.numel() for n, p in self.backbone.named_parameters() if n in backbone_trainable and "lora_" not in n),
                sum(p.numel() for n, p in self.backbone.named_parameters() if n not in backbone_trainable),
            ),
            "lora": (lora, 0),
            "adapters": (sum(p.numel() for p in self.adapters.parameters()) if self.adapters is not None else 0, 0),
            "main_head": (sum(p.numel() for p in self.head.parameters()), 0),
        }
        summary: dict[str, Any] = {"components": {k: {"trainable": t, "frozen": f} for k, (t, f) in components.items()}}
        trainable = sum(t for t, _ in components.values())
        frozen = sum(f for _, f in components.values())
        summary.update(trainable=trainable, frozen=frozen, total=trainable + frozen)
        summary["trainable_percent"] = 100.0 * trainable / max(trainable + frozen, 1)
        return summary

    def _adapted_block(self, index: int, x: Tensor) -> Tensor:
        block = self.backbone.blocks[index]
        x = x + block.drop_path1(block.ls1(block.attn(block.norm1(x))))
        return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x)))) + self.adapters[index](x)

    def forward_features(self, images: Tensor) -> Tensor:
        """``images (B, 3, H, W)`` -> final normed tokens ``(B, T, D)``."""
        vit = self.backbone
        if self.adapters is None:
            return vit.fc_norm(vit.forward_features(images))
        x = vit.patch_embed(images)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        for index in range(len(vit.blocks)):
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self._adapted_block, index, x, use_reentrant=False)
            else:
                x = self._adapted_block(index, x)
        return vit.fc_norm(vit.norm(x))

    def forward(self, images: Tensor) -> AUFormerOutput:
        return AUFormerOutput(logits=self.head(self.forward_features(images), self.num_prefix_tokens), expert_logits=None)


def _inject_lora(backbone: nn.Module, baseline: BaselineConfig) -> nn.Module:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ModelError("the lora method needs the peft package: pip install peft") from None
    config = LoraConfig(r=baseline.lora_r, lora_alpha=baseline.lora_alpha, lora_dropout=baseline.lora_dropout, target_modules=["qkv"])
    backbone = inject_adapter_in_model(config, backbone)
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return backbone
