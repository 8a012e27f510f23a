"""A masked autoencoder (He et al., CVPR 2022) around a timm VisionTransformer encoder.

The encoder is a plain timm ``VisionTransformer`` built from a model name and keyword overrides,
exactly as AUFormer builds its backbone (:func:`aucli.model.backbone.backbone_kwargs`), so its
state dict loads into AUFormer unchanged. Pretraining reuses the encoder's own modules
(``patch_embed``, ``pos_embed``, ``cls_token``, ``norm_pre``, ``blocks``, ``norm``) on the visible
patches only; a light decoder (timm ``Block`` s of width ``decoder_dim``) reconstructs the masked
patches from the visible tokens and mask tokens.

Per image (P patches of p x p pixels, ``keep = round(P * (1 - mask_ratio))``)::

    tokens  = patch_embed(x) + pos[1:]                  (B, P, D)
    visible = tokens[keep_idx]                          (B, keep, D), cls token (+ pos[0]) in front
    latent  = norm(blocks(norm_pre(visible)))           (B, 1 + keep, D)
    decoded = decoder(mask tokens scattered with embed(latent) + decoder pos)   (B, 1 + P, Dd)
    pred    = linear(decoded)[:, 1:]                    (B, P, p * p * 3)
    loss    = mean over masked patches of mean((pred - normalised target patch)^2)

With ``norm_pix_loss`` every target patch is normalised by its own mean and variance (MAE's
choice, which sharpens the local detail the encoder has to keep). ``target="hog"`` predicts each
patch's histograms of oriented gradients instead of its pixels (:mod:`aucli.pretrain.hog`,
MaskFeat), and ``visible_weight`` > 0 adds the visible patches' targets to the loss with that
weight, so that every token, not only its context, has to describe its own patch. The position embeddings of
encoder and decoder are fixed 2-D sine-cosine tables (MAE); the encoder's is stored in its
``pos_embed`` parameter (frozen during pretraining), so the saved encoder carries it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aucli.errors import ModelError
from aucli.pretrain.hog import hog_dims, patch_hog

__all__ = ["MaskedAutoencoder", "sincos_pos_embed", "patchify", "random_keep", "build_encoder", "encoder_kwargs"]


def sincos_pos_embed(dim: int, grid: tuple[int, int], prefix_tokens: int = 1) -> Tensor:
    """Fixed 2-D sine-cosine position embedding ``(1, prefix_tokens + gh * gw, dim)``; prefix rows are 0.

    Half of the channels encode the row, half the column, each as sin and cos of the position times
    ``1 / 10000^(2k / (dim / 2))`` (MAE's table). ``dim`` must be a multiple of 4.
    """
    if dim % 4:
        raise ModelError(f"a 2-D sine-cosine position embedding needs a width divisible by 4, got {dim}")
    gh, gw = grid
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij")

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([encode(rows), encode(cols)], axis=1)  # (gh * gw, dim)
    table = np.concatenate([np.zeros((prefix_tokens, dim)), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


def patchify(images: Tensor, patch: int) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, H/p * W/p, p * p * 3)`` in row-major patch order (timm's token order)."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch * patch * c)


def random_keep(batch: int, n_patches: int, keep: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices ``(batch, keep)`` of the visible patches: a uniformly random subset per image, sorted."""
    noise = torch.rand(batch, n_patches, generator=generator)
    return noise.argsort(dim=1)[:, :keep].sort(dim=1).values


def encoder_kwargs(architecture: str, overrides: dict[str, Any], img_size: int) -> dict[str, Any]:
    """timm ``create_model`` kwargs of the encoder: exactly AUFormer's (no classifier, no dropout, the image size)."""
    from aucli.config import ModelConfig
    from aucli.model.backbone import backbone_kwargs

    return backbone_kwargs(ModelConfig(backbone=architecture, backbone_overrides=dict(overrides), img_size=img_size))


def build_encoder(architecture: str, overrides: dict[str, Any], img_size: int) -> nn.Module:
    """The timm VisionTransformer AUFormer will build for ``architecture`` + ``overrides`` at ``img_size`` (random init)."""
    import timm

    from aucli.model.backbone import check_backbone

    if not timm.is_model(architecture):
        raise ModelError(f"unknown timm architecture {architecture!r}; use a ViT name such as vit_tiny_patch16_224")
    try:
        vit = timm.create_model(architecture, pretrained=False, **encoder_kwargs(architecture, overrides, img_size))
    except TypeError as error:
        raise ModelError(f"timm could not build {architecture!r} with {overrides} at {img_size} px: {error}") from None
    check_backbone(vit, architecture)
    return vit


class MaskedAutoencoder(nn.Module):
    """A timm ViT encoder with an MAE decoder.

    Args:
        encoder: a timm VisionTransformer with a class token, no register tokens, a fixed patch grid
            and a learned ``pos_embed`` that covers the class token (``no_embed_class=False``), as
            ViT-B/16 has.
        decoder_dim, decoder_depth, decoder_heads: the decoder's width, number of blocks and heads.
        norm_pix_loss: normalise every target patch by its own mean and variance (pixel target).
        target: ``pixels`` (MAE) or ``hog`` (per-patch HOG with ``hog_cell`` px cells and ``hog_bins`` bins).
        visible_weight: weight of the visible patches in the loss (0: masked patches only, MAE's loss).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
        target: str = "pixels",
        hog_cell: int = 4,
        hog_bins: int = 9,
        visible_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if target not in ("pixels", "hog"):
            raise ModelError(f"the pretraining target must be pixels or hog, got {target!r}")
        from timm.models.vision_transformer import Block

        self._check(encoder)
        self.encoder = encoder
        self.patch = int(encoder.patch_embed.patch_size[0])
        self.grid = tuple(int(g) for g in encoder.patch_embed.grid_size)
        self.n_patches = self.grid[0] * self.grid[1]
        self.norm_pix_loss = norm_pix_loss
        self.target_kind, self.hog_cell, self.hog_bins = target, int(hog_cell), int(hog_bins)
        self.visible_weight = float(visible_weight)
        if target == "hog" and self.patch % self.hog_cell:
            raise ModelError(f"the HOG cell ({self.hog_cell} px) must divide the encoder's patch ({self.patch} px)")
        target_dims = hog_dims(self.patch, self.hog_cell, self.hog_bins) if target == "hog" else self.patch * self.patch * 3
        dim = int(encoder.embed_dim)
        with torch.no_grad():
            encoder.pos_embed.copy_(sincos_pos_embed(dim, self.grid))
        encoder.pos_embed.requires_grad_(False)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos", sincos_pos_embed(decoder_dim, self.grid), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=_layer_norm) for _ in range(decoder_depth)
        )
        self.decoder_norm = _layer_norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, target_dims)
        self._init_decoder()

    @staticmethod
    def _check(encoder: nn.Module) -> None:
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(encoder, VisionTransformer):
            raise ModelError(f"the MAE encoder must be a timm VisionTransformer, got {type(encoder).__name__}")
        problems = []
        if encoder.cls_token is None:
            problems.append("it has no class token")
        if int(encoder.num_prefix_tokens) != 1:
            problems.append(f"it has {encoder.num_prefix_tokens} prefix tokens (register tokens are not supported)")
        if encoder.pos_embed is None or getattr(encoder, "no_embed_class", False):
            problems.append("its position embedding does not cover the class token")
        if getattr(encoder, "dynamic_img_size", False):
            problems.append("it has a dynamic image size")
        if problems:
            raise ModelError("the MAE encoder must be a plain ViT like ViT-B/16: " + "; ".join(problems))

    def _init_decoder(self) -> None:
        torch.nn.init.normal_(self.mask_token, std=0.02)
        weight = self.encoder.patch_embed.proj.weight
        torch.nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        for module in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def keep_count(self, mask_ratio: float) -> int:
        """Visible patches per image at ``mask_ratio`` (at least one)."""
        return max(1, round(self.n_patches * (1.0 - mask_ratio)))

    def encode_visible(self, images: Tensor, keep_idx: Tensor) -> Tensor:
        """Encoder on the visible patches: ``(B, 3, H, W)``, ``(B, keep)`` -> ``(B, 1 + keep, D)`` after the final norm."""
        vit = self.encoder
        tokens = vit.patch_embed(images) + vit.pos_embed[:, 1:]
        dim = tokens.shape[-1]
        visible = torch.gather(tokens, 1, keep_idx.unsqueeze(-1).expand(-1, -1, dim))
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(images.shape[0], -1, -1)
        x = vit.norm_pre(torch.cat([cls, visible], dim=1))
        for block in vit.blocks:
            x = block(x)
        return vit.norm(x)

    def decode(self, latent: Tensor, keep_idx: Tensor) -> Tensor:
        """``(B, 1 + keep, D)`` -> the predicted target of every patch ``(B, P, target dims)``."""
        x = self.decoder_embed(latent)
        b, _, width = x.shape
        full = self.mask_token.to(x.dtype).expand(b, self.n_patches, width)
        full = full.scatter(1, keep_idx.unsqueeze(-1).expand(-1, -1, width), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos.to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def target(self, images: Tensor) -> Tensor:
        """The target ``(B, P, dims)``: pixels of every patch (normalised per patch with ``norm_pix_loss``) or their HOG."""
        if self.target_kind == "hog":
            return patch_hog(images, self.patch, cell=self.hog_cell, bins=self.hog_bins)
        target = patchify(images, self.patch)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def forward(self, images: Tensor, keep_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``images (B, 3, H, W)`` (normalised), ``keep_idx (B, keep)`` -> ``(loss, pred (B, P, target dims), mask (B, P))``.

        ``mask`` is 1 for masked (reconstructed) patches; the loss is the mean squared error over them,
        plus over the visible ones at ``visible_weight``.
        """
        latent = self.encode_visible(images, keep_idx)
        pred = self.decode(latent, keep_idx)
        mask = torch.ones(images.shape[0], self.n_patches, device=images.device)
        mask.scatter_(1, keep_idx, 0.0)
        per_patch = (pred.float() - self.target(images.float())).pow(2).mean(dim=-1)
        weights = mask + self.visible_weight * (1.0 - mask)
        loss = (per_patch * weights).sum() / weights.sum()
        return loss, pred, mask


_layer_norm = partial(nn.LayerNorm, eps=1e-6)
