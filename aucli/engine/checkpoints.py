"""Model checkpoints of every training method: a safetensors file of weights and a JSON file beside it.

``best.safetensors`` holds the trainable tensors (AUFormer: experts and heads; LoRA: the LoRA
matrices and the head; full fine-tuning: the whole backbone and the head), plus the frozen backbone
itself when it did not come from a file or the hub (a random-weight test backbone), so that the
checkpoint always rebuilds the same function. ``best.json`` holds everything else::

    format            "aucli-checkpoint-1"
    method            auformer | linear | adaptformer | lora | full
    au_names          the AUs, in logit order
    thresholds        per-AU decision thresholds (fitted on validation subjects, or 0.5)
    recipe            the resolved recipe (model, loss, data, optim, train, baseline)
    backbone_source   "hub", a weight file path, or "random"
    backbone_in_checkpoint   true when the backbone's tensors are in the safetensors file
    data_config       input size, mean, std (what predict needs to prepare images)
    parameters        trainable / frozen parameter counts
    training          what produced it (fold, epoch, step, subjects, validation scores, ...)
    calibration       optional per-AU calibration (aucli.calibration format)
    created_at, created_by

Loading never unpickles anything.
"""

from __future__ import annotations

import datetime as _dt
import json
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
from aucli.engine.runs import atomic_write_json, json_safe, load_tensors, save_tensors

__all__ = ["CHECKPOINT_FORMAT", "LoadedCheckpoint", "checkpoint_paths", "save_model_checkpoint", "load_model_checkpoint", "read_checkpoint_meta"]

CHECKPOINT_FORMAT = "aucli-checkpoint-1"


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights .safetensors, metadata .json)`` of a checkpoint given by either file or their stem."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_model_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    recipe: Recipe,
    thresholds: Sequence[float] | np.ndarray,
    backbone_source: str,
    training: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<path>.safetensors`` then ``<path>.json`` (each atomically); returns the JSON path."""
    from aucli import __version__

    model = unwrap(model)
    weights_path, meta_path = checkpoint_paths(path)
    thresholds = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    if len(thresholds) != len(model.au_names):
        raise ModelError(f"{len(thresholds)} thresholds for {len(model.au_names)} AUs")
    tensors = dict(model.trainable_state_dict())
    backbone_in_checkpoint = backbone_source == "random"
    if backbone_in_checkpoint:
        for name, tensor in model.backbone.state_dict().items():
            tensors.setdefault(f"backbone.{name}", tensor)
    method = getattr(model, "method", "auformer")
    save_tensors(weights_path, tensors, {"format": CHECKPOINT_FORMAT, "method": method})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "method": method,
        "au_names": list(model.au_names),
        "thresholds": thresholds,
        "recipe": recipe.to_dict(),
        "backbone_source": backbone_source,
        "backbone_in_checkpoint": backbone_in_checkpoint,
        "weights_file": weights_path.name,
        "data_config": dict(model.data_config),
        "parameters": {k: v for k, v in model.parameter_summary().items() if k != "components"},
        "training": dict(training or {}),
        "calibration": dict(calibration) if calibration else None,
        "extra": dict(extra or {}),
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
    """A checkpoint's JSON, checked; a clear error for missing or foreign files."""
    weights_path, meta_path = checkpoint_paths(path)
    if not meta_path.is_file():
        raise ModelError(f"checkpoint not found: {meta_path} (a checkpoint is NAME.safetensors with NAME.json beside it)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelError(f"{meta_path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{meta_path} is not an aucli checkpoint (expected format {CHECKPOINT_FORMAT!r}, found {found!r})")
    if not weights_path.is_file():
        raise ModelError(f"checkpoint weights not found: {weights_path} (next to {meta_path.name})")
    return meta


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
    if meta.get("backbone_in_checkpoint"):
        source = "random"
    else:
        source = backbone_weights or meta.get("backbone_source") or "hub"
        if source not in ("hub", "random") and not Path(source).is_file():
            raise ModelError(
                f"the checkpoint's backbone weights {source} are not there any more; pass the file with --backbone-weights PATH"
            )
    model = build_method_model(recipe.model, recipe.baseline, meta["method"], weights=source)
    tensors = load_tensors(weights_path)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    expected = set(model.trainable_state_dict())
    absent = sorted(expected & set(missing))
    if absent or unexpected:
        problem = f"missing {', '.join(absent[:5])}" if absent else f"unexpected {', '.join(sorted(unexpected)[:5])}"
        raise ModelError(f"{weights_path} does not fit the model it describes ({problem}); the files may come from different runs")
    model.to(device).eval()
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    return LoadedCheckpoint(model=model, meta=meta, recipe=recipe, thresholds=thresholds, path=weights_path, au_names=list(meta["au_names"]))
