"""``PretrainConfig``: everything that decides what ``aucli pretrain`` learns (a typed, validated section).

The encoder fields (``architecture``, ``overrides``, ``img_size``) are the three values a recipe's
``model:`` section needs to rebuild the same ViT in AUFormer (``backbone``, ``backbone_overrides``,
``img_size``). The defaults make the synthetic-world backbone ``synthface-vit-s112``: timm's
``vit_tiny_patch16_224`` (width 192, 3 heads) with patch 8 and depth 6 at 112 px, a 14 x 14 token
grid as ViT-B/16 has at 224 px.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aucli.config import Section, build_section, merge_dicts, option, recipe_data
from aucli.errors import UsageError

__all__ = ["PretrainConfig", "load_pretrain_config", "RUNTIME_KEYS"]

#: Fields that may change when a run is resumed (they do not change the encoder).
RUNTIME_KEYS = ("eval_every", "save_every", "log_every", "probe_identities", "probe_frames")


@dataclass
class PretrainConfig(Section):
    """A masked-autoencoder pretraining run on rendered synthetic faces (no AU labels)."""

    architecture: str = option("vit_tiny_patch16_224", "timm model name of the encoder (AUFormer's model.backbone)")
    overrides: dict[str, Any] = option(
        default_factory=lambda: {"patch_size": 8, "depth": 6},
        help="timm create_model overrides (AUFormer's model.backbone_overrides)",
    )
    img_size: int = option(112, "encoder input size (AUFormer's model.img_size)", min=16, max=1024)
    resize: int | None = option(
        None, "side of the stored face crop; null: round(img_size * 256 / 224), as the training recipe", min=16, max=2048
    )
    identities: int = option(400, "pretraining identities (each a fresh random synthetic subject)", min=1)
    frames_per_identity: int = option(
        24, "faces rendered per identity (random expressions, poses, two recordings)", min=1, max=250
    )
    val_identities: int = option(8, "held-out identities whose masked reconstruction loss is tracked", min=1)
    frame_size: int = option(224, "rendered frame size (video framing, as aucli synth --size)", min=64, max=1024)
    mask_ratio: float = option(0.75, "share of patches hidden from the encoder", min=0.05, max=0.95)
    decoder_dim: int = option(128, "decoder width", min=8, max=4096)
    decoder_depth: int = option(2, "decoder blocks", min=1, max=32)
    decoder_heads: int = option(4, "decoder attention heads", min=1, max=64)
    norm_pix_loss: bool = option(True, "reconstruct patches normalised by their own mean and variance (MAE)")
    target: Literal["pixels", "hog"] = option(
        "pixels", "what the decoder predicts per patch: pixels (MAE) or hog, oriented-gradient histograms (MaskFeat)"
    )
    hog_cell: int = option(4, "HOG cell side in pixels (must divide the patch size)", min=1, max=64)
    hog_bins: int = option(9, "HOG orientation bins over 0-180 degrees", min=2, max=36)
    visible_weight: float = option(0.0, "loss weight of the visible patches (0: masked patches only, as MAE)", min=0.0, max=10.0)
    steps: int = option(1200, "optimiser steps", min=1)
    batch_size: int = option(32, "faces per step", min=1, max=65536)
    lr: float = option(1.5e-3, "peak AdamW learning rate", min=0.0, max=10.0)
    min_lr_ratio: float = option(0.05, "the cosine decays to lr x this", min=0.0, max=1.0)
    warmup_steps: int = option(80, "linear warm-up steps", min=0)
    weight_decay: float = option(0.05, "AdamW weight decay (not on biases, norms, tokens)", min=0.0, max=10.0)
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW betas (MAE's)")
    grad_clip: float = option(1.0, "clip the global gradient norm (0: off)", min=0.0)
    hflip: float = option(0.5, "horizontal flip probability (the training recipe's augmentation)", min=0.0, max=1.0)
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter (the training recipe's)", min=0.0, max=1.0)
    seed: int = option(0, "seed of identities, faces, order, augmentation, masks and initialisation", min=0)
    precision: Literal["auto", "bf16", "fp32"] = option("auto", "auto: bf16 autocast on GPU, fp32 on CPU; or bf16, fp32")
    encoder_dtype: Literal["float16", "float32"] = option(
        "float16", "dtype of the saved encoder (float16 halves the file; the encoder is rounded to it before the probe)"
    )
    eval_every: int = option(100, "steps between validation losses", min=1)
    save_every: int = option(50, "steps between saved resumable states", min=1)
    log_every: int = option(10, "steps between metrics lines", min=1)
    probe_identities: int = option(24, "identities of the AU linear probe after training (0: no probe)", min=0)
    probe_frames: int = option(20, "faces per probe identity", min=1, max=250)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("img_size", "num_classes", "pretrained", "pretrained_cfg_overlay"):
            if key in self.overrides:
                raise UsageError(f"overrides.{key} is set by aucli pretrain itself; remove it")
        if self.decoder_dim % 4 or self.decoder_dim % self.decoder_heads:
            raise UsageError(
                f"decoder_dim ({self.decoder_dim}) must be a multiple of 4 and of decoder_heads ({self.decoder_heads})"
            )

    @property
    def crop_size(self) -> int:
        """Side of the stored (cached) face: ``resize`` or ``round(img_size * 256 / 224)``."""
        side = int(self.resize) if self.resize is not None else round(self.img_size * 256 / 224)
        if side < self.img_size:
            raise UsageError(f"resize ({side}) must be at least img_size ({self.img_size})")
        return side

    def model_config(self) -> dict[str, Any]:
        """The ``model:`` recipe keys that rebuild this encoder in AUFormer."""
        return {"backbone": self.architecture, "backbone_overrides": dict(self.overrides), "img_size": self.img_size}


def load_pretrain_config(
    overrides: Mapping[str, Any] | Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> PretrainConfig:
    """Defaults < ``base`` (e.g. a saved run's config) < ``overrides`` (``["steps=100", "overrides.depth=2"]``
    or a mapping) < ``flags`` (``aucli pretrain``'s dedicated flags; None: not given), as every
    command resolves its settings (:func:`aucli.config.recipe_data`).

    Mappings merge key by key, so ``overrides.depth=2`` keeps the default ``overrides.patch_size``.
    """
    data = recipe_data(merge_dicts(PretrainConfig().to_dict(), dict(base or {})), overrides, flags)
    return build_section(PretrainConfig, data, "")
