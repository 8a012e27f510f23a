"""The layers of docs/architecture.md hold and no module imports itself through others.

The contracts are import-linter's, in pyproject.toml ([tool.importlinter]): a layers contract
(cli > workflows > engine > components > primitives; a layer may import only the layers below it,
and the packages of a ``|`` layer not each other) and an acyclic-siblings contract (no cycle
between the packages of aucli, nor between the modules of one package). Imports inside functions
count as much as those at the top of a module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml', limit_to_contracts=(sys.argv[1],), no_cache=True, no_logo=True))"


@pytest.mark.parametrize("contract", ["layers", "acyclic"])
def test_the_import_contract_is_kept(contract: str) -> None:
    finished = subprocess.run([sys.executable, "-c", LINT, contract], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    assert "1 kept, 0 broken" in finished.stdout, finished.stdout[-2000:]


def test_a_broken_layer_is_caught(tmp_path: Path) -> None:
    """The check can fail: with aucli.errors made the top layer, every module that imports it breaks the contract."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '    "aucli.errors",\n' in text
    config = tmp_path / "broken.toml"
    config.write_text(text.replace('    "aucli.errors",\n', "").replace("layers = [\n", 'layers = [\n    "aucli.errors",\n'))
    code = LINT.replace("'pyproject.toml'", repr(str(config)))
    finished = subprocess.run([sys.executable, "-c", code, "layers"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode != 0 and "BROKEN" in finished.stdout
