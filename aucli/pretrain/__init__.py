"""Pretraining a small ViT on synthetic faces (``aucli pretrain``), and the embedded backbone it ships.

- :func:`pretrain`: a masked autoencoder on faces rendered by :mod:`aucli.synth`, aligned as
  ``aucli preprocess`` aligns them; resumable; saves the encoder with timm's state-dict keys and a
  model card (:mod:`aucli.pretrain.trainer`).
- :func:`resolve_backbone_weights`: ``embedded:synthface`` (the copy inside the package) or a
  registered backbone name -> a weight file path (:mod:`aucli.pretrain.weights`).
- :func:`probe_encoders`: a quick AU linear probe of frozen encoders (:mod:`aucli.pretrain.probe`).
"""

from aucli.pretrain.config import PretrainConfig, load_pretrain_config
from aucli.pretrain.trainer import PretrainResult, build_mae, encoder_normalisation, pretrain
from aucli.pretrain.weights import (
    EMBEDDED_PREFIX,
    EmbeddedBackbone,
    embedded_backbone,
    embedded_backbones,
    install_backbone,
    read_backbone_card,
    resolve_backbone_weights,
)

__all__ = [
    "PretrainConfig",
    "load_pretrain_config",
    "PretrainResult",
    "pretrain",
    "build_mae",
    "encoder_normalisation",
    "EMBEDDED_PREFIX",
    "EmbeddedBackbone",
    "embedded_backbone",
    "embedded_backbones",
    "install_backbone",
    "read_backbone_card",
    "resolve_backbone_weights",
]
