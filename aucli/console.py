"""Shared rich consoles: results (tables) on stdout, progress and warnings on stderr."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Results: tables and summaries a user may pipe or read.
console = Console()
#: Progress bars, warnings and notes, so that stdout stays clean for --json.
err_console = Console(stderr=True)

#: Seconds between two plain progress lines of one task when stderr is not a terminal.
DEFAULT_PROGRESS_INTERVAL = 10.0
PROGRESS_INTERVAL_ENV = "AUCLI_PROGRESS_INTERVAL"


def warn(message: str) -> None:
    """A warning about one bad item in a batch; the batch goes on."""
    err_console.print(f"[yellow]Warning:[/yellow] {message}", highlight=False)


def progress_interval() -> float:
    """Seconds between plain progress lines: ``$AUCLI_PROGRESS_INTERVAL`` (0 = every update), else 10."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also catches NaN
        warn(f"{PROGRESS_INTERVAL_ENV}={raw!r} is not a number of seconds >= 0; using {DEFAULT_PROGRESS_INTERVAL:g}")
        return DEFAULT_PROGRESS_INTERVAL
    return value


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=max(0, int(seconds))))


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class LogProgress(Progress):
    """A rich ``Progress`` that, on a console that is not a terminal, writes plain lines instead.

    On a terminal (or in Jupyter) it is rich's live bar, unchanged. Piped to a file or a pipe, rich's live
    display shows nothing until the end; there this class skips the live display and, from ``update()`` and
    ``advance()``, prints one line per task at most every ``interval`` seconds (0: on every update), one
    line when a task finishes, and on ``stop()`` one last line for any task that moved since its last line::

        fold 1 epoch 1/4: 30/120  2.1 steps/s  loss 0.4123  elapsed 0:00:14  left 0:00:43

    The time left comes from the task's average rate since it was added (or reset). ``disable`` silences
    both forms. The task field ``rate`` (free text) is shown when given.
    """

    def __init__(self, *columns: Any, interval: float = DEFAULT_PROGRESS_INTERVAL, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.interval = max(0.0, float(interval))
        self.plain = self.console.is_dumb_terminal or not (self.console.is_terminal or self.console.is_jupyter)
        # per task: (time, completed) at the start, time and completed of its last line, whether it finished
        self._origin: dict[TaskID, tuple[float, float]] = {}
        self._last_line: dict[TaskID, tuple[float, float]] = {}
        self._done: set[TaskID] = set()

    def start(self) -> None:
        if not self.plain:
            super().start()

    def stop(self) -> None:
        if not self.plain:
            super().stop()
            return
        for task_id in self.task_ids:
            task = self._tasks[task_id]
            if task_id not in self._done and task_id in self._last_line and task.completed != self._last_line[task_id][1]:
                self._report(task_id, force=True)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible, **fields)
        self._mark_start(task_id)
        return task_id

    def reset(self, task_id: TaskID, *, start: bool = True, total: float | None = None, completed: int = 0,
              visible: bool | None = None, description: str | None = None, **fields: Any) -> None:
        super().reset(task_id, start=start, total=total, completed=completed, visible=visible, description=description, **fields)
        self._mark_start(task_id)

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        super().update(task_id, total=total, completed=completed, advance=advance, description=description,
                       visible=visible, refresh=refresh, **fields)
        self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        super().remove_task(task_id)
        for book in (self._origin, self._last_line):
            book.pop(task_id, None)
        self._done.discard(task_id)

    def _mark_start(self, task_id: TaskID) -> None:
        now = self.get_time()
        completed = self._tasks[task_id].completed
        self._origin[task_id] = (now, completed)
        self._last_line[task_id] = (now, completed)
        self._done.discard(task_id)

    def _report(self, task_id: TaskID, *, force: bool = False) -> None:
        """Print the task's line if it is due: it finished, ``force``, or ``interval`` passed since the last."""
        if not self.plain or self.disable:
            return
        with self._lock:
            task = self._tasks[task_id]
            now = self.get_time()
            finished = task.total is not None and task.completed >= task.total
            if not finished:
                self._done.discard(task_id)  # e.g. its total grew again
            if not task.visible:
                return
            if finished:
                if task_id in self._done:
                    return
                self._done.add(task_id)
            elif not force and now - self._last_line[task_id][0] < self.interval:
                return
            self._last_line[task_id] = (now, task.completed)
            line = self.format_line(task_id, now)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def format_line(self, task_id: TaskID, now: float | None = None) -> str:
        """The plain line for one task: description, counts, rate field, elapsed and time left."""
        task = self._tasks[task_id]
        now = self.get_time() if now is None else now
        start_time, start_completed = self._origin.get(task_id, (now, 0.0))
        elapsed = now - start_time
        parts = [f"{task.description}: {_count(task.completed)}" + (f"/{_count(task.total)}" if task.total is not None else "")]
        rate = str(task.fields.get("rate") or "").strip()
        if rate:
            parts.append(rate)
        parts.append(f"elapsed {_clock(elapsed)}")
        if task.total is not None:
            remaining = max(task.total - task.completed, 0.0)
            speed = (task.completed - start_completed) / elapsed if elapsed > 0 else 0.0
            parts.append("left " + (_clock(remaining / speed) if speed > 0 else _clock(0) if remaining == 0 else "-:--:--"))
        return "  ".join(parts)


def progress(*, transient: bool = False, console: Console | None = None, interval: float | None = None) -> LogProgress:
    """A progress display in the project's style; pass ``rate="12.3 frames/s"`` as a task field.

    On a terminal it is a rich bar on ``console`` (default: stderr). When that console is not a terminal
    (output piped to a log), it prints a plain line per task every ``interval`` seconds (default
    ``$AUCLI_PROGRESS_INTERVAL`` or 10; 0 = every update) and when the task finishes; see ``LogProgress``.
    """
    return LogProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", style="cyan"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or err_console,
        transient=transient,
        interval=progress_interval() if interval is None else interval,
    )
