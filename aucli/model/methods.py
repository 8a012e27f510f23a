"""The method registry: every model aucli trains, by the name a recipe gives it (``train.method``).

``auformer`` is :class:`aucli.model.AUFormer`; ``linear``, ``adaptformer``, ``lora`` and ``full``
are the comparison methods of :mod:`aucli.model.baselines`, on the same frozen timm ViT. Each
entry builds the method's model around a backbone that is already built with its weights, so
that every method reads its backbone the same way (:func:`build_method_model`). The names are the
recipe schema's (:data:`aucli.config.Method`); a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aucli.config import BaselineConfig, ModelConfig
from aucli.errors import ModelError
from aucli.model.auformer import AUFormer
from aucli.model.backbone import create_backbone, resolve_backbone_source
from aucli.model.baselines import BASELINES, BaselineModel

__all__ = ["METHODS", "MethodBuilder", "build_method_model"]

#: ``(model config, baseline settings, built backbone, its weight source) -> the method's model``.
MethodBuilder = Callable[[ModelConfig, BaselineConfig, nn.Module, str], nn.Module]


def _auformer(cfg: ModelConfig, baseline: BaselineConfig, backbone: nn.Module, source: str) -> nn.Module:
    return AUFormer(cfg, backbone, backbone_source=source)


def _baseline(method: str) -> MethodBuilder:
    def build(cfg: ModelConfig, baseline: BaselineConfig, backbone: nn.Module, source: str) -> nn.Module:
        return BaselineModel(cfg, baseline, method, backbone, backbone_source=source)

    return build


#: method name -> how its model is built around the backbone.
METHODS: dict[str, MethodBuilder] = {"auformer": _auformer, **{name: _baseline(name) for name in BASELINES}}


def build_method_model(
    cfg: ModelConfig,
    baseline: BaselineConfig,
    method: str,
    *,
    weights: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """The model of ``method`` with backbone ``weights`` ("hub", "random", a file; None: the config's).

    ``device="meta"`` builds it without memory or weights (parameter counts).
    """
    builder = METHODS.get(method)
    if builder is None:
        raise ModelError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    source = resolve_backbone_source(cfg, weights)
    backbone = create_backbone(cfg, weights=source, device=device)
    return builder(cfg, baseline, backbone, source)
