"""The AUFormer model: frozen timm ViT backbone, MoKE expert groups, heads, checkpoints, registry."""

from aucli.model.auformer import AUFormer, AUFormerOutput, build_model

__all__ = ["AUFormer", "AUFormerOutput", "build_model"]
