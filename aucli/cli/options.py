"""Options shared by several commands, so that every command spells them the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...",
)


def store_argument(exists: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The STORE positional argument (an HDF5 corpus store)."""
    return click.argument("store", type=click.Path(exists=exists, dir_okay=False, writable=not exists))


def echo_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON on stdout (numpy scalars and paths become plain values)."""
    click.echo(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
