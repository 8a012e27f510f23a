"""AUFormer: Vision Transformers are Parameter-Efficient Facial Action Unit Detectors.

Yuan et al., ECCV 2024 (arXiv 2403.04697). A frozen timm ViT; beside every block's attention and MLP
sub-layers a group of N AU-specific Mixture-of-Knowledge Experts (:class:`aucli.nn.MoKEGroup`)
whose scaled mean output joins the residual stream; the attention and MLP experts of the same AU
collaborate across blocks; a main head on the final tokens and per-AU expert heads on the MLP
experts' knowledge (the figure's L'_MDWA).

Per block l (Y: a Norm output, K: an expert's unscaled knowledge, s: ``cfg.moke.scale``)::

    attention experts i:  read Norm1(X_l) + K_mlp[l-1, i]     (Norm1(X_l) alone in block 0)
    X' = X_l + Attn(Norm1 X_l) + s * mean_i K_attn[l, i]
    MLP experts i:        read Norm2(X') + K_attn[l, i]
    X_{l+1} = X' + MLP(Norm2 X') + s * mean_i K_mlp[l, i]

The blocks of ``vit.blocks`` are walked here, reusing each block's norm1/attn/ls1/drop_path1/
norm2/mlp/ls2/drop_path2: ``Block.forward`` is never called (its signature changed across timm
1.0.x), and only timm's standard pre-norm ``Block`` is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from aucli.config import ModelConfig
from aucli.errors import ModelError
from aucli.model.backbone import backbone_data_config, check_backbone, create_backbone, freeze_backbone, resolve_backbone_source
from aucli.nn import ExpertHeads, MainHead, MoKEGroup

__all__ = ["AUFormerOutput", "AUFormer", "CheckpointScope", "build_model", "checkpoint_tensors", "supervised_block_indices"]

#: What gradient checkpointing recomputes in the backward pass: each whole ``block`` (backbone
#: sub-layers and experts), or only the frozen ``backbone`` sub-layers (attention and MLP), keeping
#: the experts' activations.
CheckpointScope = Literal["block", "backbone"]
CHECKPOINT_SCOPES: tuple[str, ...] = ("block", "backbone")


@dataclass
class AUFormerOutput:
    """What :meth:`AUFormer.forward` returns.

    Attributes:
        logits: main head logits, (B, N).
        expert_logits: expert-head logits of the supervised blocks, (B, n_supervised, N), in block
            order; None when ``expert_supervision`` is ``none``.
    """

    logits: Tensor
    expert_logits: Tensor | None


def checkpoint_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The trainable tensors and the main head's running statistics (``model.head``), by name: what a
    checkpoint of AUFormer or a baseline method stores."""
    state = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    state.update({f"head.{name}": buffer.detach() for name, buffer in model.head.named_buffers()})
    return state


def supervised_block_indices(mode: str, depth: int) -> tuple[int, ...]:
    """Blocks whose MLP experts get AU heads: ``last`` -> (depth-1,), ``all`` -> every block, ``none`` -> ()."""
    choices = {"last": (depth - 1,), "all": tuple(range(depth)), "none": ()}
    if mode not in choices:
        raise ModelError(f"expert_supervision must be one of last, all, none (found {mode!r})")
    return choices[mode]


class AUFormer(nn.Module):
    """AUFormer on a frozen timm VisionTransformer.

    Args:
        cfg: the model configuration.
        backbone: an already built timm ViT (e.g. with pretrained weights, see :func:`build_model`);
            None builds ``cfg.backbone`` with random weights.
        backbone_source: where the backbone's weights came from: "hub", a weight file's path, or
            "random" (recorded in checkpoints; a "random" backbone is saved with the checkpoint).
        checkpoint_scope: what ``cfg.grad_checkpointing`` (or :meth:`set_grad_checkpointing`)
            recomputes in the backward pass: ``"block"``, every whole block, experts included (least
            memory); ``"backbone"``, only the frozen attention and MLP sub-layers, whose activations
            are most of the memory and whose recomputation costs one backbone forward, while the
            experts keep theirs (measured in docs/speed.md).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        backbone: nn.Module | None = None,
        *,
        backbone_source: str = "random",
        checkpoint_scope: CheckpointScope = "block",
    ) -> None:
        super().__init__()
        vit = backbone if backbone is not None else create_backbone(cfg, weights="random")
        check_backbone(vit, cfg.backbone)
        freeze_backbone(vit)
        self.cfg = cfg
        self.backbone_source = backbone_source if backbone is not None else "random"
        self.au_names: list[str] = list(cfg.au_names)
        self.backbone = vit
        self.num_prefix_tokens: int = int(vit.num_prefix_tokens)
        self.scale = float(cfg.moke.scale)
        self.grad_checkpointing = bool(cfg.grad_checkpointing)
        self.checkpoint_scope: CheckpointScope = _check_scope(checkpoint_scope)
        has_cls = getattr(vit, "cls_token", None) is not None
        for key, pool in (("head_pool", cfg.head_pool), ("expert_pool", cfg.expert_pool)):
            if pool in ("cls", "both") and not has_cls:
                raise ModelError(f"model.{key}={pool!r} needs a class token, and {cfg.backbone} has none; use mean")

        dim, depth, n_aus = int(vit.embed_dim), len(vit.blocks), len(self.au_names)
        reference = next(vit.parameters())
        with torch.device(reference.device):
            groups = dict(dim=dim, n_experts=n_aus, bottleneck=cfg.moke.bottleneck, dilations=cfg.moke.dilations, dtype=reference.dtype)
            self.attn_experts = nn.ModuleList(MoKEGroup(**groups) for _ in range(depth))
            self.mlp_experts = nn.ModuleList(MoKEGroup(**groups) for _ in range(depth))
            self.head = MainHead(dim, n_aus, cfg.head_pool, cfg.head_hidden, cfg.head_norm).to(reference.dtype)
            self.supervised_blocks = supervised_block_indices(cfg.expert_supervision, depth)
            self.expert_heads = nn.ModuleDict(
                {str(index): ExpertHeads(dim, n_aus, cfg.expert_pool).to(reference.dtype) for index in self.supervised_blocks}
            )

    # ------------------------------------------------------------------ properties
    @property
    def data_config(self) -> dict[str, Any]:
        """Preprocessing the backbone expects (:func:`aucli.model.backbone.backbone_data_config`)."""
        return backbone_data_config(self.backbone)

    @property
    def depth(self) -> int:
        return len(self.backbone.blocks)

    def train(self, mode: bool = True) -> AUFormer:
        """Train mode for the experts and heads; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True, scope: CheckpointScope | None = None) -> None:
        """Recompute activations in the backward pass (non-reentrant): each whole block (``scope="block"``)
        or only the frozen backbone sub-layers (``"backbone"``); None keeps the current scope."""
        self.grad_checkpointing = enable
        if scope is not None:
            self.checkpoint_scope = _check_scope(scope)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Experts and heads: what the optimiser updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores: :func:`checkpoint_tensors`."""
        return checkpoint_tensors(self)

    def parameter_summary(self) -> dict[str, Any]:
        """Trainable and frozen parameter counts per component, totals and the trainable percentage."""
        components = {
            "backbone": self.backbone,
            "attention_experts": self.attn_experts,
            "mlp_experts": self.mlp_experts,
            "main_head": self.head,
            "expert_heads": self.expert_heads,
        }
        summary: dict[str, Any] = {"components": {}}
        for name, module in components.items():
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
            summary["components"][name] = {"trainable": trainable, "frozen": frozen}
        trainable = sum(c["trainable"] for c in summary["components"].values())
        frozen = sum(c["frozen"] for c in summary["components"].values())
        summary.update(trainable=trainable, frozen=frozen, total=trainable + frozen)
        summary["trainable_percent"] = 100.0 * trainable / max(trainable + frozen, 1)
        return summary

    # ------------------------------------------------------------------ forward
    def _block(self, index: int, x: Tensor, g_previous: Tensor | None, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Block ``index`` with its two expert groups: ``(x, g of the previous MLP group)`` -> ``(x, g_mlp)``."""
        block = self.backbone.blocks[index]
        attn_group, mlp_group = self.attn_experts[index], self.mlp_experts[index]
        prefix = self.num_prefix_tokens
        partner = self.mlp_experts[index - 1] if index > 0 else None

        recompute = self.grad_checkpointing and self.checkpoint_scope == "backbone" and torch.is_grad_enabled()

        y = block.norm1(x)
        g_attn = attn_group(y, grid, prefix, partner, g_previous)
        attended = checkpoint(_attention_branch, block, y, use_reentrant=False) if recompute else _attention_branch(block, y)
        x = x + attended + attn_group.mean_knowledge(g_attn, self.scale)
        y = block.norm2(x)
        g_mlp = mlp_group(y, grid, prefix, attn_group, g_attn)
        mixed = checkpoint(_mlp_branch, block, y, use_reentrant=False) if recompute else _mlp_branch(block, y)
        x = x + mixed + mlp_group.mean_knowledge(g_mlp, self.scale)
        return x, g_mlp

    def forward_features(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``images (B, 3, H, W)`` -> final normed tokens ``(B, T, D)`` and the supervised blocks'
        expert logits (a list of ``(B, N)``)."""
        vit = self.backbone
        x = vit.patch_embed(images)
        if x.ndim == 4:  # NHWC from a dynamic-size patch embedding
            grid = (int(x.shape[1]), int(x.shape[2]))
        else:
            grid = (int(vit.patch_embed.grid_size[0]), int(vit.patch_embed.grid_size[1]))
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))

        g_mlp: Tensor | None = None
        expert_logits: list[Tensor] = []
        for index in range(len(vit.blocks)):
            if self.grad_checkpointing and self.checkpoint_scope == "block" and torch.is_grad_enabled():
                x, g_mlp = checkpoint(self._block, index, x, g_mlp, grid, use_reentrant=False)
            else:
                x, g_mlp = self._block(index, x, g_mlp, grid)
            if index in self.supervised_blocks:
                expert_logits.append(self.expert_heads[str(index)](g_mlp, self.mlp_experts[index], self.num_prefix_tokens))
        # timm ViTs normalise with `norm`, or (global-average-pool models) with `fc_norm` after pooling;
        # one of the two is an Identity. Both are applied per token here.
        x = vit.fc_norm(vit.norm(x))
        return x, expert_logits

    def forward_head(self, tokens: Tensor) -> Tensor:
        """Final tokens ``(B, T, D)`` -> main logits ``(B, N)``."""
        return self.head(tokens, self.num_prefix_tokens)

    def forward(self, images: Tensor) -> AUFormerOutput:
        """``images (B, 3, H, W)``, normalised as :attr:`data_config` says -> :class:`AUFormerOutput`."""
        tokens, expert_logits = self.forward_features(images)
        logits = self.forward_head(tokens)
        return AUFormerOutput(logits=logits, expert_logits=torch.stack(expert_logits, dim=1) if expert_logits else None)


def _attention_branch(block: nn.Module, y: Tensor) -> Tensor:
    """The frozen attention sub-layer of a timm ``Block`` on its Norm output."""
    return block.drop_path1(block.ls1(block.attn(y)))


def _mlp_branch(block: nn.Module, y: Tensor) -> Tensor:
    """The frozen MLP sub-layer of a timm ``Block`` on its Norm output."""
    return block.drop_path2(block.ls2(block.mlp(y)))


def _check_scope(scope: str) -> CheckpointScope:
    if scope not in CHECKPOINT_SCOPES:
        raise ModelError(f"checkpoint_scope must be one of {', '.join(CHECKPOINT_SCOPES)} (found {scope!r})")
    return scope  # type: ignore[return-value]


def build_model(cfg: ModelConfig, *, weights: str | None = None, device: torch.device | str | None = None) -> AUFormer:
    """AUFormer with backbone weights.

    Args:
        cfg: the model configuration.
        weights: ``"hub"`` (timm's pretrained weights of ``cfg.backbone``), ``"random"``, or a local
            weight file; None: ``cfg.backbone_weights`` when set, else ``"hub"``.
        device: where to build it; ``"meta"`` builds without memory or weights (parameter counts).
    """
    source = resolve_backbone_source(cfg, weights)
    backbone = create_backbone(cfg, weights=source, device=device)
    return AUFormer(cfg, backbone, backbone_source=source)
