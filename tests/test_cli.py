"""The command line as a whole: lazy imports, help on every command, error formatting."""

from __future__ import annotations

import subprocess
import sys

from aucli.cli.main import COMMANDS, cli


def test_help_does_not_import_torch() -> None:
    code = "import sys; from aucli.cli.main import cli; cli(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_every_command_has_help_with_an_example(runner) -> None:
    assert COMMANDS, "no command registered"
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output, f"`aucli {name} --help` shows no example"


def test_unknown_command_suggests_a_close_one(runner) -> None:
    name = sorted(COMMANDS)[0]
    result = runner.invoke(cli, [name[:-1] + "x"])
    assert result.exit_code == 2
    assert "No such command" in result.output
