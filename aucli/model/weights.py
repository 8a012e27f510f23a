"""The backbone weight catalogue: backbone files, the embedded default, registered backbones, names.

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
registry (:func:`registered_backbones`). Anything else (``hub``, ``random``, a path) is returned
unchanged. ``aucli pretrain`` writes the files (:func:`save_encoder`); publishing a run as the
embedded default is :func:`aucli.pretrain.publish.install_backbone`.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aucli.errors import ModelError
from aucli.fileio import file_sha256, save_tensors
from aucli.model.registry_file import default_registry_path, read_registry_file
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
    "registered_backbones",
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
        verify_weight_file(entry.weights, entry.data["weights"], f"embedded backbone {name!r}")
    return entry


def verify_weight_file(path: Path, record: dict[str, Any], what: str) -> None:
    """Refuse ``path`` unless it exists with the ``bytes`` and ``sha256`` of ``record`` (checked once per process)."""
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
    registry_path = Path(registry) if registry is not None else default_registry_path()
    backbones = registered_backbones(registry_path)
    if text in backbones:
        raw = backbones[text]
        weights = (registry_path.parent / raw["files"]["weights"]).resolve()
        verify_weight_file(weights, {"sha256": raw["sha256"]["weights"], "bytes": raw["size"]["weights"]}, f"registered backbone {text!r}")
        return str(weights)
    return text


def registered_backbones(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The registry's ``"backbones"`` section as raw entries (backbone weights to train on, not checkpoints)."""
    backbones = read_registry_file(path).get("backbones")
    return {str(k): v for k, v in backbones.items() if isinstance(v, dict)} if isinstance(backbones, dict) else {}


def save_encoder(encoder: nn.Module, path: str | Path, *, dtype: torch.dtype, metadata: dict[str, str]) -> dict[str, Any]:
    """Write ``encoder``'s state dict (timm keys) to ``path`` in ``dtype``; returns ``{file, sha256, bytes, dtype, params}``.

    The file's safetensors metadata holds one key, ``aucli``: JSON with the format and ``metadata``.
    """
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
