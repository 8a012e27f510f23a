"""The demo's audit: judge the corpus's labels with the shipped model and score the queue.

The demo corpus is rendered with label noise (``aucli synth --noise``), so which labels are wrong
is known exactly: where the label set ``synth`` (what the "coders" wrote) differs from
``synth_clean`` (what was rendered). The judge is the base checkpoint, which never saw this corpus
(it was trained on other identities), so its probabilities are out-of-sample for every frame;
they are calibrated per AU by cross-fitting over subject groups (:func:`aucli.audit.sources.from_checkpoint`).

A flag of the review queue is counted as a true error when at least half of the labels it covers
(its frames, its AU) differ from the rendered truth. Precision at k is the share of true errors
among the k best-ranked flags; the base rate is the share of wrong labels among all judged labels,
what a reviewer would find by checking labels at random.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AuditCheck", "FlagRow", "audit_labels", "base_model_scores"]

#: The queue length whose precision the demo prints.
TOP_K = 50


@dataclass
class FlagRow:
    """One flag of the queue, as the report shows it."""

    rank: int
    subject: str
    source: str
    au: str
    frames: str
    label: int
    peak_p: float
    score: float
    reason: str
    wrong_share: float
    row: int

    @property
    def is_error(self) -> bool:
        return self.wrong_share >= 0.5


@dataclass
class AuditCheck:
    """The audit run and how its queue fares against the injected noise."""

    run: str
    judge: str
    labels_judged: int
    wrong_labels: int
    n_flags: int
    top_k: int
    hits: int
    oof_auc: dict[str, float] = field(default_factory=dict)
    top: list[FlagRow] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.hits / self.top_k if self.top_k else float("nan")

    @property
    def base_rate(self) -> float:
        return self.wrong_labels / self.labels_judged if self.labels_judged else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run, "judge": self.judge, "labels_judged": self.labels_judged, "wrong_labels": self.wrong_labels,
            "base_rate": self.base_rate, "flags": self.n_flags, "top_k": self.top_k, "hits": self.hits,
            "precision_at_k": self.precision, "oof_auc": self.oof_auc, "top": [asdict(f) for f in self.top],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditCheck:
        return cls(run=data["run"], judge=data["judge"], labels_judged=int(data["labels_judged"]),
                   wrong_labels=int(data["wrong_labels"]), n_flags=int(data["flags"]), top_k=int(data["top_k"]),
                   hits=int(data["hits"]), oof_auc=dict(data["oof_auc"]), top=[FlagRow(**f) for f in data["top"]])


def _frames(start: int, stop: int) -> str:
    return str(start) if start == stop else f"{start}-{stop}"


def audit_labels(store: Path, checkpoint: Path, *, label_set: str, truth: str, device: str, name: str = "demo",
                 keep: int = 20) -> AuditCheck:
    """Audit ``label_set`` with ``checkpoint`` (stored as ``/audit/<name>``); score the queue against ``truth``."""
    from aucli.audit.run import run_audit
    from aucli.audit.sources import from_checkpoint
    from aucli.store import CorpusStore

    oof = from_checkpoint(store, checkpoint, label_set=label_set, device=device)
    record = run_audit(store, oof, label_set=label_set, name=name)
    with CorpusStore.open(store) as opened:
        clean = opened.read_labels(truth, au_names=record.au_names).occurrence
        noisy = opened.read_labels(label_set, au_names=record.au_names).occurrence
    known = ((noisy == 0) | (noisy == 1))[record.rows] & ((clean == 0) | (clean == 1))[record.rows]
    wrong = (noisy != clean)[record.rows] & known
    flags = record.flags
    column = {a: i for i, a in enumerate(record.au_names)}
    shares = []
    for i in range(len(flags)):
        rows, k = flags.rows_of(i), column[str(flags.au[i])]
        shares.append(float(np.mean(noisy[rows, k] != clean[rows, k])))
    top_k = min(TOP_K, len(flags))
    top = []
    for i in range(min(keep, len(flags))):
        rows = flags.rows_of(i)
        top.append(FlagRow(
            rank=int(flags.rank[i]), subject=str(flags.subject[i]), source=str(flags.source_key[i]), au=str(flags.au[i]),
            frames=_frames(int(flags.frame_start[i]), int(flags.frame_stop[i])), label=int(flags.label[i]),
            peak_p=float(flags.peak_p[i]), score=float(flags.score[i]), reason=str(flags.reason[i]),
            wrong_share=shares[i], row=int(rows[len(rows) // 2]),
        ))
    return AuditCheck(
        run=record.name, judge=str(checkpoint), labels_judged=int(known.sum()), wrong_labels=int(wrong.sum()),
        n_flags=len(flags), top_k=top_k, hits=int(sum(s >= 0.5 for s in shares[:top_k])),
        oof_auc={a: float(v) for a, v in zip(record.au_names, record.skill)}, top=top,
    )


def base_model_scores(store: Path, checkpoint: Path, *, label_set: str, subjects: list[str], device: str):
    """The base checkpoint on ``subjects`` before any fine-tuning, at its own thresholds (a MetricReport)."""
    from aucli.engine.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, store, labels=label_set, subjects=subjects, device=device).report
