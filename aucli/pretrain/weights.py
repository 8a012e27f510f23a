"""Backbone weight files made by ``aucli pretrain``: writing, the embedded default, resolving names.

A pretrained encoder is two files with one stem (format ``aucli-backbone-1``):

- ``STEM.safetensors``: the timm ``VisionTransformer`` state dict (timm's own keys: ``cls_token``,
  ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``; no classifier). It loads like
  any timm weight file: through AUFormer's ``model.backbone_weights: PATH``, or
  ``timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=PATH, custom_load=False),
  num_classes=0, img_size=..., **overrides)``. Its safetensors metadata (key ``aucli``, JSON) repeats
  the format and architecture.
- ``STEM.json``: the model card as data: architecture name and overrides, image size, mean and
  std, the weight file's sha256 and size, pretraining settings, loss curve summary, probe figures,
  and optionally ``evaluations``: downstream results measured later, each with its source (see
  :func:`aucli.pretrain.card.card_markdown`; publishing a new run starts without them).

The package ships one such pair in ``aucli/assets/`` (the embedded default, used by the demo and
the learnability benchmark): :func:`resolve_backbone_weights` turns ``embedded:synthface`` into its
path after checking its sha256, and also resolves names listed under ``"backbones"`` in the model
registry (``aucli/assets/registry.json``). Anything else (``hub``, ``random``, a path) is returned
unchanged.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aucli.errors import ModelError
from aucli.resources import assets_dir

__all__ = [
    "BACKBONE_FORMAT",
    "EMBEDDED_PREFIX",
    "ASSETS_DIR",
    "EmbeddedBackbone",
    "embedded_backbones",
    "embedded_backbone",
    "resolve_backbone_weights",
    "save_encoder",
    "read_backbone_card",
    "install_backbone",
]

BACKBONE_FORMAT = "aucli-backbone-1"
EMBEDDED_PREFIX = "embedded:"
#: Where the package's embedded backbones live (``*.json`` cards beside ``*.safetensors`` weights).
ASSETS_DIR = assets_dir()
_VERIFIED: dict[tuple[str, int, float], str] = {}


@dataclass(frozen=True)
class EmbeddedBackbone:
    """A backbone shipped inside the package.

    Attributes:
        name: the short name after ``embedded:`` (``synthface``).
        weights, card: absolute paths of the ``.safetensors`` file and its JSON card.
        data: the card's content.
    """

    name: str
    weights: Path
    card: Path
    data: dict[str, Any]

    def model_config(self) -> dict[str, Any]:
        """The ``model:`` recipe keys that rebuild this backbone in AUFormer (weights included)."""
        return {**self.data["model_config"], "backbone_weights": f"{EMBEDDED_PREFIX}{self.name}"}


def read_backbone_card(path: str | Path) -> dict[str, Any]:
    """A backbone card (``STEM.json``), checked for its format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read the backbone card {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != BACKBONE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ModelError(f"{path} is not an aucli backbone card (format {found!r}, expected {BACKBONE_FORMAT!r})")
    return data


def embedded_backbones(folder: str | Path | None = None) -> dict[str, EmbeddedBackbone]:
    """Every backbone card in ``folder`` (default: the package's assets) that names an ``embedded_name``."""
    folder = Path(folder) if folder is not None else ASSETS_DIR
    found: dict[str, EmbeddedBackbone] = {}
    for card in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = read_backbone_card(card)
        except ModelError:
            continue
        name = data.get("embedded_name")
        if name:
            found[str(name)] = EmbeddedBackbone(str(name), card.with_suffix(".safetensors"), card, data)
    return found


def embedded_backbone(name: str = "synthface", *, folder: str | Path | None = None, verify: bool = True) -> EmbeddedBackbone:
    """The embedded backbone ``name``; its weight file must exist and (with ``verify``) match the card's sha256."""
    available = embedded_backbones(folder)
    entry = available.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f"; did you mean {EMBEDDED_PREFIX}{close[0]}?" if close else ""
        known = ", ".join(f"{EMBEDDED_PREFIX}{n}" for n in sorted(available)) or "none"
        raise ModelError(f"no embedded backbone {name!r}{hint} (embedded: {known})")
    if verify:
        _verify(entry.weights, entry.data["weights"], f"embedded backbone {name!r}")
    return entry


def _verify(path: Path, record: dict[str, Any], what: str) -> None:
    from aucli.model.checkpoint import file_sha256

    if not path.is_file():
        raise ModelError(f"{what}: its weight file {path} is missing; reinstall aucli or rerun `aucli pretrain`")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if _VERIFIED.get(key) == record["sha256"]:
        return
    if stat.st_size != int(record["bytes"]):
        raise ModelError(f"{what}: {path} has {stat.st_size} bytes, its card says {record['bytes']}")
    if file_sha256(path) != record["sha256"]:
        raise ModelError(f"{what}: {path} does not match the sha256 in its card; the file changed")
    _VERIFIED[key] = record["sha256"]


def resolve_backbone_weights(spec: str | None, *, registry: str | Path | None = None) -> str | None:
    """``embedded:NAME`` -> the embedded file's path; a name under ``"backbones"`` in the registry -> its path.

    Anything else (None, ``hub``, ``random``, a file path) is returned as given. Resolved files are
    checked against their recorded sha256 (once per process and file).
    """
    if spec is None:
        return None
    text = str(spec)
    if text.startswith(EMBEDDED_PREFIX):
        return str(embedded_backbone(text[len(EMBEDDED_PREFIX) :]).weights)
    if (
        text in ("hub", "random")
        or Path(text).exists()
        or os.sep in text
        or text.endswith((".safetensors", ".pth", ".pt", ".bin", ".npz"))
    ):
        return text
    from aucli.model.registry import default_registry_path

    registry_path = Path(registry) if registry is not None else default_registry_path()
    backbones = _registry_backbones(registry_path)
    if text in backbones:
        raw = backbones[text]
        weights = (registry_path.parent / raw["files"]["weights"]).resolve()
        _verify(weights, {"sha256": raw["sha256"]["weights"], "bytes": raw["size"]["weights"]}, f"registered backbone {text!r}")
        return str(weights)
    return text


def _registry_backbones(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"registry {path} is not valid JSON: {error}") from None
    backbones = data.get("backbones") if isinstance(data, dict) else None
    return backbones if isinstance(backbones, dict) else {}


def save_encoder(encoder: nn.Module, path: str | Path, *, dtype: torch.dtype, metadata: dict[str, str]) -> dict[str, Any]:
    """Write ``encoder``'s state dict (timm keys) to ``path`` in ``dtype``; returns ``{file, sha256, bytes, dtype, params}``.

    The file's safetensors metadata holds one key, ``aucli``: JSON with the format and ``metadata``.
    """
    from aucli.engine.runs import save_tensors
    from aucli.model.checkpoint import file_sha256

    path = Path(path)
    state = {name: tensor.detach().to(dtype) for name, tensor in encoder.state_dict().items()}
    # One metadata entry: safetensors writes several in hash-map order, which would change the bytes (and sha256) run to run.
    save_tensors(path, state, {"aucli": json.dumps({"format": BACKBONE_FORMAT, **metadata}, sort_keys=True)})
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "dtype": str(dtype).replace("torch.", ""),
        "params": int(sum(t.numel() for t in state.values())),
    }


def install_backbone(
    run: str | Path,
    *,
    name: str,
    stem: str,
    registry_name: str,
    assets: str | Path | None = None,
    models: str | Path | None = None,
) -> EmbeddedBackbone:
    """Publish a finished pretraining run as the embedded backbone ``name`` (maintainers, after retraining).

    Copies ``run/encoder.safetensors`` and its card to ``assets/STEM.safetensors`` and ``STEM.json``
    (card: ``name`` and ``embedded_name`` set, the file name updated), writes the markdown card to
    ``MODELS/cards/REGISTRY_NAME.md``, and adds ``registry_name`` under ``"backbones"`` in
    ``MODELS/registry.json`` (other entries are kept; the file is replaced atomically). ``assets``
    and ``models`` default to the package's ``aucli/assets/`` (which holds the registry too).
    """
    from aucli.fileio import atomic_write_json, atomic_write_text
    from aucli.model.registry import REGISTRY_FORMAT_VERSION
    from aucli.pretrain.card import card_markdown

    run = Path(run)
    assets = Path(assets) if assets is not None else ASSETS_DIR
    models = Path(models) if models is not None else assets_dir()
    card = read_backbone_card(run / "encoder.json")
    _verify(run / card["weights"]["file"], card["weights"], f"pretraining run {run}")
    assets.mkdir(parents=True, exist_ok=True)
    (models / "cards").mkdir(parents=True, exist_ok=True)
    weights = assets / f"{stem}.safetensors"
    shutil.copyfile(run / card["weights"]["file"], weights)
    card = {**card, "name": registry_name, "embedded_name": name, "weights": {**card["weights"], "file": weights.name}}
    atomic_write_json(assets / f"{stem}.json", card)
    atomic_write_text(models / "cards" / f"{registry_name}.md", card_markdown(card))
    for published in (weights, assets / f"{stem}.json", models / "cards" / f"{registry_name}.md"):
        published.chmod(0o644)
    registry_path = models / "registry.json"
    data: dict[str, Any] = (
        json.loads(registry_path.read_text(encoding="utf-8"))
        if registry_path.is_file()
        else {"format_version": REGISTRY_FORMAT_VERSION, "checkpoints": {}}
    )
    data.setdefault("backbones", {})[registry_name] = {
        "files": {"weights": os.path.relpath(weights, models), "card": os.path.relpath(assets / f"{stem}.json", models)},
        "sha256": {"weights": card["weights"]["sha256"]},
        "size": {"weights": card["weights"]["bytes"]},
        "architecture": card["architecture"],
        "model_config": card["model_config"],
        "embedded": f"{EMBEDDED_PREFIX}{name}",
        "card": f"cards/{registry_name}.md",
    }
    atomic_write_json(registry_path, data)
    registry_path.chmod(0o644)
    return embedded_backbone(name, folder=assets)
