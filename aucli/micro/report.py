"""What finetune-micro reports: per fold and pooled F1 before and after fine-tuning, and its files.

F1 is computed per fold and, as the field reports it, pooled: TP/FP/FN summed over every fold's
test predictions (each at its fold's thresholds).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.config import Recipe
from aucli.fileio import atomic_write_json, atomic_write_text, json_safe
from aucli.metrics import MetricReport, confusion_counts
from aucli.micro.recipe import MicroConfig
from aucli.protocols import FoldSplit

__all__ = ["MicroFold", "MicroResult", "pooled_report", "write_metrics"]


def pooled_report(decisions: np.ndarray, labels: np.ndarray, au_names: Sequence[str], title: str) -> MetricReport:
    """F1 per AU from binary ``decisions (n, K)`` against ``labels (n, K)``, counts summed over all rows.

    Decisions pooled from models with different thresholds have no common score: AUC is NaN.
    """
    counts = confusion_counts(decisions.astype(np.float64), labels, 0.5)
    valid = (labels == 0) | (labels == 1)
    n_valid, n_positive = valid.sum(0), (labels == 1).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_valid > 0, n_positive / np.maximum(n_valid, 1), np.nan)
    nan = np.full(len(au_names), np.nan)
    return MetricReport(list(au_names), counts.f1, nan, rate, nan.copy(), n_valid, n_positive, title)


@dataclass
class MicroFold:
    """One fold: its subjects and test reports before (checkpoint) and after fine-tuning."""

    fold: int
    split: FoldSplit
    n_test: int
    before: MetricReport
    before_refit: MetricReport
    after: MetricReport
    best_epoch: int
    checkpoint: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "subjects": self.split.subjects(),
            "test_faces": self.n_test,
            "best_epoch": self.best_epoch,
            "checkpoint": str(self.checkpoint),
            "before": self.before.to_dict(),
            "before_refit": self.before_refit.to_dict(),
            "after": self.after.to_dict(),
        }


@dataclass
class MicroResult:
    """What :func:`finetune_micro` did: the AU pairs, per-fold and pooled reports, the written model."""

    folder: Path
    source: Path
    store: Path
    label_set: str
    au_pairs: dict[str, str]
    micro: MicroConfig
    recipe: Recipe
    folds: list[MicroFold]
    pooled: dict[str, MetricReport]
    n_faces: int
    n_windows: int
    notes: list[str] = field(default_factory=list)
    finetuned: Path | None = None
    final_subjects: dict[str, list[str]] | None = None

    @property
    def au_names(self) -> list[str]:
        return list(self.au_pairs)

    def summary(self) -> dict[str, Any]:
        pooled = {stage: report.to_dict() for stage, report in self.pooled.items()}
        before, after = self.pooled["before_refit"].mean_f1, self.pooled["after"].mean_f1
        return {
            "run": str(self.folder),
            "checkpoint": str(self.source),
            "store": str(self.store),
            "label_set": self.label_set,
            "au_pairs": dict(self.au_pairs),
            "protocol": self.micro.protocol,
            "tune": self.micro.tune,
            "n_folds": len(self.folds),
            "faces": self.n_faces,
            "event_windows": self.n_windows,
            "pooled": pooled,
            "mean_f1": {stage: report.mean_f1 for stage, report in self.pooled.items()},
            "mean_f1_gain": after - before if np.isfinite(after) and np.isfinite(before) else None,
            "finetuned": str(self.finetuned) if self.finetuned else None,
            "final_subjects": self.final_subjects,
            "notes": list(self.notes),
            "folds": [f.to_dict() for f in self.folds],
        }

    def table(self):
        """Pooled per-AU F1 (%) before and after fine-tuning, with the gain."""
        from rich.table import Table

        protocol = "LOSO" if self.micro.protocol == "loso" else "k-fold"
        tuned = "experts and heads" if self.micro.tune == "experts" else "heads only"
        table = Table(
            title=f"AU F1 (%), test predictions of {len(self.folds)} {protocol} folds pooled",
            caption=f"before: the checkpoint at its thresholds / at thresholds fitted on validation subjects; "
            f"after: fine-tuned ({tuned}) on {self.label_set}",
        )
        for column in ("AU", "positives", "before", "before (val thr)", "after", "gain"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        before, refit, after = self.pooled["before"], self.pooled["before_refit"], self.pooled["after"]
        for i, name in enumerate(self.au_names):
            label = name if self.au_pairs[name] == name else f"{name} ({self.au_pairs[name]})"
            table.add_row(label, f"{int(after.n_positive[i]):,}", _pct(before.f1[i]), _pct(refit.f1[i]), _pct(after.f1[i]),
                          _gain(after.f1[i] - refit.f1[i]))
        table.add_section()
        table.add_row("mean", "", _pct(before.mean_f1), _pct(refit.mean_f1), _pct(after.mean_f1),
                      _gain(after.mean_f1 - refit.mean_f1), style="bold")
        return table

    def folds_table(self):
        """Mean F1 (%) of each fold's test subjects before and after."""
        from rich.table import Table

        table = Table(title="Mean F1 (%) per fold", caption="AUs never present nor predicted in a fold's test faces have no F1 there")
        for column in ("fold", "test", "faces", "before", "before (val thr)", "after", "epoch"):
            table.add_column(column, justify="left" if column in ("fold", "test") else "right")
        for fold in self.folds:
            table.add_row(str(fold.fold), ", ".join(fold.split.test), f"{fold.n_test:,}", _pct(fold.before.mean_f1),
                          _pct(fold.before_refit.mean_f1), _pct(fold.after.mean_f1), str(fold.best_epoch))
        return table


def _pct(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _gain(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:+.1f}"


def write_metrics(result: MicroResult) -> None:
    """``metrics.jsonl`` (one line per fold and stage, then the pooled ones), ``metrics.csv``, ``summary.json``."""
    records = []
    for fold in result.folds:
        for stage in ("before", "before_refit", "after"):
            report: MetricReport = getattr(fold, stage)
            records.append({"scope": "fold", "fold": fold.fold, "test": list(fold.split.test), "stage": stage, "faces": fold.n_test,
                            "mean_f1": report.mean_f1, **report.to_dict()})
    for stage, report in result.pooled.items():
        records.append({"scope": "pooled", "fold": None, "test": None, "stage": stage, "faces": int(sum(f.n_test for f in result.folds)),
                        "mean_f1": report.mean_f1, **report.to_dict()})
    atomic_write_text(result.folder / "metrics.jsonl", "".join(json.dumps(json_safe(r)) + "\n" for r in records))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scope", "fold", "test", "stage", "faces", "mean_f1", *[f"f1_{au}" for au in result.au_names]])
    for record in records:
        f1 = record["per_au"]["f1"]
        values = [record["mean_f1"], *f1]
        writer.writerow([record["scope"], "" if record["fold"] is None else record["fold"], " ".join(record["test"] or []),
                         record["stage"], record["faces"], *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in values]])
    atomic_write_text(result.folder / "metrics.csv", buffer.getvalue())
    atomic_write_json(result.folder / "summary.json", result.summary())
