"""AUFormer's heads: the main AU head on the final tokens and the per-AU expert heads.

Pooling (``"cls"``, ``"mean"``, ``"both"``) is a configuration option because the paper's figure does
not fix it: ``cls`` takes the class token, ``mean`` averages the patch tokens (prefix tokens left
out), ``both`` concatenates the two.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from aucli.nn.moke import MoKEGroup

__all__ = ["Pool", "Norm", "FeatureStandardizer", "pool_tokens", "pooled_width", "MainHead", "ExpertHeads"]

Pool = Literal["cls", "mean", "both"]
Norm = Literal["none", "batch"]


def pooled_width(pool: Pool) -> int:
    """How many D-wide vectors a pooling yields: 2 for ``both``, else 1."""
    return 2 if pool == "both" else 1


def pool_tokens(tokens: Tensor, num_prefix_tokens: int, pool: Pool) -> Tensor:
    """``tokens (..., T, C)`` -> ``(..., P, C)``, P = :func:`pooled_width` (cls first for ``both``).

    The class token is the first prefix token (timm's order: cls, then registers, then patches).
    """
    parts = []
    if pool in ("cls", "both"):
        if num_prefix_tokens < 1:
            raise ValueError("cls pooling needs a class token; this backbone has none")
        parts.append(tokens[..., 0:1, :])
    if pool in ("mean", "both"):
        parts.append(tokens[..., num_prefix_tokens:, :].mean(dim=-2, keepdim=True))
    if not parts:
        raise ValueError(f"unknown pooling {pool!r}; expected cls, mean or both")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


class FeatureStandardizer(nn.BatchNorm1d):
    """Per-feature standardisation of pooled features, without affine parameters (BatchNorm1d).

    The linear-probe protocol of MAE (He et al., 2022): frozen ViT features vary little between
    images next to their per-channel offsets, so a linear head on raw features needs weights far
    from its initialisation; standardised, it learns at ordinary rates. Batch statistics while
    training, running statistics in eval mode, and also for a training batch of one face (where
    batch statistics do not exist).
    """

    def __init__(self, features: int) -> None:
        super().__init__(features, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


class MainHead(nn.Module):
    """Pooled final tokens -> N AU logits: one linear layer, or an MLP with one hidden layer.

    Args:
        dim: token width D.
        n_aus: N.
        pool: ``cls``, ``mean`` or ``both`` (input width 2D).
        hidden: hidden width of the MLP; 0 for a single linear layer.
        norm: ``batch`` standardises the pooled features first (:class:`FeatureStandardizer`);
            ``none`` feeds them as they are.
    """

    def __init__(self, dim: int, n_aus: int, pool: Pool = "cls", hidden: int = 0, norm: Norm = "none") -> None:
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"unknown head norm {norm!r}; expected none or batch")
        self.pool = pool
        in_features = dim * pooled_width(pool)
        self.norm: nn.Module = FeatureStandardizer(in_features) if norm == "batch" else nn.Identity()
        if hidden > 0:
            self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, n_aus))
        else:
            self.mlp = nn.Sequential(nn.Linear(in_features, n_aus))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, tokens: Tensor, num_prefix_tokens: int) -> Tensor:
        """``tokens (B, T, D)`` (after the backbone's final norm) -> logits ``(B, N)``."""
        return self.mlp(self.norm(pool_tokens(tokens, num_prefix_tokens, self.pool).flatten(1)))


class ExpertHeads(nn.Module):
    """One linear head per AU on its own expert's pooled knowledge: ``logit_i = h_i . pool(K_i) + a_i``.

    Pooling is linear and ``K_i = U_i g_i + b_i``, so the head is evaluated on the width-d activation:
    ``logit_i = (U_i^T h_i) . pool(g_i) + h_i . b_i + a_i``; the N full-width ``K_i`` are never built.
    """

    def __init__(self, dim: int, n_aus: int, pool: Pool = "mean") -> None:
        super().__init__()
        self.pool = pool
        self.weight = nn.Parameter(torch.empty(n_aus, pooled_width(pool), dim))
        self.bias = nn.Parameter(torch.zeros(n_aus))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, g: Tensor, group: MoKEGroup, num_prefix_tokens: int) -> Tensor:
        """``g (B, T, N*d)`` of ``group`` -> the experts' AU logits ``(B, N)``."""
        n, d = group.n_experts, group.bottleneck
        pooled = pool_tokens(g.view(*g.shape[:2], n, d).transpose(1, 2), num_prefix_tokens, self.pool)  # (B, N, P, d)
        through_up = torch.einsum("npc,ncj->npj", self.weight, group.up_weight)  # (N, P, d)
        constant = torch.einsum("npc,nc->n", self.weight, group.up_bias) + self.bias  # (N,)
        return torch.einsum("bnpj,npj->bn", pooled, through_up) + constant
