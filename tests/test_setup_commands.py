"""The README's two set-up commands: .ci/run runs command 2 as written, and both pin tested versions."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## The two commands\s+```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no '## The two commands' bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_test_command_as_written():
    install_demo, install_test = _readme_commands()
    assert install_demo.endswith("aucli demo --out demo/")
    assert install_test.endswith("python -m pytest -q")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert install_test in ci_lines


def test_both_commands_install_the_tested_versions_into_a_fresh_environment():
    for command in _readme_commands():
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
        assert "-c constraints.txt" in command


def test_constraints_pin_every_dependency_and_extra():
    import tomllib

    pinned = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line {line!r} is not NAME==VERSION"
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    for requirement in wanted:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pinned, f"{name} is not pinned in constraints.txt"
    assert pinned["torch"] == "2.14.1" and pinned["pytest"].startswith("9.")
