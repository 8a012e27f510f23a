"""Every model aucli trains, and everything that builds, stores or names one.

- :mod:`aucli.model.auformer`: AUFormer (frozen timm ViT, MoKE expert groups, heads);
- :mod:`aucli.model.baselines`: the comparison methods (linear probe, AdaptFormer, LoRA, full);
- :mod:`aucli.model.methods`: the method registry, :func:`build_method_model` by name;
- :mod:`aucli.model.backbone`: building, loading and checking the timm ViT;
- :mod:`aucli.model.weights`: the backbone weight catalogue (embedded and registered backbones);
- :mod:`aucli.model.checkpoint`: checkpoint files of every method, written and read;
- :mod:`aucli.model.registry` (on :mod:`aucli.model.registry_file`): registered checkpoints by name;
- :mod:`aucli.model.summary`: what ``aucli info`` reports on a model.
"""

from aucli.model.auformer import AUFormer, AUFormerOutput, build_model
from aucli.model.methods import METHODS, build_method_model

__all__ = ["AUFormer", "AUFormerOutput", "build_model", "METHODS", "build_method_model"]
