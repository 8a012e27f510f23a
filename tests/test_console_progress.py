"""progress() on a console that is not a terminal: plain, throttled lines instead of a silent live bar."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from aucli.console import LogProgress, progress, progress_interval


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, force_jupyter=False, width=60), buffer


class _Clock:
    """A fake clock for the progress display: each call moves on by ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _lines(buffer: io.StringIO) -> list[str]:
    return [line for line in buffer.getvalue().splitlines() if line.strip()]


def test_every_update_prints_a_line_with_counts_rate_and_time_left() -> None:
    con, buffer = _console()
    bar = LogProgress(console=con, interval=0, get_time=_Clock(1.0))
    assert bar.plain
    with bar:
        task = bar.add_task("fold 1", total=120, rate="")
        for step in range(1, 4):
            bar.update(task, completed=step * 30, description="fold 1 epoch 1/4",
                       rate=f"2.1 steps/s  67 img/s  loss 0.{4123 + step}")
    lines = _lines(buffer)
    assert len(lines) == 3
    assert lines[0].startswith("fold 1 epoch 1/4: 30/120  2.1 steps/s  67 img/s  loss 0.4124  elapsed 0:00:0")
    assert all("left " in line and "elapsed " in line for line in lines)
    # 90 of 120 done at a steady rate: the last line's time left is a third of its elapsed time.
    assert lines[-1].startswith("fold 1 epoch 1/4: 90/120  2.1 steps/s  67 img/s  loss 0.4126  elapsed 0:00:06")
    assert lines[-1].endswith("left 0:00:02")
    assert "\x1b[" not in buffer.getvalue()  # plain text, no live-display control codes


def test_a_long_interval_prints_only_the_final_line() -> None:
    con, buffer = _console()
    with progress(console=con, interval=3600) as bar:
        task = bar.add_task("predict", total=50, rate="")
        for _ in range(50):
            bar.advance(task)
        bar.update(task, rate="12.0 frames/s")  # already finished: no second final line
    lines = _lines(buffer)
    assert len(lines) == 1
    assert lines[0].startswith("predict: 50/50  elapsed ")
    assert lines[0].endswith("left 0:00:00")


def test_stop_flushes_an_unfinished_task_and_disable_silences() -> None:
    con, buffer = _console()
    with progress(console=con, interval=3600) as bar:
        task = bar.add_task("rendering", total=None, rate="")
        bar.update(task, completed=7, rate="7 faces")
    lines = _lines(buffer)
    assert len(lines) == 1 and lines[0].startswith("rendering: 7  7 faces  elapsed ")
    assert "left" not in lines[0]  # no total, no time left

    con, buffer = _console()
    bar = progress(console=con, interval=0)
    bar.disable = True
    with bar:
        task = bar.add_task("quiet", total=3, rate="")
        for _ in range(3):
            bar.advance(task)
    assert buffer.getvalue() == ""


def test_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUCLI_PROGRESS_INTERVAL", raising=False)
    assert progress_interval() == 10.0
    monkeypatch.setenv("AUCLI_PROGRESS_INTERVAL", "0")
    assert progress_interval() == 0.0
    con, buffer = _console()
    with progress(console=con) as bar:
        assert bar.interval == 0.0
        task = bar.add_task("preprocess", total=4, rate="")
        for _ in range(4):
            bar.advance(task)
    assert len(_lines(buffer)) == 4
    monkeypatch.setenv("AUCLI_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("AUCLI_PROGRESS_INTERVAL", "soon")
    assert progress_interval() == 10.0


def test_a_terminal_console_keeps_the_live_bar() -> None:
    buffer = io.StringIO()
    bar = progress(console=Console(file=buffer, force_terminal=True, width=60), interval=0)
    assert not bar.plain
