"""The checkpoint registry: ``registry.json`` names checkpoints, as data.

An entry says which files make up a checkpoint, their sha256 and size, the backbone, the AU set
and a model card. :func:`resolve_checkpoint` turns a registry name or a path into the checkpoint's
files, verifying the registered hashes. aucli never downloads anything: an entry's ``url`` tells a
person where to fetch the files, which then go beside the registry. Format (``format_version`` 1)::

    {
      "format_version": 1,
      "checkpoints": {
        "NAME": {
          "files": {"weights": "NAME.safetensors", "config": "NAME.json"},
          "sha256": {"weights": "<64 hex>", "config": "<64 hex>"},
          "size": {"weights": 18321536, "config": 2933},
          "backbone": "vit_base_patch16_224.augreg_in21k",
          "au_names": ["AU1", "AU2", ...],
          "card": "cards/NAME.md",
          "url": "https://... (optional; where a person downloads the files)"
        }
      }
    }

File names are relative to the registry file's folder. Where the file lies and how it is read and
written is :mod:`aucli.model.registry_file`; its ``backbones`` section is read by
:func:`aucli.model.weights.registered_backbones`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from aucli.errors import ModelError
from aucli.fileio import file_sha256
from aucli.model.checkpoint import checkpoint_paths, read_checkpoint_metadata
from aucli.model.registry_file import REGISTRY_FORMAT_VERSION, default_registry_path, read_registry_file, write_registry_file
from aucli.model.weights import registered_backbones

__all__ = [
    "REGISTRY_FORMAT_VERSION",
    "RegistryEntry",
    "default_registry_path",
    "load_registry",
    "resolve_checkpoint",
    "register_checkpoint",
    "registered_backbones",
    "checkpoint_choices",
]


@dataclass(frozen=True)
class RegistryEntry:
    """One registered checkpoint; paths are absolute (resolved against the registry's folder)."""

    name: str
    weights: Path
    config: Path
    sha256: dict[str, str]
    size: dict[str, int]
    backbone: str
    au_names: tuple[str, ...]
    card: Path | None
    url: str | None


def load_registry(path: str | Path | None = None) -> dict[str, RegistryEntry]:
    """Every checkpoint entry of the registry at ``path`` (default :func:`default_registry_path`); none if it does not exist."""
    path = Path(path) if path is not None else default_registry_path()
    data = read_registry_file(path)
    entries = {}
    for name, raw in (data.get("checkpoints") or {}).items():
        try:
            entries[name] = RegistryEntry(
                name=name,
                weights=path.parent / raw["files"]["weights"],
                config=path.parent / raw["files"]["config"],
                sha256={k: str(v) for k, v in raw["sha256"].items()},
                size={k: int(v) for k, v in raw["size"].items()},
                backbone=str(raw["backbone"]),
                au_names=tuple(raw["au_names"]),
                card=path.parent / raw["card"] if raw.get("card") else None,
                url=raw.get("url"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"checkpoint registry {path}: entry {name!r} is incomplete ({error!r}); see models/README.md for the format") from None
    return entries


def checkpoint_choices(registry: str | Path | None = None) -> str:
    """For a command that needs ``--checkpoint``: how to give one, and what the registry offers.

    Lists the registered checkpoints (name, backbone, AUs), or says that none is registered and
    how to train one; the registered backbones follow, marked as training weights, not checkpoints.
    """
    path = Path(registry) if registry is not None else default_registry_path()
    entries = load_registry(path)
    lines = [
        "no checkpoint given: pass --checkpoint NAME (a registered checkpoint) or --checkpoint PATH "
        "(NAME.safetensors or NAME.json, e.g. runs/synth/fold1/best.safetensors)."
    ]
    if entries:
        lines.append(f"Registered checkpoints ({path}):")
        width = max(len(name) for name in entries)
        for name in sorted(entries):
            entry = entries[name]
            aus = " ".join(entry.au_names)
            count = f"{len(entry.au_names)} AU{'s' if len(entry.au_names) != 1 else ''}"
            lines.append(f"  {name:<{width}}  backbone {entry.backbone}, {count}: {aus}")
        first = sorted(entries)[0]
        lines.append(f"Pick one with --checkpoint {first} (or another name above), or pass a checkpoint file.")
    else:
        lines.append(
            f"No checkpoint is registered yet ({path} lists none). Train one, e.g. "
            "`aucli train STORE.h5 --recipe synthetic --out runs/synth`, then pass "
            "--checkpoint runs/synth/fold1/best.safetensors."
        )
    backbones = registered_backbones(path)
    if backbones:
        described = []
        for name in sorted(backbones):
            raw = backbones[name]
            config = raw.get("model_config") if isinstance(raw.get("model_config"), dict) else {}
            details = [str(raw.get("architecture") or config.get("backbone") or "?")]
            if config.get("img_size"):
                details.append(f"{config['img_size']} px")
            if raw.get("embedded"):
                details.append(str(raw["embedded"]))
            described.append(f"{name} ({', '.join(details)})")
        lines.append(
            "Registered backbones (weights to train on with model.backbone_weights, not checkpoints): " + "; ".join(described) + "."
        )
    return "\n".join(lines)


def resolve_checkpoint(name_or_path: str | Path, *, registry: str | Path | None = None, verify: bool = True) -> Path:
    """The checkpoint's ``NAME.json`` path for a file path, a stem, or a registry name.

    A path wins over a registry name. A registered checkpoint's files must be present and (with
    ``verify``) match the registered size and sha256.
    """
    _, meta_path = checkpoint_paths(name_or_path)
    if meta_path.is_file():
        return meta_path
    name = str(name_or_path)
    if "/" in name or os.sep in name or Path(name).suffix in (".safetensors", ".json"):
        raise ModelError(f"checkpoint not found: {meta_path} (a checkpoint is NAME.safetensors with NAME.json beside it)")
    entries = load_registry(registry)
    entry = entries.get(name)
    if entry is None:
        registry_path = Path(registry) if registry is not None else default_registry_path()
        close = difflib.get_close_matches(name, list(entries), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = f"registered: {', '.join(sorted(entries))}" if entries else f"the registry {registry_path} lists no checkpoints yet"
        raise ModelError(f"no checkpoint file {meta_path} and no registry entry named {name!r}{hint} ({known})")
    for role, path in (("weights", entry.weights), ("config", entry.config)):
        if not path.is_file():
            where = f" Download it from {entry.url} into {path.parent}." if entry.url else ""
            raise ModelError(f"registered checkpoint {name!r}: its {role} file {path} is not present.{where}")
        if verify:
            size = path.stat().st_size
            if role in entry.size and size != entry.size[role]:
                raise ModelError(f"registered checkpoint {name!r}: {path} has {size} bytes, the registry says {entry.size[role]}")
            if role in entry.sha256 and file_sha256(path) != entry.sha256[role]:
                raise ModelError(f"registered checkpoint {name!r}: {path} does not match its registered sha256; the file changed")
    weights, meta = checkpoint_paths(entry.config)
    if weights != entry.weights:
        raise ModelError(f"registered checkpoint {name!r}: weights {entry.weights.name} and config {entry.config.name} must share a stem")
    return meta


def register_checkpoint(
    path: str | Path, name: str, *, registry: str | Path | None = None, card: str | None = None, url: str | None = None
) -> RegistryEntry:
    """Add (or replace) registry entry ``name`` for the checkpoint at ``path``.

    The checkpoint's files must lie in the registry's folder (entries are relative to it). The
    registry file is rewritten atomically.
    """
    registry_path = Path(registry) if registry is not None else default_registry_path()
    weights, config = checkpoint_paths(path)
    meta = read_checkpoint_metadata(path)
    folder = registry_path.parent.resolve()
    for file in (weights, config):
        if file.resolve().parent != folder:
            raise ModelError(f"{file} must lie in the registry's folder {folder} (entries name files relative to it)")
    data = read_registry_file(registry_path)
    data.setdefault("checkpoints", {})[name] = {
        "files": {"weights": weights.name, "config": config.name},
        "sha256": {"weights": file_sha256(weights), "config": file_sha256(config)},
        "size": {"weights": weights.stat().st_size, "config": config.stat().st_size},
        "backbone": meta["recipe"]["model"]["backbone"],
        "au_names": list(meta["au_names"]),
        **({"card": card} if card else {}),
        **({"url": url} if url else {}),
    }
    write_registry_file(registry_path, data)
    return load_registry(registry_path)[name]
