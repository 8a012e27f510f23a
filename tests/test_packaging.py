"""The wheel carries the package data (registry, cards, recipes, embedded weights), and an installed
wheel finds them through importlib.resources, away from the source tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Run in a fresh interpreter whose ``aucli`` is the installed wheel: where each data file resolves.
PROBE = r"""
import json, sys
from pathlib import Path
import aucli
from aucli import resources
from aucli.config import load_recipe
from aucli.model.registry import checkpoint_choices, default_registry_path, load_registry, registered_backbones, resolve_checkpoint
from aucli.model.weights import resolve_backbone_weights

report = {
    "aucli": aucli.__file__,
    "registry": str(default_registry_path()),
    "backbones": {name: resolve_backbone_weights(name) for name in registered_backbones()},
    "checkpoints": {name: str(resolve_checkpoint(name)) for name in load_registry()},
    "cards": {name: str(resources.card_path(name)) for name in [*registered_backbones(), *load_registry()]},
    "recipes": {name: str(resources.recipe_path(name)) for name in resources.recipe_names()},
    "synthetic_lr": load_recipe("synthetic").optim.lr,
    "choices": checkpoint_choices(),
}
print(json.dumps(report))
"""


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def registry_files() -> set[str]:
    """Wheel paths of every file the source registry names (weights, JSON cards, markdown cards)."""
    from aucli.resources import registry_path

    data = json.loads(registry_path().read_text(encoding="utf-8"))
    wanted = set()
    for section in ("checkpoints", "backbones"):
        for entry in (data.get(section) or {}).values():
            names = [*entry["files"].values(), *([entry["card"]] if entry.get("card") else [])]
            wanted |= {(Path("aucli/assets") / name).as_posix() for name in names}
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built offline from a copy of the source (the checkout itself gets no build/ folder)."""
    pytest.importorskip("setuptools", reason="building the wheel without build isolation needs setuptools")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "aucli", source / "aucli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(work / "dist"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = (work / "dist").glob("aucli-*.whl")
    return built


def test_the_wheel_holds_the_package_data_and_resolves_it_when_installed(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {f"aucli/recipes/{p.name}" for p in (ROOT / "aucli" / "recipes").glob("*.yaml")}
    wanted = {
        "aucli/assets/registry.json",
        "aucli/assets/cards/synthface-vit-s112.md",
        "aucli/assets/synthface_vit_s112.safetensors",
        "aucli/assets/synthface_vit_s112.json",
        "aucli/recipes/synthetic.yaml",
        *recipes,
        *registry_files(),
    }
    assert wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"
    others = {name.split("/")[0] for name in names} - {"aucli"}
    assert len(others) == 1 and others.pop().endswith(".dist-info")  # no tests, bench or models/ in the wheel

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("AUCLI_MODELS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    def installed(path: str) -> Path:
        resolved = Path(path).resolve()
        assert resolved.is_relative_to(site.resolve()), f"{path} is not inside the installed wheel {site}"
        assert resolved.is_file(), path
        return resolved

    installed(report["aucli"])
    registry = installed(report["registry"])
    data = json.loads(registry.read_text(encoding="utf-8"))
    assert "synthface-vit-s112" in report["backbones"]
    for name, weights in report["backbones"].items():
        assert sha256(installed(weights)) == data["backbones"][name]["sha256"]["weights"]
    for name, meta in report["checkpoints"].items():  # registered checkpoints, once there are any
        assert sha256(installed(meta)) == data["checkpoints"][name]["sha256"]["config"]
    for card in report["cards"].values():
        installed(card)
    assert set(report["recipes"]) >= {"bp4d", "casme2", "disfa", "synthetic"}
    for name, path in report["recipes"].items():
        assert sha256(installed(path)) == sha256(ROOT / "aucli" / "recipes" / f"{name}.yaml")
    assert report["synthetic_lr"] > 0
    assert "synthface-vit-s112" in report["choices"]
