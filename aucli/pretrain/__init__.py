"""Pretraining a small ViT on synthetic faces (``aucli pretrain``), and the embedded backbone it ships.

- :func:`pretrain`: a masked autoencoder on faces rendered by :mod:`aucli.synth`, aligned as
  ``aucli preprocess`` aligns them; resumable; saves the encoder with timm's state-dict keys and a
  model card (:mod:`aucli.pretrain.trainer`).
- :func:`install_backbone`: publish a finished run as the backbone that ships in the package
  (:mod:`aucli.pretrain.publish`); resolving ``embedded:synthface`` or a registered backbone name to
  its file is the model's business (:func:`aucli.model.weights.resolve_backbone_weights`).
- :func:`probe_encoders`: a quick AU linear probe of frozen encoders (:mod:`aucli.pretrain.probe`).
"""

from aucli.pretrain.config import PretrainConfig, load_pretrain_config
from aucli.pretrain.trainer import PretrainResult, build_mae, encoder_normalisation, pretrain
from aucli.pretrain.publish import install_backbone

__all__ = [
    "PretrainConfig",
    "load_pretrain_config",
    "PretrainResult",
    "pretrain",
    "build_mae",
    "encoder_normalisation",
    "install_backbone",
]
