"""The package's data files: recipes, the model registry, its cards and the embedded weights.

They ship inside the package (``aucli/recipes/*.yaml``, ``aucli/assets/``) and are found with
:mod:`importlib.resources`, so a source checkout, an editable install and an installed wheel see
the same files. Layout::

    aucli/recipes/NAME.yaml            training recipes (bp4d, casme2, disfa, synthetic)
    aucli/assets/registry.json         the model registry (checkpoints and backbones)
    aucli/assets/cards/NAME.md         model cards of registered models
    aucli/assets/STEM.safetensors      embedded weights, with their JSON card STEM.json

A recipe is named by a path or by the name of a packaged recipe: ``synthetic``,
``synthetic.yaml`` and ``recipes/synthetic.yaml`` (the folder the recipes lived in before they
became package data) all mean ``aucli/recipes/synthetic.yaml`` when no such file exists.
"""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path, PurePath

from aucli.errors import AucliError, UsageError

__all__ = [
    "package_path",
    "assets_dir",
    "registry_path",
    "card_path",
    "recipes_dir",
    "recipe_names",
    "recipe_path",
    "resolve_recipe",
]

_RECIPE_SUFFIXES = (".yaml", ".yml")


def package_path(*parts: str) -> Path:
    """The file system path of ``aucli/PARTS...`` in the installed package (it need not exist)."""
    resource = files("aucli").joinpath(*parts)
    if not isinstance(resource, Path):
        raise AucliError(f"aucli's data files must lie on the file system, found {resource!r}; install aucli unpacked (pip install)")
    return resource


def assets_dir() -> Path:
    """``aucli/assets``: the registry, the model cards and the embedded weights."""
    return package_path("assets")


def registry_path() -> Path:
    """The packaged model registry ``aucli/assets/registry.json`` (``$AUCLI_MODELS`` aside: see
    :func:`aucli.model.registry.default_registry_path`)."""
    return assets_dir() / "registry.json"


def card_path(name: str) -> Path:
    """The markdown model card of registered model ``name``: ``aucli/assets/cards/NAME.md``."""
    return assets_dir() / "cards" / f"{name}.md"


def recipes_dir() -> Path:
    """``aucli/recipes``: the packaged training recipes."""
    return package_path("recipes")


def recipe_names() -> list[str]:
    """The names of the packaged recipes, sorted (``["bp4d", "casme2", "disfa", "synthetic"]``)."""
    folder = recipes_dir()
    return sorted(p.stem for p in folder.iterdir() if p.suffix in _RECIPE_SUFFIXES) if folder.is_dir() else []


def recipe_path(name: str) -> Path:
    """The packaged recipe ``name`` (``synthetic`` or ``synthetic.yaml``); :class:`UsageError` if there is none."""
    stem = name[: -len(PurePath(name).suffix)] if PurePath(name).suffix in _RECIPE_SUFFIXES else name
    if stem in recipe_names():
        for suffix in _RECIPE_SUFFIXES:
            if (recipes_dir() / f"{stem}{suffix}").is_file():
                return recipes_dir() / f"{stem}{suffix}"
    raise UsageError(f"no packaged recipe {name!r}{_recipe_hint(stem)}")


def resolve_recipe(path_or_name: str | Path) -> Path:
    """A recipe's file: ``path_or_name`` when that file exists, else the packaged recipe it names.

    The packaged spellings are ``NAME``, ``NAME.yaml`` and ``recipes/NAME.yaml``; anything else
    that is not a file is a :class:`UsageError` listing the packaged recipes.
    """
    path = Path(path_or_name)
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"recipe {path} is a folder; give a YAML file or a packaged recipe ({', '.join(recipe_names())})")
    parts = PurePath(str(path_or_name)).parts
    bare = len(parts) == 1 or (len(parts) == 2 and parts[0] == "recipes")
    suffix = PurePath(parts[-1]).suffix if parts else ""
    if bare and suffix in ("", *_RECIPE_SUFFIXES):
        try:
            return recipe_path(parts[-1])
        except UsageError:
            pass
    stem = PurePath(parts[-1]).stem if parts else ""
    raise UsageError(f"recipe file not found: {path_or_name}{_recipe_hint(stem)}")


def _recipe_hint(stem: str) -> str:
    names = recipe_names()
    close = difflib.get_close_matches(stem, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{hint} (packaged recipes: {', '.join(names) or 'none'})"
