"""Small reusable blocks: the MoKE expert group (grouped form) and AUFormer's heads."""

from aucli.nn.heads import ExpertHeads, MainHead, pool_tokens, pooled_width
from aucli.nn.moke import MoKEGroup, grouped_linear

__all__ = ["MoKEGroup", "grouped_linear", "MainHead", "ExpertHeads", "pool_tokens", "pooled_width"]
