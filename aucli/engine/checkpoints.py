"""Checkpoints of every training method, in the project's one format (``aucli-checkpoint-1``).

The format is defined in :mod:`aucli.model.checkpoint` (AUFormer's model-level API):
``NAME.safetensors`` holds the trainable tensors (AUFormer: experts and heads; LoRA: the LoRA
matrices and the head; AdaptFormer: adapters and head; full fine-tuning: the whole backbone and the
head), plus the frozen backbone itself when it came from neither a file nor the hub (random
weights), so the checkpoint alone rebuilds the same function; ``NAME.json`` holds the method, AU
names, thresholds, the resolved recipe, the backbone source (and the weight file's sha256), the
data config, parameter counts, the training summary and an optional calibration.

:func:`save_model_checkpoint` writes any method's model; :func:`load_model_checkpoint` rebuilds any
method's checkpoint (AUFormer through :func:`aucli.model.checkpoint.load_checkpoint`). Loading
never unpickles anything.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.config import Recipe
from aucli.errors import ModelError
from aucli.engine.baselines import build_method_model
from aucli.engine.runs import load_tensors, save_tensors
from aucli.fileio import atomic_write_json, json_safe
from aucli.model.checkpoint import CHECKPOINT_FORMAT, FORMAT_VERSION, checkpoint_paths, file_sha256, read_checkpoint_metadata

__all__ = ["CHECKPOINT_FORMAT", "LoadedCheckpoint", "checkpoint_paths", "save_model_checkpoint", "load_model_checkpoint", "read_checkpoint_meta"]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_model_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    recipe: Recipe,
    thresholds: Sequence[float] | np.ndarray,
    backbone_source: str | None = None,
    training: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<path>.safetensors`` then ``<path>.json`` (each atomically); returns the JSON path.

    ``backbone_source``: "hub", a weight file or "random" (default: the model's ``backbone_source``).
    """
    from aucli import __version__

    model = unwrap(model)
    backbone_source = backbone_source or str(getattr(model, "backbone_source", "random"))
    weights_path, meta_path = checkpoint_paths(path)
    thresholds = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    if len(thresholds) != len(model.au_names):
        raise ModelError(f"{len(thresholds)} thresholds for {len(model.au_names)} AUs")
    tensors = dict(model.trainable_state_dict())
    # Parameters outside the backbone that were kept frozen (experts while only the heads were
    # fine-tuned) are part of the function all the same.
    for name, parameter in model.named_parameters():
        if not name.startswith("backbone."):
            tensors.setdefault(name, parameter.detach())
    backbone_in_checkpoint = backbone_source == "random"
    if backbone_in_checkpoint:
        for name, tensor in model.backbone.state_dict().items():
            tensors.setdefault(f"backbone.{name}", tensor)
    method = getattr(model, "method", "auformer")
    save_tensors(weights_path, tensors, {"format": CHECKPOINT_FORMAT, "method": method})
    from_file = not backbone_in_checkpoint and backbone_source != "hub" and Path(backbone_source).is_file()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "au_names": list(model.au_names),
        "thresholds": thresholds,
        "recipe": recipe.to_dict(),
        "backbone_source": backbone_source,
        "backbone_sha256": file_sha256(backbone_source) if from_file else None,
        "backbone_in_checkpoint": backbone_in_checkpoint,
        "weights_file": weights_path.name,
        "data_config": dict(model.data_config),
        "parameters": {k: v for k, v in model.parameter_summary().items() if k != "components"},
        "training": dict(training or {}),
        "calibration": dict(calibration) if calibration else None,
        "extra": dict(extra or {}),
        "aucli_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"aucli {__version__}",
    }
    atomic_write_json(meta_path, json_safe(meta))
    return meta_path


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, in eval mode, with what came with it."""

    model: nn.Module
    meta: dict[str, Any]
    recipe: Recipe
    thresholds: np.ndarray
    path: Path
    au_names: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.meta["method"])

    @property
    def data_config(self) -> dict[str, Any]:
        return dict(self.meta["data_config"])


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's JSON, checked (:func:`aucli.model.checkpoint.read_checkpoint_metadata`)."""
    return read_checkpoint_metadata(path)


def load_model_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", backbone_weights: str | None = None
) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint of any method and load its weights.

    Args:
        path: ``NAME.safetensors``, ``NAME.json`` or ``NAME``.
        device: where the model goes.
        backbone_weights: a backbone weight file to use instead of the one recorded (moved files).
    """
    weights_path, _ = checkpoint_paths(path)
    meta = read_checkpoint_meta(path)
    recipe = Recipe.from_dict(meta["recipe"])
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    if meta["method"] == "auformer":
        from aucli.model.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path, device=device, backbone_weights=backbone_weights)
        return LoadedCheckpoint(model=model, meta=meta, recipe=recipe, thresholds=thresholds, path=weights_path, au_names=list(meta["au_names"]))
    if meta.get("backbone_in_checkpoint"):
        source = "random"
    else:
        source = backbone_weights or meta.get("backbone_source") or "hub"
        if source not in ("hub", "random"):
            if not Path(source).is_file():
                raise ModelError(
                    f"the checkpoint's backbone weights {source} are not there any more; pass the file with --backbone-weights PATH"
                )
            recorded = meta.get("backbone_sha256")
            if backbone_weights is None and recorded and file_sha256(source) != recorded:
                raise ModelError(f"the backbone weight file {source} differs from the one this checkpoint was trained with (sha256 mismatch)")
    model = build_method_model(recipe.model, recipe.baseline, meta["method"], weights=source)
    tensors = load_tensors(weights_path)
    expected = model.state_dict() if meta.get("backbone_in_checkpoint") else model.trainable_state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(model.state_dict()))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        problem = (f"missing {', '.join(missing[:4])}" if missing else f"unexpected {', '.join(unexpected[:4])}" if unexpected
                   else f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, the model needs {tuple(expected[wrong[0]].shape)}")
        raise ModelError(f"{weights_path} does not fit the model its JSON describes ({problem}); the two files come from different checkpoints")
    model.load_state_dict(tensors, strict=False)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, meta=meta, recipe=recipe, thresholds=thresholds, path=weights_path, au_names=list(meta["au_names"]))
