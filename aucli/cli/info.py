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
@click.option("--check", is_flag=True, help="Store: verify every dataset and chunk; exit 1 when damaged, with its last consistent state.")
@click.option("--salvage", metavar="NEW.h5", type=click.Path(dir_okay=False), help="With --check: copy the last consistent state into a new store.")
@json_option
def info(
    target: str | None,
    backbone: str | None,
    aus: str | None,
    overrides: tuple[str, ...],
    check: bool,
    salvage: str | None,
    as_json: bool,
) -> None:
    """Describe a model configuration, recipe, checkpoint or store.

    TARGET is a recipe (.yaml), a checkpoint (NAME.safetensors, NAME.json, NAME or a registry
    name) or an HDF5 store (.h5). Without TARGET: the default model (ViT-B/16, BP4D AUs) changed by
    --backbone, --aus and --override. Models show trainable and frozen parameter counts per component
    (built without weights, in seconds); checkpoints also their files and thresholds. A store with
    --check is verified (every dataset opened, every chunk read): exit 0 when consistent, 1 when
    damaged, with the last consistent state, which --salvage NEW.h5 copies into a new store.

    \b
    Examples:
      aucli info --backbone vit_base_patch16_224 --aus 12
      aucli info recipes/disfa.yaml --override model.moke.bottleneck=16
      aucli info runs/bp4d/fold1/best.safetensors --json
      aucli info corpus.h5
      aucli info corpus.h5 --check --salvage rescued.h5
    """
    from aucli.errors import UsageError
    from aucli.model import summary as model_summary

    kind = _kind(target)
    if kind in ("store", "checkpoint") and (backbone or aus or overrides):
        raise UsageError(f"--backbone, --aus and --override apply to a recipe or a configuration, not to a {kind}")
    if (check or salvage) and kind != "store":
        raise UsageError("--check and --salvage apply to a store (.h5)")
    if salvage and not check:
        raise UsageError("--salvage needs --check")
    if check:
        _check_store(target, salvage, as_json)  # type: ignore[arg-type]
        return
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


def _check_store(target: str, salvage: str | None, as_json: bool) -> None:
    """Verify a store, optionally salvage its last consistent state; exit 1 when it is damaged."""
    from aucli.console import console
    from aucli.errors import StoreError
    from aucli.store.check import check_store, damage_message, render_check_report

    report = check_store(target)
    notes: list[str] = []
    if salvage:
        from aucli.store.salvage import salvage_store

        notes = salvage_store(target, salvage, report)
    if as_json:
        echo_json({**report.as_dict(), "salvaged": {"store": salvage, "notes": notes} if salvage else None})
    else:
        render_check_report(report)
        if salvage:
            console.print(f"Salvaged the last consistent state into {salvage}.", highlight=False)
            for note in notes:
                console.print(f"  - {note}", highlight=False, markup=False)
    if not report.ok:
        raise StoreError(damage_message(report) if not salvage else f"{target} is damaged; its last consistent state is now in {salvage}")


def _kind(target: str | None) -> str:
    if target is None:
        return "configuration"
    suffix = Path(target).suffix.lower()
    if suffix in _STORE_SUFFIXES:
        return "store"
    if suffix in _RECIPE_SUFFIXES:
        return "recipe"
    return "checkpoint"
