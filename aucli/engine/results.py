"""What a training run reports: each fold's reports at its best epoch, and the run's per-AU summary.

``summary.json`` and ``summary.csv`` in the run folder hold per-AU test F1 over the folds run so far
(each fold, mean, std); a fold's ``result.json`` is :meth:`FoldResult.record` (its checkpoint named
relative to the fold folder, and read back only from inside it).
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.config import Recipe
from aucli.console import console
from aucli.fileio import atomic_write_json, atomic_write_text, resolve_inside
from aucli.metrics import MetricReport
from aucli.protocols import FoldSplit

__all__ = ["FoldResult", "TrainResult", "print_result", "write_summary"]


@dataclass
class FoldResult:
    """One fold's outcome: reports at the best epoch (selected on validation subjects)."""

    fold: int
    split: FoldSplit
    best_epoch: int
    best_step: int
    test: MetricReport
    test_at_half: MetricReport
    validation: MetricReport | None
    thresholds: np.ndarray
    checkpoint: Path
    folder: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    stopped_by: str = ""  # "optim.epochs" or "optim.max_steps": the limit that ended training ("" in older runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "subjects": self.split.subjects(),
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "thresholds": [float(t) for t in self.thresholds],
            "checkpoint": str(self.checkpoint),
            "parameters": self.parameters,
            "wall_time_s": self.wall_time_s,
            "stopped_by": self.stopped_by,
            "test": self.test.to_dict(),
            "test_at_0.5": self.test_at_half.to_dict(),
            "validation": self.validation.to_dict() if self.validation is not None else None,
        }

    def record(self) -> dict[str, Any]:
        """:meth:`to_dict` as the fold's ``result.json`` keeps it: the checkpoint named inside the fold folder."""
        return {**self.to_dict(), "checkpoint": self.checkpoint.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path) -> FoldResult:
        """A fold's result read back from ``folder/result.json``; its checkpoint must lie in ``folder``."""
        subjects = data["subjects"]
        checkpoint = resolve_inside(folder, str(data["checkpoint"]), str(Path(folder) / "result.json"))
        split = FoldSplit(data["fold"], tuple(subjects["train"]), tuple(subjects["validation"]), tuple(subjects["test"]))
        return cls(
            fold=data["fold"], split=split, best_epoch=data["best_epoch"], best_step=data["best_step"],
            test=MetricReport.from_dict(data["test"]), test_at_half=MetricReport.from_dict(data["test_at_0.5"]),
            validation=MetricReport.from_dict(data["validation"]) if data.get("validation") else None,
            thresholds=np.asarray(data["thresholds"], dtype=np.float64), checkpoint=checkpoint, folder=folder,
            parameters=data.get("parameters", {}), wall_time_s=float(data.get("wall_time_s", 0.0)), stopped_by=str(data.get("stopped_by", "")),
        )


@dataclass
class TrainResult:
    """All folds of a run; :meth:`summary` gives per-AU test F1 mean and spread over folds."""

    folder: Path
    recipe: Recipe
    au_names: list[str]
    label_set: str
    folds: list[FoldResult]

    def f1_matrix(self) -> np.ndarray:
        """(n_folds, n_aus) test F1 of each fold (NaN where undefined)."""
        return np.stack([f.test.f1 for f in self.folds]) if self.folds else np.zeros((0, len(self.au_names)))

    def mean_f1(self) -> float:
        """Mean over folds of each fold's mean F1 over AUs (the field's headline number)."""
        values = [f.test.mean_f1 for f in self.folds if np.isfinite(f.test.mean_f1)]
        return float(np.mean(values)) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        f1 = self.f1_matrix()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(f1, axis=0) if len(f1) else np.full(len(self.au_names), np.nan)
            std = np.nanstd(f1, axis=0) if len(f1) else np.full(len(self.au_names), np.nan)
        fold_means = [f.test.mean_f1 for f in self.folds]
        return {
            "au_names": self.au_names,
            "folds": [f.fold for f in self.folds],
            "f1": f1.tolist(),
            "f1_mean": mean.tolist(),
            "f1_std": std.tolist(),
            "mean_f1_per_fold": fold_means,
            "mean_f1": self.mean_f1(),
            "mean_f1_std": float(np.std(fold_means)) if fold_means else float("nan"),
            "mean_auc_per_fold": [f.test.mean_auc for f in self.folds],
            "method": self.recipe.train.method,
            "stopped_by": [f.stopped_by for f in self.folds],
            "trainable_parameters": self.folds[0].parameters.get("trainable") if self.folds else None,
        }

    def table(self):
        """Per-AU test F1 (%) of each fold, their mean and standard deviation."""
        from rich.table import Table

        folds = f"{len(self.folds)} folds" if len(self.folds) > 1 else f"fold {self.folds[0].fold}" if self.folds else "no fold"
        table = Table(title="Test F1 (%) per AU", caption=f"{self.recipe.train.method}, {folds}, label set {self.label_set}")
        table.add_column("AU")
        for fold in self.folds:
            table.add_column(f"fold {fold.fold}", justify="right")
        if len(self.folds) > 1:
            table.add_column("mean", justify="right", style="bold")
            table.add_column("std", justify="right")
        summary = self.summary()
        for i, name in enumerate(self.au_names):
            cells = [_pct(f.test.f1[i]) for f in self.folds]
            if len(self.folds) > 1:
                cells += [_pct(summary["f1_mean"][i]), _pct(summary["f1_std"][i])]
            table.add_row(name, *cells)
        table.add_section()
        cells = [_pct(f.test.mean_f1) for f in self.folds]
        if len(self.folds) > 1:
            cells += [_pct(summary["mean_f1"]), _pct(summary["mean_f1_std"])]
        table.add_row("mean", *cells, style="bold")
        return table


def _pct(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def write_summary(run: TrainResult) -> None:
    """``summary.json`` and ``summary.csv`` of the folds of ``run`` so far."""
    summary = run.summary()
    atomic_write_json(run.folder / "summary.json", summary)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["au", *[f"fold{f}" for f in summary["folds"]], "mean", "std"])
    for i, name in enumerate(run.au_names):
        row = [*[fold_f1[i] for fold_f1 in summary["f1"]], summary["f1_mean"][i], summary["f1_std"][i]]
        writer.writerow([name, *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in row]])
    row = [*summary["mean_f1_per_fold"], summary["mean_f1"], summary["mean_f1_std"]]
    writer.writerow(["mean", *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in row]])
    atomic_write_text(run.folder / "summary.csv", buffer.getvalue())


def print_result(run: TrainResult) -> None:
    """The end-of-run table on stdout."""
    console.print(run.table())
