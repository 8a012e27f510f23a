"""What a prediction run reports: one outcome per input, the run's totals, and their rendering."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.errors import MediaError

__all__ = ["InputOutcome", "PredictSummary", "check_predicted_any", "render_predict_summary"]


@dataclass
class InputOutcome:
    """What happened to one input.

    ``status``: ``done`` (predicted now), ``skipped`` (its table or store run was already there),
    ``failed`` (nothing written). ``table``: the table's path relative to the output folder, or
    ``/predictions/<run>`` for a store.
    """

    key: str
    kind: str
    status: str
    frames: int = 0
    faces: int = 0
    table: str = ""
    message: str = ""
    subject: str = ""
    path: str = ""


@dataclass
class PredictSummary:
    """The end-of-run report of :func:`predict_sources` / :func:`predict_store` / :func:`run_predict`."""

    out: Path | None
    checkpoint: dict[str, Any]
    au_names: list[str]
    thresholds: list[float]
    device: str = "cpu"
    precision: str = "fp32"
    table_format: str = "csv"
    shard: tuple[int, int] | None = None
    outcomes: list[InputOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    predicted_frames: int = 0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes if o.status == "done")

    @property
    def faces(self) -> int:
        return sum(o.faces for o in self.outcomes if o.status == "done")

    @property
    def frames_per_second(self) -> float:
        """Sampled frames (store inputs: faces) predicted in this run per wall-clock second."""
        return self.predicted_frames / self.seconds if self.seconds > 0 else 0.0

    def merge(self, other: PredictSummary) -> None:
        """Add another part of the same run (a store next to media inputs)."""
        self.outcomes.extend(other.outcomes)
        self.problems.extend(other.problems)
        self.seconds += other.seconds
        self.model_seconds += other.model_seconds
        self.predicted_frames += other.predicted_frames
        self.out = self.out or other.out

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out) if self.out else None,
            "checkpoint": dict(self.checkpoint),
            "au_names": list(self.au_names),
            "thresholds": list(self.thresholds),
            "device": self.device,
            "precision": self.precision,
            "format": self.table_format,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "inputs": {s: self.count(s) for s in ("done", "skipped", "failed")},
            "frames": self.frames,
            "faces": self.faces,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
            "problems": list(self.problems),
        }


def check_predicted_any(summary: PredictSummary) -> None:
    """Raise when every input of the run failed: the command exits 1 after printing its summary.

    An input whose table (or store run) is written counts, also one without a face (its table
    holds a row per sampled frame with ``success`` 0), and so does one skipped because its table
    was already there. A run with no input at all (an empty shard) raises nothing. The same rule as
    :func:`aucli.preprocess.check_stored_any` (docs/exit-codes.md).
    """
    if not summary.outcomes or any(o.status != "failed" for o in summary.outcomes):
        return
    raise MediaError(f"no input was predicted ({summary.count('failed')} failed); see the problems above")


def render_predict_summary(summary: PredictSummary) -> None:
    """Print the end-of-run summary: totals, the inputs of this run (up to 30), problems."""
    from rich.table import Table

    from aucli.console import console

    where = str(summary.out) if summary.out else "stores"
    shard = f", shard {summary.shard[0]}/{summary.shard[1]}" if summary.shard else ""
    totals = Table(title=f"Predict: {where}{shard}", show_header=True, header_style="bold")
    for column in ("inputs done", "skipped", "failed", "frames", "faces", "frames/s", "seconds"):
        totals.add_column(column, justify="right")
    totals.add_row(
        str(summary.count("done")),
        str(summary.count("skipped")),
        str(summary.count("failed")),
        str(summary.frames),
        str(summary.faces),
        f"{summary.frames_per_second:.1f}",
        f"{summary.seconds:.1f}",
    )
    console.print(totals)
    shown = [o for o in summary.outcomes if o.status != "skipped"]
    if shown and len(shown) <= 30:
        table = Table(show_header=True, header_style="bold")
        for column, justify in (
            ("input", "left"),
            ("status", "left"),
            ("frames", "right"),
            ("faces", "right"),
            ("written to", "left"),
            ("problem", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for o in shown:
            status = "[red]failed[/red]" if o.status == "failed" else o.status
            table.add_row(o.key, status, str(o.frames), str(o.faces), o.table, o.message, style=None)
        console.print(table)
    listed = {o.message for o in shown} if shown and len(shown) <= 30 else set()
    others = [p for p in summary.problems if p not in listed]
    if others:
        console.print(f"[yellow]{len(others)} problem(s):[/yellow]")
        for problem in others:
            console.print(f"  - {problem}", highlight=False, markup=False)
    console.print(
        f"AUs: {' '.join(summary.au_names)} (thresholds {', '.join(f'{t:.2f}' for t in summary.thresholds)})", highlight=False
    )
