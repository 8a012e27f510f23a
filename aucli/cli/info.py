"""``aucli info``: parameter counts of a model configuration, recipe or checkpoint; a store's summary."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import echo_json, json_option

_STORE_SUFFIXES = (".h5", ".hdf5")
_RECIPE_SUFFIXES = (".yaml", ".yml")


@click.command("info")
@click.argument("target", required=False)
@click.option("--backbone", metavar="NAME", help="timm backbone name (configuration or recipe), e.g. vit_base_patch16_224.")
@click.option("--aus", metavar="SPEC", help="AUs: a set (bp4d, disfa, casme2), a list (1,2,4) or a count (12).")
@click.option("--override", "overrides", multiple=True, metavar="KEY=VALUE", help="Recipe override, e.g. model.moke.bottleneck=16 (repeatable).")
@json_option
def info(target: str | None, backbone: str | None, aus: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Describe a model configuration, recipe, checkpoint or store.

    TARGET is a recipe (.yaml), a checkpoint (NAME.safetensors, NAME.json, NAME or a registry
    name) or an HDF5 store (.h5). Without TARGET: the default model (ViT-B/16, BP4D AUs) changed by
    --backbone, --aus and --override. Models show trainable and frozen parameter counts per component
    (built without weights, in seconds); checkpoints also their files and thresholds.

    \b
    Examples:
      aucli info --backbone vit_base_patch16_224 --aus 12
      aucli info recipes/disfa.yaml --override model.moke.bottleneck=16
      aucli info runs/bp4d/fold1/best.safetensors --json
      aucli info corpus.h5
    """
    from aucli.errors import UsageError
    from aucli.model import summary as model_summary

    kind = _kind(target)
    if kind in ("store", "checkpoint") and (backbone or aus or overrides):
        raise UsageError(f"--backbone, --aus and --override apply to a recipe or a configuration, not to a {kind}")
    if kind == "store":
        from aucli.store.summary import render_store_summary, summarize_store

        result = summarize_store(target)
        echo_json(result) if as_json else render_store_summary(result)
        return
    changes = model_summary.config_overrides(overrides, backbone=backbone, aus=aus)
    if kind == "recipe":
        result = model_summary.summarize_recipe(target, changes)
    elif kind == "checkpoint":
        result = model_summary.summarize_checkpoint(target)
    else:
        from aucli.config import load_recipe

        result = model_summary.summarize_config(load_recipe(None, changes).model)
    echo_json(result) if as_json else model_summary.render_model_summary(result)


def _kind(target: str | None) -> str:
    if target is None:
        return "configuration"
    suffix = Path(target).suffix.lower()
    if suffix in _STORE_SUFFIXES:
        return "store"
    if suffix in _RECIPE_SUFFIXES:
        return "recipe"
    return "checkpoint"
