"""AUFormer checkpoints: ``NAME.safetensors`` (tensors) and ``NAME.json`` (everything else).

The files are the project's one checkpoint format, ``aucli-checkpoint-1``, the same that
:mod:`aucli.engine.checkpoints` writes for every training method; this module is the model-level
API for AUFormer. The safetensors file holds only the trainable tensors (experts and heads), plus
the frozen backbone's tensors when the backbone has random weights (it came from neither the hub
nor a file, so the checkpoint alone must rebuild the same function). The JSON holds::

    format                 "aucli-checkpoint-1"
    format_version         1
    method                 "auformer"
    au_names               the AUs, in logit order
    thresholds             per-AU decision thresholds, in au_names order
    recipe                 the resolved recipe; recipe.model rebuilds the model (backbone name and
                           overrides, img_size, AU names, MoKE config, head pooling, supervision)
    backbone_source        "hub", the backbone weight file's path, or "random"
    backbone_sha256        sha256 of that weight file (null for hub/random)
    backbone_in_checkpoint true when the backbone's tensors are in the safetensors file
    weights_file           the safetensors file's name
    data_config            input_size, mean, std, interpolation, crop_pct (preprocessing)
    parameters             trainable / frozen / total parameter counts
    training               free-form training summary
    extra                  free-form
    aucli_version, created_at, created_by

Loading never unpickles: the JSON is read with :mod:`json`, the tensors with
:func:`safetensors.torch.load_file`, and the model is rebuilt from the recipe.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from aucli.config import ModelConfig, Recipe
from aucli.fileio import atomic_write_bytes
from aucli.errors import AucliError, ModelError

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "checkpoint_paths",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_model_config",
    "file_sha256",
    "init_from_checkpoint",
]

CHECKPOINT_FORMAT = "aucli-checkpoint-1"
FORMAT_VERSION = 1
_FORMAT_PREFIX = "aucli-checkpoint-"


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` of a checkpoint given as either file or the stem ``NAME``."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """A checkpoint's JSON, checked for format; no tensors are read and no model is built."""
    weights_path, meta_path = checkpoint_paths(path)
    if not meta_path.is_file():
        raise ModelError(f"checkpoint not found: {meta_path} (a checkpoint is NAME.safetensors with NAME.json beside it)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{meta_path} is not valid JSON: {error}") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != CHECKPOINT_FORMAT:
        if isinstance(found, str) and found.startswith(_FORMAT_PREFIX) and found[len(_FORMAT_PREFIX):].isdigit():
            raise ModelError(
                f"{meta_path} has checkpoint format {found!r}, written by another aucli version; this aucli reads "
                f"{CHECKPOINT_FORMAT!r}. Use the aucli version that wrote it (its JSON says: {meta.get('created_by', 'unknown')})"
            )
        raise ModelError(f"{meta_path} is not an aucli checkpoint (expected format {CHECKPOINT_FORMAT!r}, found {found!r})")
    for key in ("method", "au_names", "recipe"):
        if key not in meta:
            raise ModelError(f"{meta_path} lacks {key!r}; the file is damaged or was edited by hand")
    meta["backbone_source"] = _local_backbone_source(meta)
    if not weights_path.is_file():
        raise ModelError(f"checkpoint weights not found: {weights_path} (next to {meta_path.name})")
    return meta


def _local_backbone_source(meta: Mapping[str, Any]) -> Any:
    """The recorded backbone file, or this installation's copy of the same embedded backbone.

    A checkpoint records the backbone file's absolute path. For a backbone that ships with aucli
    (``model.backbone_weights: embedded:NAME``) that path is another machine's on a checkpoint made
    elsewhere (the registered ones): the local embedded file stands in when its sha256 is the one
    recorded.
    """
    source = meta.get("backbone_source")
    spec = (meta.get("recipe") or {}).get("model", {}).get("backbone_weights")
    if not isinstance(source, str) or source in ("hub", "random") or Path(source).is_file():
        return source
    if not (isinstance(spec, str) and spec.startswith("embedded:")):
        return source
    from aucli.pretrain.weights import resolve_backbone_weights

    try:
        local = resolve_backbone_weights(spec)
    except AucliError:
        return source
    if local and meta.get("backbone_sha256") and file_sha256(local) == meta["backbone_sha256"]:
        return local
    return source


def checkpoint_model_config(meta: Mapping[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` recorded in a checkpoint's JSON, validated."""
    try:
        cfg = ModelConfig.from_dict(meta["recipe"].get("model", {}), "model")
    except AucliError as error:
        raise ModelError(f"the checkpoint's model configuration is not valid for this aucli: {error}") from None
    if list(cfg.au_names) != list(meta["au_names"]):
        raise ModelError(f"the checkpoint's au_names {meta['au_names']} differ from its recipe's {cfg.au_names}; the JSON was edited")
    return cfg


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    thresholds: Sequence[float] | Mapping[str, float] | None = None,
    training_summary: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    recipe: Recipe | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` then ``NAME.json``, each atomically; returns both paths.

    Args:
        path: ``NAME``, ``NAME.safetensors`` or ``NAME.json``.
        model: an :class:`aucli.model.AUFormer`.
        thresholds: per-AU decision thresholds (a list in AU order or a mapping AU -> threshold);
            None: 0.5 for every AU.
        training_summary: free-form JSON-safe summary of training (stored as ``training``).
        extra: free-form JSON-safe additions.
        recipe: the full resolved recipe; None records ``Recipe(model=model.cfg)`` (default sections).
    """
    from safetensors.torch import save

    from aucli import __version__

    au_names = list(model.au_names)
    threshold_list = _threshold_list(thresholds, au_names)
    if recipe is None:
        recipe = Recipe(model=model.cfg)
    elif recipe.model.to_dict() != model.cfg.to_dict():
        raise ModelError("the recipe's model section differs from the model being saved; pass the recipe the model was built from")
    source = str(getattr(model, "backbone_source", "random"))
    in_checkpoint = source == "random"
    tensors = dict(model.trainable_state_dict())
    if in_checkpoint:
        tensors.update({f"backbone.{name}": tensor for name, tensor in model.backbone.state_dict().items()})
    weights_path, meta_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write_bytes(weights_path, save(plain, metadata={"format": CHECKPOINT_FORMAT, "method": "auformer"}))
    summary = model.parameter_summary()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "method": "auformer",
        "au_names": au_names,
        "thresholds": threshold_list,
        "recipe": recipe.to_dict(),
        "backbone_source": source,
        "backbone_sha256": file_sha256(source) if not in_checkpoint and source != "hub" and Path(source).is_file() else None,
        "backbone_in_checkpoint": in_checkpoint,
        "weights_file": weights_path.name,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()},
        "parameters": {k: v for k, v in summary.items() if k != "components"},
        "training": dict(training_summary or {}),
        "extra": dict(extra or {}),
        "aucli_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"aucli {__version__}",
    }
    try:
        text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ModelError(f"training_summary/extra must be JSON-safe (plain numbers, strings, lists, dicts): {error}") from None
    atomic_write_bytes(meta_path, text.encode("utf-8"))
    return weights_path, meta_path


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    backbone_weights: str | None = None,
    expected_au_names: Sequence[str] | None = None,
    expected_backbone: str | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild an AUFormer checkpoint and load its tensors; returns ``(model in eval mode, metadata)``.

    Args:
        path: ``NAME.safetensors``, ``NAME.json`` or ``NAME``.
        device: where the model goes.
        backbone_weights: backbone weights to use instead of the recorded source ("hub" or a file,
            e.g. after moving the weight file).
        expected_au_names: refuse a checkpoint that detects other AUs (or in another order).
        expected_backbone: refuse a checkpoint built on another timm backbone name.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from aucli.model.auformer import build_model

    weights_path, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_metadata(path)
    if meta["method"] != "auformer":
        raise ModelError(
            f"{meta_path} is a {meta['method']!r} checkpoint, not AUFormer; load it with aucli.engine.load_model_checkpoint"
        )
    cfg = checkpoint_model_config(meta)
    if expected_au_names is not None and list(expected_au_names) != list(cfg.au_names):
        raise ModelError(
            f"the checkpoint detects {', '.join(cfg.au_names)}, but {', '.join(expected_au_names)} were expected "
            "(same AUs in the same order); use a checkpoint trained on this AU set"
        )
    if expected_backbone is not None and expected_backbone != cfg.backbone:
        raise ModelError(f"the checkpoint is built on backbone {cfg.backbone!r}, not {expected_backbone!r}")

    in_checkpoint = bool(meta.get("backbone_in_checkpoint"))
    source = "random" if in_checkpoint else (backbone_weights or str(meta.get("backbone_source") or "hub"))
    if source not in ("hub", "random"):
        if not Path(source).is_file():
            raise ModelError(
                f"the checkpoint's backbone weights {source} are not there; pass the file with backbone_weights= (--backbone-weights PATH)"
            )
        recorded = meta.get("backbone_sha256")
        if backbone_weights is None and recorded and file_sha256(source) != recorded:
            raise ModelError(
                f"the backbone weight file {source} differs from the one this checkpoint was trained with (sha256 mismatch); "
                "pass the file it was trained with: --backbone-weights PATH"
            )
    model = build_model(cfg, weights=source, device=device)
    try:
        tensors = load_file(str(weights_path), device=str(torch.device(device)))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{weights_path} is not a readable safetensors file: {error}") from None

    backbone_tensors = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    if in_checkpoint:
        _load_exactly(model.backbone, backbone_tensors, weights_path, "backbone")
    elif backbone_tensors:
        raise ModelError(f"{weights_path} holds backbone tensors although its JSON says the backbone comes from {source}")
    trainable = {k: v for k, v in tensors.items() if not k.startswith("backbone.")}
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(trainable))
    unexpected = sorted(set(trainable) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(trainable) if tuple(expected[k].shape) != tuple(trainable[k].shape))
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected[:4])}")
        if wrong_shape:
            k = wrong_shape[0]
            problems.append(f"{k} has shape {tuple(trainable[k].shape)}, the model needs {tuple(expected[k].shape)}")
        raise ModelError(f"{weights_path} does not fit the model its JSON describes ({'; '.join(problems)}); the two files come from different checkpoints")
    model.load_state_dict(trainable, strict=False)
    model.backbone_source = source if not in_checkpoint else "random"
    model.to(device).eval()
    return model, meta


def _load_exactly(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise ModelError(f"{path}: the stored {what} does not fit {what} described in its JSON (missing {missing[:3]}, unexpected {unexpected[:3]}, shapes {wrong[:3]})")
    module.load_state_dict(dict(tensors), strict=True)


def _threshold_list(thresholds: Sequence[float] | Mapping[str, float] | None, au_names: list[str]) -> list[float]:
    if thresholds is None:
        return [0.5] * len(au_names)
    if isinstance(thresholds, Mapping):
        from aucli.aus import parse_au

        given = {parse_au(k): float(v) for k, v in thresholds.items()}
        if set(given) != set(au_names):
            raise ModelError(f"thresholds name {sorted(given)}, the model detects {au_names}")
        values = [given[name] for name in au_names]
    else:
        values = [float(v) for v in (thresholds.tolist() if hasattr(thresholds, "tolist") else thresholds)]
        if len(values) != len(au_names):
            raise ModelError(f"{len(values)} thresholds for {len(au_names)} AUs")
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise ModelError(f"thresholds must lie in [0, 1] (found {bad[0]})")
    return values




def init_from_checkpoint(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Load an AUFormer checkpoint's trainable tensors (experts, heads) into ``model``; returns its metadata.

    ``model`` must be the model the checkpoint describes: the same model section of the recipe
    (backbone, overrides, image size, AUs, MoKE, heads), apart from where the backbone weights are
    read from. A backbone file must be the same file (sha256) the checkpoint was trained on.
    The checkpoint's thresholds are not used: a run fits its own.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_metadata(path)
    if meta["method"] != "auformer":
        raise ModelError(f"{meta_path} is a {meta['method']!r} checkpoint; train.init_from takes AUFormer checkpoints")
    theirs = checkpoint_model_config(meta).to_dict()
    ours = model.cfg.to_dict()
    differ = sorted(k for k in set(theirs) | set(ours) if k != "backbone_weights" and theirs.get(k) != ours.get(k))
    if differ:
        shown = "; ".join(f"model.{k}: checkpoint {theirs.get(k)!r}, recipe {ours.get(k)!r}" for k in differ[:3])
        raise ModelError(f"train.init_from {meta_path} describes another model ({shown}); use the checkpoint's model section")
    recorded = meta.get("backbone_sha256")
    source = str(getattr(model, "backbone_source", ""))
    if recorded and Path(source).is_file() and file_sha256(source) != recorded:
        raise ModelError(f"train.init_from {meta_path} was trained on another backbone file than {source} (sha256 differs)")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{weights_path} is not a readable safetensors file: {error}") from None
    if meta.get("backbone_in_checkpoint"):
        # a random backbone lives in the checkpoint: the run must use that very backbone, not a fresh draw
        backbone = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        _load_exactly(model.backbone, {k: v.to(next(model.backbone.parameters()).device) for k, v in backbone.items()},
                      weights_path, "backbone")
        tensors = {k: v for k, v in tensors.items() if not k.startswith("backbone.")}
    expected = model.trainable_state_dict()
    if set(tensors) != set(expected) or any(tuple(tensors[k].shape) != tuple(expected[k].shape) for k in expected):
        raise ModelError(f"{weights_path} does not fit the model its JSON describes; the two files come from different checkpoints")
    device = next(iter(expected.values())).device
    model.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)
    return meta
