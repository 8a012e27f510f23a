"""Checkpoints of every method: ``NAME.safetensors`` (tensors) and ``NAME.json`` (everything else).

The project's one checkpoint format, ``aucli-checkpoint-1``, for AUFormer and the baselines alike.
The safetensors file holds the trainable tensors (AUFormer: experts and heads; LoRA: the LoRA
matrices and the head; AdaptFormer: adapters and head; full fine-tuning: the whole backbone and the
head), every other parameter outside the backbone (experts kept frozen while only the heads were
fine-tuned), the main head's running statistics, and the frozen backbone itself when it came
from neither the hub nor a file (random weights), so the checkpoint alone rebuilds the same
function. The JSON holds::

    format                 "aucli-checkpoint-1"
    format_version         1
    method                 "auformer", "linear", "adaptformer", "lora" or "full"
    au_names               the AUs, in logit order
    thresholds             per-AU decision thresholds, in au_names order
    recipe                 the resolved recipe; recipe.model rebuilds the model (backbone name and
                           overrides, img_size, AU names, MoKE config, head pooling, supervision)
    backbone_source        "hub", the backbone weight file's path, or "random"
    backbone_sha256        sha256 of that weight file (null for hub/random)
    backbone_in_checkpoint true when the backbone's tensors are in the safetensors file
    weights_file           the safetensors file's name
    weights_sha256         sha256 of the safetensors file; loading refuses a file that differs
                           (absent in checkpoints written before aucli recorded it: those load
                           unchecked)
    data_config            input_size, mean, std, interpolation, crop_pct (preprocessing)
    parameters             trainable / frozen / total parameter counts
    training               free-form training summary
    calibration            per-AU probability calibration, or null
    extra                  free-form
    aucli_version, created_at, created_by

Loading never unpickles: the JSON is read with :mod:`json`, the tensors with safetensors, and the
model is rebuilt from the recipe through the method registry (:mod:`aucli.model.methods`). Every
load checks the tensor file against ``weights_sha256`` (:func:`verify_weights`): a changed or damaged
file is refused unless it is accepted on purpose (``accept_modified_weights=True``, or the
commands' ``--accept-modified-weights``, which sets :func:`accepting_modified_weights`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.config import ModelConfig, Recipe
from aucli.errors import AucliError, ModelError
from aucli.fileio import atomic_write_bytes, file_sha256, json_safe, load_tensors, save_tensors
from aucli.model.methods import build_method_model
from aucli.model.weights import resolve_backbone_weights

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "LoadedCheckpoint",
    "accepting_modified_weights",
    "verify_weights",
    "checkpoint_paths",
    "read_checkpoint_metadata",
    "checkpoint_model_config",
    "save_checkpoint",
    "load_model_checkpoint",
    "load_checkpoint",
    "init_from_checkpoint",
]

CHECKPOINT_FORMAT = "aucli-checkpoint-1"
FORMAT_VERSION = 1
_FORMAT_PREFIX = "aucli-checkpoint-"
_SHA256 = re.compile(r"[0-9a-f]{64}")

#: Whether loads in this context accept weight files whose sha256 differs from the one recorded.
_ACCEPT_MODIFIED: ContextVar[bool] = ContextVar("aucli_accept_modified_weights", default=False)
#: The command-line flag that accepts them, named in the refusal.
ACCEPT_FLAG = "--accept-modified-weights"


# ------------------------------------------------------------------------------------ weight checksums
@contextmanager
def accepting_modified_weights(enabled: bool = True) -> Iterator[None]:
    """Inside this block, loads that are not told otherwise accept modified weight files (with a warning).

    The commands' ``--accept-modified-weights`` flag wraps the command in it, so every load the
    command makes (checkpoints, ``train.init_from``, a resumed training state) follows the flag.
    """
    token = _ACCEPT_MODIFIED.set(bool(enabled))
    try:
        yield
    finally:
        _ACCEPT_MODIFIED.reset(token)


def verify_weights(path: str | Path, recorded: Any, *, record: str | Path, accept: bool | None = None) -> None:
    """Refuse ``path`` unless its sha256 is ``recorded`` (the value of the JSON file ``record``).

    ``recorded`` None (a file written before aucli recorded checksums) is not checked. ``accept``:
    load a mismatching file anyway, with a warning; None follows :func:`accepting_modified_weights`.
    """
    if recorded is None:
        return
    if not (isinstance(recorded, str) and _SHA256.fullmatch(recorded)):
        raise ModelError(f"{record} records the weights' sha256 as {recorded!r}, not 64 hex digits; the file is damaged or was edited by hand")
    actual = file_sha256(path)
    if actual == recorded:
        return
    if accept if accept is not None else _ACCEPT_MODIFIED.get():
        from aucli.console import warn

        warn(f"{path} differs from the sha256 recorded in {record}; loading it anyway ({ACCEPT_FLAG})")
        return
    raise ModelError(
        f"{path} does not match the sha256 recorded in {record} (recorded {recorded[:12]}..., the file has {actual[:12]}...): "
        f"the weights were changed or damaged since they were saved; to load them on purpose, add {ACCEPT_FLAG}"
    )


# ------------------------------------------------------------------------------------ files and metadata
def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` of a checkpoint given as either file or the stem ``NAME``."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


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


# ------------------------------------------------------------------------------------ saving
def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    recipe: Recipe | None = None,
    thresholds: Sequence[float] | np.ndarray | Mapping[str, float] | None = None,
    training: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` then ``NAME.json``, each atomically; returns both paths.

    Args:
        path: ``NAME``, ``NAME.safetensors`` or ``NAME.json``.
        model: a model of any method (:func:`aucli.model.methods.build_method_model`), unwrapped
            from DistributedDataParallel.
        recipe: the full resolved recipe; None records ``Recipe(model=model.cfg)`` (default sections).
        thresholds: per-AU decision thresholds (in AU order, or a mapping AU -> threshold); None:
            0.5 for every AU.
        training: free-form JSON-safe summary of training.
        calibration: per-AU probability calibration (JSON-safe), or None.
        extra: free-form JSON-safe additions.
    """
    from aucli import __version__

    au_names = list(model.au_names)
    threshold_list = _threshold_list(thresholds, au_names)
    if recipe is None:
        recipe = Recipe(model=model.cfg)
    elif recipe.model.to_dict() != model.cfg.to_dict():
        raise ModelError("the recipe's model section differs from the model being saved; pass the recipe the model was built from")
    source = str(getattr(model, "backbone_source", "random"))
    in_checkpoint = source == "random"
    weights_path, meta_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    method = str(getattr(model, "method", "auformer"))
    from_file = not in_checkpoint and source != "hub" and Path(source).is_file()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "au_names": au_names,
        "thresholds": threshold_list,
        "recipe": recipe.to_dict(),
        "backbone_source": source,
        "backbone_sha256": file_sha256(source) if from_file else None,
        "backbone_in_checkpoint": in_checkpoint,
        "weights_file": weights_path.name,
        "weights_sha256": None,  # set once the tensors are written
        "data_config": dict(model.data_config),
        "parameters": {k: v for k, v in model.parameter_summary().items() if k != "components"},
        "training": dict(training or {}),
        "calibration": dict(calibration) if calibration else None,
        "extra": dict(extra or {}),
        "aucli_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"aucli {__version__}",
    }
    try:  # checked before anything is written
        json.dumps(json_safe(meta), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelError(f"training/calibration/extra must be JSON-safe (plain numbers, strings, lists, dicts): {error}") from None
    save_tensors(weights_path, _stored_tensors(model, in_checkpoint), {"format": CHECKPOINT_FORMAT, "method": method})
    meta["weights_sha256"] = file_sha256(weights_path)
    atomic_write_bytes(meta_path, (json.dumps(json_safe(meta), indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return weights_path, meta_path


def _stored_tensors(model: nn.Module, backbone_in_checkpoint: bool) -> dict[str, torch.Tensor]:
    """What a checkpoint of ``model`` holds, by name (the same set saving writes and loading expects)."""
    tensors = dict(model.trainable_state_dict())
    for name, parameter in model.named_parameters():
        if not name.startswith("backbone."):
            tensors.setdefault(name, parameter.detach())
    if backbone_in_checkpoint:
        for name, tensor in model.backbone.state_dict().items():
            tensors.setdefault(f"backbone.{name}", tensor)
    return tensors


def _threshold_list(thresholds: Sequence[float] | np.ndarray | Mapping[str, float] | None, au_names: list[str]) -> list[float]:
    if thresholds is None:
        return [0.5] * len(au_names)
    if isinstance(thresholds, Mapping):
        from aucli.aus import parse_au

        given = {parse_au(k): float(v) for k, v in thresholds.items()}
        if set(given) != set(au_names):
            raise ModelError(f"thresholds name {sorted(given)}, the model detects {au_names}")
        values = [given[name] for name in au_names]
    else:
        values = [float(v) for v in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
        if len(values) != len(au_names):
            raise ModelError(f"{len(values)} thresholds for {len(au_names)} AUs")
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise ModelError(f"thresholds must lie in [0, 1] (found {bad[0]})")
    return values


# ------------------------------------------------------------------------------------ loading
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


def load_model_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    backbone_weights: str | None = None,
    accept_modified_weights: bool | None = None,
) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint of any method and load its tensors.

    Args:
        path: ``NAME.safetensors``, ``NAME.json`` or ``NAME``.
        device: where the model goes.
        backbone_weights: a backbone weight file to use instead of the one recorded (moved files).
        accept_modified_weights: load a tensor file whose sha256 differs from the recorded one
            (with a warning); None follows :func:`accepting_modified_weights` (default: refuse).
    """
    weights_path, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_metadata(path)
    cfg = checkpoint_model_config(meta)
    try:
        recipe = Recipe.from_dict(meta["recipe"])
    except AucliError as error:
        raise ModelError(f"the checkpoint's recipe is not valid for this aucli: {error}") from None
    in_checkpoint = bool(meta.get("backbone_in_checkpoint"))
    source = "random" if in_checkpoint else _backbone_file(meta, backbone_weights)
    model = build_method_model(cfg, recipe.baseline, str(meta["method"]), weights=source)
    tensors = _read_tensors(weights_path, meta, meta_path, accept_modified_weights)
    _check_fit(model, tensors, in_checkpoint, weights_path)
    model.load_state_dict(tensors, strict=False)
    model.to(device).eval()
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    return LoadedCheckpoint(model=model, meta=meta, recipe=recipe, thresholds=thresholds, path=weights_path, au_names=list(meta["au_names"]))


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    backbone_weights: str | None = None,
    expected_au_names: Sequence[str] | None = None,
    expected_backbone: str | None = None,
    accept_modified_weights: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """An AUFormer checkpoint, rebuilt: ``(model in eval mode, metadata)``; other methods are refused.

    Args:
        path, device, backbone_weights, accept_modified_weights: as :func:`load_model_checkpoint`.
        expected_au_names: refuse a checkpoint that detects other AUs (or in another order).
        expected_backbone: refuse a checkpoint built on another timm backbone name.
    """
    _, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_metadata(path)
    if meta["method"] != "auformer":
        raise ModelError(f"{meta_path} is a {meta['method']!r} checkpoint, not AUFormer; load it with load_model_checkpoint")
    cfg = checkpoint_model_config(meta)
    if expected_au_names is not None and list(expected_au_names) != list(cfg.au_names):
        raise ModelError(
            f"the checkpoint detects {', '.join(cfg.au_names)}, but {', '.join(expected_au_names)} were expected "
            "(same AUs in the same order); use a checkpoint trained on this AU set"
        )
    if expected_backbone is not None and expected_backbone != cfg.backbone:
        raise ModelError(f"the checkpoint is built on backbone {cfg.backbone!r}, not {expected_backbone!r}")
    loaded = load_model_checkpoint(path, device=device, backbone_weights=backbone_weights, accept_modified_weights=accept_modified_weights)
    return loaded.model, loaded.meta


def _backbone_file(meta: Mapping[str, Any], backbone_weights: str | None) -> str:
    """The backbone weights to rebuild with: ``backbone_weights``, else the recorded source, checked."""
    source = backbone_weights or str(meta.get("backbone_source") or "hub")
    if source in ("hub", "random"):
        return source
    if not Path(source).is_file():
        raise ModelError(
            f"the checkpoint's backbone weights {source} are not there any more; pass the file with --backbone-weights PATH "
            "(backbone_weights= in Python)"
        )
    recorded = meta.get("backbone_sha256")
    if backbone_weights is None and recorded and file_sha256(source) != recorded:
        raise ModelError(
            f"the backbone weight file {source} differs from the one this checkpoint was trained with (sha256 mismatch); "
            "pass the file it was trained with: --backbone-weights PATH"
        )
    return source


def _read_tensors(weights_path: Path, meta: Mapping[str, Any], meta_path: Path, accept: bool | None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, once the file is checked against the sha256 its JSON records."""
    from safetensors import SafetensorError

    verify_weights(weights_path, meta.get("weights_sha256"), record=meta_path, accept=accept)
    try:
        return load_tensors(weights_path)
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{weights_path} is not a readable safetensors file: {error}") from None


def _check_fit(model: nn.Module, tensors: Mapping[str, torch.Tensor], backbone_in_checkpoint: bool, weights_path: Path) -> None:
    """Refuse tensors that are not exactly what a checkpoint of ``model`` holds (names and shapes)."""
    expected = _stored_tensors(model, backbone_in_checkpoint)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}" + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}" + (f" and {len(unexpected) - 4} more" if len(unexpected) > 4 else ""))
    if wrong:
        problems.append(f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, the model needs {tuple(expected[wrong[0]].shape)}")
    if problems:
        raise ModelError(
            f"{weights_path} does not fit the model its JSON describes ({'; '.join(problems)}); the two files come from different checkpoints"
        )


# ------------------------------------------------------------------------------------ fine-tuning start
def init_from_checkpoint(model: nn.Module, path: str | Path, *, accept_modified_weights: bool | None = None) -> dict[str, Any]:
    """Load an AUFormer checkpoint's tensors (experts, heads) into ``model``; returns its metadata.

    ``model`` must be the model the checkpoint describes: the same model section of the recipe
    (backbone, overrides, image size, AUs, MoKE, heads), apart from where the backbone weights are
    read from. A backbone file must be the same file (sha256) the checkpoint was trained on; a
    random backbone stored in the checkpoint replaces the model's. The checkpoint's thresholds are
    not used: a run fits its own. ``accept_modified_weights``: as :func:`load_model_checkpoint`.
    """
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
    tensors = _read_tensors(weights_path, meta, meta_path, accept_modified_weights)
    _check_fit(model, tensors, bool(meta.get("backbone_in_checkpoint")), weights_path)
    model.load_state_dict(tensors, strict=False)
    return meta
