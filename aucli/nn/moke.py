"""Mixture-of-Knowledge Experts (MoKE), AUFormer (Yuan et al., ECCV 2024), in grouped form.

One :class:`MoKEGroup` holds the N AU-specific experts that sit beside one sub-layer (attention or
MLP) of one transformer block. Expert i, bottleneck width d, on tokens ``y`` (B, T, D):

1. ``h = GELU(W_i y + c_i)``: 1x1 down-projection D -> d;
2. ``M = conv3x3(h)`` on the patch grid (d, H, W);
3. multi-receptive-field operator: ``K_mrf = P [conv3x3_r1(M); conv3x3_r3(M); conv3x3_r5(M)]``
   (dilated 3x3 convs, concatenated to 3d, 1x1 conv back to d);
4. context-aware operator: ``Q, K, V = 1x1 convs of M``; ``K_ca = softmax(Q K^T / sqrt(d)) V``
   over the grid positions;
5. ``g = GELU(M + K_mrf + K_ca)``; the expert's knowledge is ``K_i = U_i g + b_i`` (d -> D).

Prefix tokens (cls, registers) pass through the same convolutions as 1x1 maps, as Convpass does:
only the centre tap of each 3x3 kernel touches them, and the context-aware operator over a single
position returns its value, ``K_ca = V``.

The grouped form computes all N experts at once, never looping over experts:

- down-projection: one matmul D -> N*d;
- 3x3 and dilated convs: grouped convs (``groups=N``) on a channels-last view of the tokens; the
  MRF's 1x1 fusion is folded into the dilated kernels (``P_r W_r``, an exact re-parametrisation
  computed from the stored parameters on every call, so gradients reach both);
- context-aware operator: one ``scaled_dot_product_attention`` call with N heads of width d;
- up-projection and the mean over experts: one matmul N*d -> D scaled by s/N.

Collaboration: the next group's expert i reads ``Y + K_i`` (``Y`` its Norm output, ``K_i`` the
partner expert's unscaled knowledge). Its pre-activation splits exactly:
``W_i (Y + U_i g_i + b_i) + c_i = W_i Y + c_i + (W_i U_i) g_i + W_i b_i``, so the partner's
full-width output is never built: a per-expert d x d map ``W_i U_i`` applied to the partner's
width-d activation ``g_i``, plus the constant ``W_i b_i``. The reference in ``bench/benchlib/moke_reference.py`` builds
``Y + K_i`` literally, one module per expert, and the tests prove that both agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MoKEGroup", "grouped_linear"]


def grouped_linear(x: Tensor, weight: Tensor) -> Tensor:
    """Per-expert linear maps: ``x (..., N, i)`` and ``weight (N, o, i)`` -> ``(..., N, o)``."""
    return torch.einsum("...ni,noi->...no", x, weight)


class MoKEGroup(nn.Module):
    """N experts of width d beside one sub-layer, stored and computed as grouped tensors.

    Parameters are stored per expert (leading dimension N), so that expert i's weights are
    ``param[i]``; the forward pass reshapes them into grouped form.

    Args:
        dim: token width D of the backbone.
        n_experts: N, one expert per AU.
        bottleneck: expert width d.
        dilations: dilations of the multi-receptive-field operator's 3x3 convs.
    """

    def __init__(
        self,
        dim: int,
        n_experts: int,
        bottleneck: int = 8,
        dilations: Sequence[int] = (1, 3, 5),
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n, d, r = n_experts, bottleneck, len(dilations)
        dd = {"device": device, "dtype": dtype}
        self.dim, self.n_experts, self.bottleneck, self.dilations = dim, n, d, tuple(int(x) for x in dilations)
        self.down_weight = nn.Parameter(torch.empty(n, d, dim, **dd))
        self.down_bias = nn.Parameter(torch.empty(n, d, **dd))
        self.conv_weight = nn.Parameter(torch.empty(n, d, d, 3, 3, **dd))
        self.conv_bias = nn.Parameter(torch.empty(n, d, **dd))
        self.mrf_weight = nn.Parameter(torch.empty(r, n, d, d, 3, 3, **dd))
        self.mrf_bias = nn.Parameter(torch.empty(r, n, d, **dd))
        #: the MRF's 1x1 conv over the concatenation [dilation 1; dilation 3; dilation 5] (r*d -> d)
        self.fuse_weight = nn.Parameter(torch.empty(n, d, r * d, **dd))
        self.fuse_bias = nn.Parameter(torch.empty(n, d, **dd))
        #: Q, K, V 1x1 convs of the context-aware operator
        self.qkv_weight = nn.Parameter(torch.empty(n, 3, d, d, **dd))
        self.qkv_bias = nn.Parameter(torch.empty(n, 3, d, **dd))
        self.up_weight = nn.Parameter(torch.empty(n, dim, d, **dd))
        self.up_bias = nn.Parameter(torch.empty(n, dim, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default Linear/Conv2d init per expert (uniform +-1/sqrt(fan_in)); up-projections zero.

        Zero up-projections make every expert's knowledge 0 at the start, so AUFormer begins as
        exactly the frozen ViT.
        """
        d = self.bottleneck
        for param, fan_in in (
            (self.down_weight, self.dim),
            (self.down_bias, self.dim),
            (self.conv_weight, d * 9),
            (self.conv_bias, d * 9),
            (self.mrf_weight, d * 9),
            (self.mrf_bias, d * 9),
            (self.fuse_weight, d * len(self.dilations)),
            (self.fuse_bias, d * len(self.dilations)),
            (self.qkv_weight, d),
            (self.qkv_bias, d),
        ):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(param, -bound, bound)
        nn.init.zeros_(self.up_weight)
        nn.init.zeros_(self.up_bias)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_experts={self.n_experts}, bottleneck={self.bottleneck}, dilations={self.dilations}"

    # ---------------------------------------------------------------- folded weights
    def _mrf_kernels(self) -> tuple[Tensor, Tensor]:
        """The MRF operator and the skip ``M + K_mrf`` as one kernel per dilation.

        ``kernels[r, i] = P_{i,r} W_{i,r}`` (the 1x1 fusion folded into the dilated kernels), plus the
        identity on the centre tap of the first dilation (every dilation's centre tap reads the same
        position, so ``M`` itself folds in there). Returns ``kernels (R, N, d, d, 3, 3)`` and the
        total bias ``(N, d)`` (``fuse_bias + sum_r P_{i,r} mrf_bias_{r,i}``), so that
        ``M + K_mrf = sum_r conv_r(M; kernels[r]) + bias``.
        """
        n, d, r = self.n_experts, self.bottleneck, len(self.dilations)
        fuse = self.fuse_weight.view(n, d, r, d)
        kernels = torch.einsum("norp,rnpcij->rnocij", fuse, self.mrf_weight)
        centre = torch.zeros(3, 3, device=kernels.device, dtype=kernels.dtype)
        centre[1, 1] = 1.0
        identity = torch.eye(d, device=kernels.device, dtype=kernels.dtype)[:, :, None, None] * centre
        kernels = torch.cat([(kernels[0] + identity).unsqueeze(0), kernels[1:]])
        bias = self.fuse_bias + torch.einsum("norp,rnp->no", fuse, self.mrf_bias)
        return kernels, bias

    def coupling(self, partner: MoKEGroup) -> tuple[Tensor, Tensor]:
        """The partner's knowledge seen through this group's down-projection.

        Returns ``maps (N, d, d) = W_i U_i`` (partner's ``U_i``) and ``offset (N, d) = W_i b_i``.
        """
        maps = torch.einsum("nkc,ncj->nkj", self.down_weight, partner.up_weight)
        offset = torch.einsum("nkc,nc->nk", self.down_weight, partner.up_bias)
        return maps, offset

    def _coupling_matrix(self, partner: MoKEGroup) -> tuple[Tensor, Tensor]:
        """:meth:`coupling` as one block-diagonal ``(N*d, N*d)`` matrix (expert-major) and a flat offset.

        One dense matmul over all experts replaces N small ones and their permutes; the zero blocks
        cost ``N*d`` multiply-adds per token, nothing beside the backbone's ``12 D^2``.
        """
        n, d = self.n_experts, self.bottleneck
        maps, offset = self.coupling(partner)
        eye = torch.eye(n, device=maps.device, dtype=maps.dtype)
        return torch.einsum("nkj,nm->nkmj", maps, eye).reshape(n * d, n * d), offset.reshape(n * d)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        y: Tensor,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        partner: MoKEGroup | None = None,
        partner_activation: Tensor | None = None,
    ) -> Tensor:
        """Every expert's width-d activation ``g`` (before its up-projection).

        Args:
            y: the sub-layer's Norm output, (B, T, D) with T = num_prefix_tokens + H * W.
            grid: (H, W) of the patch tokens.
            num_prefix_tokens: cls/register tokens in front of the patches.
            partner: the group whose knowledge K_i expert i also reads (collaboration), or None.
            partner_activation: that group's ``g``, (B, T, N * d).

        Returns:
            ``g`` (B, T, N * d), expert-major (expert i owns channels ``i*d:(i+1)*d``). Turn it into
            knowledge with :meth:`mean_knowledge` or pass it to the next group.
        """
        tokens = y.shape[1]
        height, width = grid
        prefix = num_prefix_tokens
        if tokens != prefix + height * width:
            raise ValueError(f"expected {prefix} + {height}x{width} tokens, got {tokens}")
        h = F.gelu(self._down(y, partner, partner_activation))
        kernels, mrf_bias = self._mrf_kernels()
        g_patches = self._patch_activation(h[:, prefix:], grid, kernels, mrf_bias)
        if prefix == 0:
            return g_patches
        return torch.cat([self._prefix_activation(h[:, :prefix], kernels, mrf_bias), g_patches], dim=1)

    def _down(self, y: Tensor, partner: MoKEGroup | None, partner_activation: Tensor | None) -> Tensor:
        """Pre-activation of the down-projection, ``W_i (Y + K_i) + c_i`` (B, T, N*d): at most two matmuls."""
        n, d = self.n_experts, self.bottleneck
        weight = self.down_weight.reshape(n * d, self.dim)
        if partner is None:
            return F.linear(y, weight, self.down_bias.reshape(n * d))
        if partner_activation is None:
            raise ValueError("partner_activation is required with a partner group")
        maps, offset = self._coupling_matrix(partner)  # W_i U_i (block-diagonal) and W_i b_i
        h = F.linear(y, weight, self.down_bias.reshape(n * d) + offset)
        flat = torch.addmm(h.reshape(-1, n * d), partner_activation.reshape(-1, n * d), maps.t())
        return flat.view(h.shape)

    def _patch_activation(self, h: Tensor, grid: tuple[int, int], kernels: Tensor, mrf_bias: Tensor) -> Tensor:
        """``g`` of the patch tokens, (B, HW, N*d), from their activated down-projection ``h`` (B, HW, N*d).

        Four grouped convs (the 3x3 conv, one per dilation with the fusion, the skip and the bias
        folded in) and one grouped 1x1 conv for Q, K, V, all on a channels-last view of the tokens
        (no copies), then one SDPA call with N heads of width d.
        """
        batch = h.shape[0]
        n, d = self.n_experts, self.bottleneck
        height, width = grid
        grid_in = h.reshape(batch, height, width, n * d).permute(0, 3, 1, 2)
        m = F.conv2d(grid_in, self.conv_weight.reshape(n * d, d, 3, 3), self.conv_bias.reshape(n * d), padding=1, groups=n)
        z = F.conv2d(m, kernels[0].reshape(n * d, d, 3, 3), mrf_bias.reshape(n * d), padding=self.dilations[0], dilation=self.dilations[0], groups=n)
        for index in range(1, len(self.dilations)):
            dilation = self.dilations[index]
            z = z + F.conv2d(m, kernels[index].reshape(n * d, d, 3, 3), None, padding=dilation, dilation=dilation, groups=n)
        qkv = F.conv2d(m, self.qkv_weight.reshape(n * 3 * d, d, 1, 1), self.qkv_bias.reshape(n * 3 * d), groups=n)
        qkv = qkv.permute(0, 2, 3, 1).reshape(batch, height * width, n, 3 * d).transpose(1, 2)
        q, k, v = qkv.split(d, dim=-1)  # (B, N, HW, d) each
        context = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (B, HW, N, d)
        z = z.permute(0, 2, 3, 1).reshape(batch, height * width, n, d)
        return F.gelu(z + context).reshape(batch, height * width, n * d)

    def _prefix_activation(self, h: Tensor, kernels: Tensor, mrf_bias: Tensor) -> Tensor:
        """``g`` of the prefix tokens (B, P, N*d) as 1x1 maps: centre taps only, and attention over
        one position returns V, so ``M + K_mrf + K_ca`` is one per-expert linear map of ``M``."""
        batch, prefix = h.shape[:2]
        n, d = self.n_experts, self.bottleneck
        m = grouped_linear(h.reshape(batch, prefix, n, d), self.conv_weight[..., 1, 1]) + self.conv_bias
        weight = kernels[..., 1, 1].sum(0) + self.qkv_weight[:, 2]  # (N, d, d): skip, MRF and V
        return F.gelu(grouped_linear(m, weight) + (mrf_bias + self.qkv_bias[:, 2])).reshape(batch, prefix, n * d)

    def mean_knowledge(self, g: Tensor, scale: float = 1.0) -> Tensor:
        """``scale * mean_i K_i`` (B, T, D) from ``g`` (B, T, N*d): one matmul N*d -> D."""
        n, d = self.n_experts, self.bottleneck
        weight = self.up_weight.permute(1, 0, 2).reshape(self.dim, n * d) * (scale / n)
        bias = self.up_bias.mean(0) * scale
        return F.linear(g, weight, bias)

    def knowledge(self, g: Tensor) -> Tensor:
        """Every expert's own knowledge ``K_i = U_i g_i + b_i``, (B, T, N, D). For inspection only:
        the forward pass never builds these N full-width tensors."""
        n, d = self.n_experts, self.bottleneck
        return torch.einsum("btnj,ncj->btnc", g.view(*g.shape[:-1], n, d), self.up_weight) + self.up_bias
