"""The model registry file, ``registry.json``: where it lies, reading it, writing it.

The file has two sections: ``checkpoints`` (trained models, read by :mod:`aucli.model.registry`)
and ``backbones`` (weights to train on, read by :mod:`aucli.model.weights`). This module knows
the file, not what its entries mean, so both sections' readers can sit on it without depending on
each other. The registry in use is ``$AUCLI_MODELS/registry.json`` when ``AUCLI_MODELS`` is set,
else the one shipped in the package (:func:`aucli.resources.registry_path`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aucli.errors import ModelError
from aucli.fileio import atomic_write_json
from aucli.resources import registry_path

__all__ = ["REGISTRY_FORMAT_VERSION", "default_registry_path", "read_registry_file", "write_registry_file"]

REGISTRY_FORMAT_VERSION = 1


def default_registry_path() -> Path:
    """``$AUCLI_MODELS/registry.json``, else the packaged ``aucli/assets/registry.json``."""
    folder = os.environ.get("AUCLI_MODELS")
    if folder:
        return Path(folder) / "registry.json"
    return registry_path()


def read_registry_file(path: str | Path | None = None) -> dict[str, Any]:
    """The registry at ``path`` (default :func:`default_registry_path`) as a dict, its format checked.

    A registry that does not exist is empty: ``{"format_version": 1, "checkpoints": {}}``.
    """
    path = Path(path) if path is not None else default_registry_path()
    if not path.is_file():
        return {"format_version": REGISTRY_FORMAT_VERSION, "checkpoints": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"checkpoint registry {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format_version") != REGISTRY_FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else None
        raise ModelError(f"checkpoint registry {path} has format_version {found!r}; this aucli reads {REGISTRY_FORMAT_VERSION}")
    return data


def write_registry_file(path: str | Path, data: dict[str, Any]) -> None:
    """Replace the registry at ``path`` with ``data``, atomically (indented JSON)."""
    atomic_write_json(path, data)
