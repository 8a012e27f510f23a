"""Publishing a finished pretraining run as the backbone that ships in the package (maintainers).

:func:`install_backbone` copies the run's encoder and card into ``aucli/assets/``, renders the
markdown card and adds the backbone to the registry's ``"backbones"`` section, where
:func:`aucli.model.weights.resolve_backbone_weights` finds it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from aucli.fileio import atomic_write_json, atomic_write_text
from aucli.model.registry_file import read_registry_file, write_registry_file
from aucli.model.weights import ASSETS_DIR, EMBEDDED_PREFIX, EmbeddedBackbone, embedded_backbone, read_backbone_card, verify_weight_file
from aucli.pretrain.card import card_markdown
from aucli.resources import assets_dir

__all__ = ["install_backbone"]


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
    run = Path(run)
    assets = Path(assets) if assets is not None else ASSETS_DIR
    models = Path(models) if models is not None else assets_dir()
    card = read_backbone_card(run / "encoder.json")
    verify_weight_file(run / card["weights"]["file"], card["weights"], f"pretraining run {run}")
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
    data = read_registry_file(registry_path)
    data.setdefault("backbones", {})[registry_name] = _registry_entry(card, name, registry_name, weights, assets / f"{stem}.json", models)
    write_registry_file(registry_path, data)
    registry_path.chmod(0o644)
    return embedded_backbone(name, folder=assets)


def _registry_entry(card: dict[str, Any], name: str, registry_name: str, weights: Path, card_file: Path, models: Path) -> dict[str, Any]:
    """The ``"backbones"`` entry of a published backbone; file names relative to the registry's folder."""
    return {
        "files": {"weights": os.path.relpath(weights, models), "card": os.path.relpath(card_file, models)},
        "sha256": {"weights": card["weights"]["sha256"]},
        "size": {"weights": card["weights"]["bytes"]},
        "architecture": card["architecture"],
        "model_config": card["model_config"],
        "embedded": f"{EMBEDDED_PREFIX}{name}",
        "card": f"cards/{registry_name}.md",
    }
