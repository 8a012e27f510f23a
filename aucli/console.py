"""Shared rich consoles: results (tables) on stdout, progress and warnings on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: Results: tables and summaries a user may pipe or read.
console = Console()
#: Progress bars, warnings and notes, so that stdout stays clean for --json.
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """A warning about one bad item in a batch; the batch goes on."""
    err_console.print(f"[yellow]Warning:[/yellow] {message}", highlight=False)


def progress(*, transient: bool = False) -> Progress:
    """A rich progress bar in the project's style; pass ``rate="12.3 frames/s"`` as a task field."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", style="cyan"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
