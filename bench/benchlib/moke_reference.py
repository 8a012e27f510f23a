"""The readable reference: AUFormer written literally, one module and one Python call per expert.

Slow by design (2 x L x N expert modules, each with ordinary ``nn.Conv2d`` layers and a hand-written
softmax attention). It builds every expert's input the way the paper's figure draws it, Norm output
plus the partner expert's full-width knowledge ``Y + K_i``, pools every expert's full-width output
for its head, and averages the N knowledge tensors with ``torch.stack(...).mean(0)``.

Used by ``tests/test_moke_equivalence.py`` (the grouped :class:`aucli.nn.MoKEGroup` must agree with
it on outputs and gradients) and by ``bench/moke_overhead.py`` (the naive form's cost). Never used
for training or inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aucli.nn.moke import MoKEGroup

__all__ = ["ReferenceExpert", "ReferenceAUFormer"]


class ReferenceExpert(nn.Module):
    """One MoKE expert with its own layers: down, 3x3 conv, MRF (dilated convs, concat, 1x1), CA (Q/K/V), up."""

    def __init__(self, dim: int, bottleneck: int, dilations: Sequence[int]) -> None:
        super().__init__()
        d = bottleneck
        self.bottleneck = d
        self.down = nn.Linear(dim, d)
        self.conv = nn.Conv2d(d, d, 3, padding=1)
        self.mrf = nn.ModuleList(nn.Conv2d(d, d, 3, padding=r, dilation=r) for r in dilations)
        self.fuse = nn.Conv2d(len(dilations) * d, d, 1)
        self.query = nn.Conv2d(d, d, 1)
        self.key = nn.Conv2d(d, d, 1)
        self.value = nn.Conv2d(d, d, 1)
        self.up = nn.Linear(d, dim)

    @torch.no_grad()
    def copy_from(self, group: MoKEGroup, i: int) -> None:
        """Take expert ``i``'s weights from a grouped MoKE group."""
        d = self.bottleneck
        self.down.weight.copy_(group.down_weight[i])
        self.down.bias.copy_(group.down_bias[i])
        self.conv.weight.copy_(group.conv_weight[i])
        self.conv.bias.copy_(group.conv_bias[i])
        for r, conv in enumerate(self.mrf):
            conv.weight.copy_(group.mrf_weight[r, i])
            conv.bias.copy_(group.mrf_bias[r, i])
        self.fuse.weight.copy_(group.fuse_weight[i].reshape(d, -1, 1, 1))
        self.fuse.bias.copy_(group.fuse_bias[i])
        for j, conv in enumerate((self.query, self.key, self.value)):
            conv.weight.copy_(group.qkv_weight[i, j].reshape(d, d, 1, 1))
            conv.bias.copy_(group.qkv_bias[i, j])
        self.up.weight.copy_(group.up_weight[i])
        self.up.bias.copy_(group.up_bias[i])

    def operators(self, m: Tensor) -> Tensor:
        """``GELU(M + K_mrf + K_ca)`` for a map ``m (B, d, H, W)``."""
        batch, d, height, width = m.shape
        k_mrf = self.fuse(torch.cat([conv(m) for conv in self.mrf], dim=1))
        q = self.query(m).flatten(2).transpose(1, 2)  # (B, HW, d)
        k = self.key(m).flatten(2).transpose(1, 2)
        v = self.value(m).flatten(2).transpose(1, 2)
        correlation = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)  # (B, HW, HW)
        k_ca = (correlation @ v).transpose(1, 2).reshape(batch, d, height, width)
        return F.gelu(m + k_mrf + k_ca)

    def forward(self, x: Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> Tensor:
        """The expert's knowledge K (B, T, D) for its input tokens ``x (B, T, D)``."""
        batch, tokens, _ = x.shape
        d, prefix = self.bottleneck, num_prefix_tokens
        height, width = grid
        h = F.gelu(self.down(x))
        patches = h[:, prefix:].transpose(1, 2).reshape(batch, d, height, width)
        g_patches = self.operators(self.conv(patches)).flatten(2).transpose(1, 2)
        parts = [g_patches]
        if prefix:
            # Each prefix token is its own 1x1 map, through the very same layers (Convpass).
            prefix_maps = h[:, :prefix].reshape(batch * prefix, d, 1, 1)
            g_prefix = self.operators(self.conv(prefix_maps)).reshape(batch, prefix, d)
            parts.insert(0, g_prefix)
        return self.up(torch.cat(parts, dim=1))


def _pool(tokens: Tensor, prefix: int, pool: str) -> Tensor:
    cls = tokens[:, 0]
    mean = tokens[:, prefix:].mean(dim=1)
    return {"cls": cls, "mean": mean, "both": torch.cat([cls, mean], dim=-1)}[pool]


class ReferenceAUFormer(nn.Module):
    """The loop-per-expert AUFormer, weights copied from a grouped :class:`aucli.model.AUFormer`.

    It shares the grouped model's frozen backbone and main-head layers (they are not experts) and
    holds its own expert modules and per-AU expert heads.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cfg = model.cfg
        dim, depth, n = int(model.backbone.embed_dim), model.depth, len(model.au_names)
        self.grouped = [model]  # a list, so that the grouped model is not registered as a submodule
        self.scale = model.scale
        self.prefix = model.num_prefix_tokens
        self.head_pool, self.expert_pool = cfg.head_pool, cfg.expert_pool
        self.supervised_blocks = model.supervised_blocks
        dtype, device = next(model.parameters()).dtype, next(model.parameters()).device

        def experts(groups: nn.ModuleList) -> nn.ModuleList:
            layers = nn.ModuleList()
            for group in groups:
                row = nn.ModuleList(ReferenceExpert(dim, cfg.moke.bottleneck, cfg.moke.dilations).to(device, dtype) for _ in range(n))
                for i, expert in enumerate(row):
                    expert.copy_from(group, i)
                layers.append(row)
            return layers

        self.attn_experts = experts(model.attn_experts)
        self.mlp_experts = experts(model.mlp_experts)
        self.expert_heads = nn.ModuleDict()
        for index in self.supervised_blocks:
            grouped_heads = model.expert_heads[str(index)]
            heads = nn.ModuleList(nn.Linear(grouped_heads.weight[i].numel(), 1, device=device, dtype=dtype) for i in range(n))
            with torch.no_grad():
                for i, head in enumerate(heads):
                    head.weight.copy_(grouped_heads.weight[i].reshape(1, -1))
                    head.bias.copy_(grouped_heads.bias[i : i + 1])
            self.expert_heads[str(index)] = heads

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """``images (B, 3, H, W)`` -> (logits (B, N), expert logits (B, n_supervised, N) or None)."""
        model = self.grouped[0]
        vit = model.backbone
        x = vit.patch_embed(images)
        grid = tuple(vit.patch_embed.grid_size)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        prefix = self.prefix
        k_mlp_previous: list[Tensor] | None = None
        expert_logits = []
        for index, block in enumerate(vit.blocks):
            y = block.norm1(x)
            k_attn = []
            for i, expert in enumerate(self.attn_experts[index]):
                expert_input = y if k_mlp_previous is None else y + k_mlp_previous[i]
                k_attn.append(expert(expert_input, grid, prefix))
            x = x + block.drop_path1(block.ls1(block.attn(y))) + self.scale * torch.stack(k_attn).mean(0)
            y = block.norm2(x)
            k_mlp = [expert(y + k_attn[i], grid, prefix) for i, expert in enumerate(self.mlp_experts[index])]
            x = x + block.drop_path2(block.ls2(block.mlp(y))) + self.scale * torch.stack(k_mlp).mean(0)
            if index in self.supervised_blocks:
                heads = self.expert_heads[str(index)]
                expert_logits.append(torch.cat([head(_pool(k_mlp[i], prefix, self.expert_pool)) for i, head in enumerate(heads)], dim=1))
            k_mlp_previous = k_mlp
        x = vit.fc_norm(vit.norm(x))
        logits = model.head.mlp(model.head.norm(_pool(x, prefix, self.head_pool)))
        return logits, (torch.stack(expert_logits, dim=1) if expert_logits else None)

    def grouped_gradients(self) -> dict[str, Tensor]:
        """The reference's expert and expert-head gradients rearranged into the grouped model's
        parameter names and layouts, for comparison with ``model.named_parameters()``."""
        grads: dict[str, Tensor] = {}

        def grad(param: Tensor) -> Tensor:
            return param.grad if param.grad is not None else torch.zeros_like(param)

        for kind, rows in (("attn_experts", self.attn_experts), ("mlp_experts", self.mlp_experts)):
            for index, row in enumerate(rows):
                d = row[0].bottleneck
                prefix = f"{kind}.{index}."
                grads[prefix + "down_weight"] = torch.stack([grad(e.down.weight) for e in row])
                grads[prefix + "down_bias"] = torch.stack([grad(e.down.bias) for e in row])
                grads[prefix + "conv_weight"] = torch.stack([grad(e.conv.weight) for e in row])
                grads[prefix + "conv_bias"] = torch.stack([grad(e.conv.bias) for e in row])
                grads[prefix + "mrf_weight"] = torch.stack([torch.stack([grad(c.weight) for c in e.mrf]) for e in row], dim=1)
                grads[prefix + "mrf_bias"] = torch.stack([torch.stack([grad(c.bias) for c in e.mrf]) for e in row], dim=1)
                grads[prefix + "fuse_weight"] = torch.stack([grad(e.fuse.weight).reshape(d, -1) for e in row])
                grads[prefix + "fuse_bias"] = torch.stack([grad(e.fuse.bias) for e in row])
                grads[prefix + "qkv_weight"] = torch.stack(
                    [torch.stack([grad(c.weight).reshape(d, d) for c in (e.query, e.key, e.value)]) for e in row]
                )
                grads[prefix + "qkv_bias"] = torch.stack([torch.stack([grad(c.bias) for c in (e.query, e.key, e.value)]) for e in row])
                grads[prefix + "up_weight"] = torch.stack([grad(e.up.weight) for e in row])
                grads[prefix + "up_bias"] = torch.stack([grad(e.up.bias) for e in row])
        for index, heads in self.expert_heads.items():
            shape = self.grouped[0].expert_heads[index].weight.shape  # (N, P, D)
            grads[f"expert_heads.{index}.weight"] = torch.stack([grad(h.weight).reshape(-1) for h in heads]).reshape(shape)
            grads[f"expert_heads.{index}.bias"] = torch.cat([grad(h.bias) for h in heads])
        return grads
