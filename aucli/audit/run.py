"""Run an audit on a store and keep it as ``/audit/<run>``; read one back.

``/audit/<run>`` (written atomically; a label set is never edited)::

    rows          (n,)       int64    audited store rows, in sequence order (source, track, frame)
    segment       (n,)       int64    segment id (no frame gap inside one)
    probs         (n, K)     float32  calibrated out-of-fold probabilities
    raw_probs     (n, K)     float32  the model's own sigmoid(logit)
    labels        (n, K)     int8     the audited labels as they were (1 / 0 / -1)
    fold          (n,)       int32    fold (or calibration group) that judged each row
    frame_scores  (n, K)     float32  suspicion score of every known label (NaN unknown)
    flag_*        (m,)                the ranked flags (aucli.audit.rank.FlagTable), flag_rows ragged
    attrs: label_set, au_names (label-set AUs audited), model_aus, thresholds, scoring, confusion_pairs
           (the AU pairs whose label swaps lent evidence), max_gap,
           skill (per-AU AUC of the probabilities against the audited labels), min_auc, skipped
           (AU -> why it has no flag), source (how probabilities were made), checkpoints,
           calibrations, counts, n_flags

A model that cannot tell an AU apart on held-out subjects gives every frame about the AU's base
rate after calibration; for a rare AU that is below the spurious threshold, and every positive label
would be flagged. So an AU whose out-of-fold AUC (against the audited labels) is below ``min_auc``
(0.6 by default) gets no flag; its labels are still scored (``frame_scores``) and the summary says why.
Nor does it lend confusion evidence to its partner AU (:mod:`aucli.audit.flags`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.audit.flags import ScoringConfig, score_labels
from aucli.audit.rank import FlagTable
from aucli.audit.sources import OutOfFold
from aucli.audit.temporal import segment_ids, sequence_order
from aucli.audit.thresholds import AuditThresholds, derive_thresholds
from aucli.errors import StoreError, UsageError
from aucli.metrics import auc_scores

__all__ = ["DEFAULT_MIN_AUC", "AuditRecord", "audit_arrays", "read_audit", "run_audit"]

#: AUs whose out-of-fold probabilities rank the audited labels worse than this AUC get no flag.
DEFAULT_MIN_AUC = 0.6


@dataclass
class AuditRecord:
    """An audit: what was judged, with which probabilities and thresholds, and the ranked flags."""

    name: str
    store: Path
    label_set: str
    au_names: list[str]
    model_aus: list[str]
    rows: np.ndarray
    segment: np.ndarray
    probs: np.ndarray
    raw_probs: np.ndarray
    labels: np.ndarray
    fold: np.ndarray
    frame_scores: np.ndarray
    flags: FlagTable
    thresholds: AuditThresholds
    scoring: ScoringConfig
    max_gap: float
    source: dict[str, Any]
    skill: np.ndarray = field(default_factory=lambda: np.zeros(0))
    min_auc: float = DEFAULT_MIN_AUC
    skipped: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    calibrations: dict[str, Any] = field(default_factory=dict)
    confusion_pairs: list[list[str]] = field(default_factory=list)
    created_at: str = ""

    def counts(self) -> dict[str, dict[str, int]]:
        return self.flags.counts(self.au_names)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: run, counts per AU, thresholds, source."""
        known = (self.labels == 0) | (self.labels == 1)
        return {
            "run": self.name, "store": str(self.store), "label_set": self.label_set, "faces": int(self.rows.size),
            "labels_judged": int(known.sum()), "flags": len(self.flags),
            "flagged_labels": int(self.flags.n_frames.sum()), "counts": self.counts(),
            "thresholds": self.thresholds.to_dict(), "scoring": self.scoring.to_dict(),
            "confusion_pairs": [list(pair) for pair in self.confusion_pairs], "source": self.source,
            "skill": {a: _plain_float(v) for a, v in zip(self.au_names, self.skill)}, "min_auc": self.min_auc,
            "skipped": dict(self.skipped),
            "checkpoints": self.checkpoints,
        }

    def table(self):
        """Rich table: flags per AU by kind and context."""
        from rich.table import Table

        pairs = ", ".join(f"{a}/{b}" for a, b in self.confusion_pairs) or "none"
        skipped = "".join(f"; [yellow]no flags for {name}: {why}[/yellow]" for name, why in self.skipped.items())
        # no outer edge, short headers, reasons in the caption: eleven columns fit 80 terminal columns
        table = Table(title=f"Audit {self.name}: {len(self.flags)} flag(s) on label set {self.label_set}", show_edge=False,
                      pad_edge=False,
                      caption=f"{self.rows.size:,} faces judged; temporal evidence {'on' if self.scoring.temporal else 'off'}; "
                              f"confusion pairs: {pairs}; swap: flags whose labels look swapped with the partner AU's; "
                              f"bnd.: boundary; labels: how many labels the flags cover; AUC: out-of-fold, against these labels{skipped}")
        columns = ("AU", "AUC", "miss.", "spur.", "isol.", "event", "bnd.", "dip", "swap", "labels", "top")
        for column in columns:
            table.add_column(column, justify="left" if column == "AU" else "right", no_wrap=True)
        counts = self.counts()
        for i, name in enumerate(self.au_names):
            c = counts[name]
            mine = self.flags.score[self.flags.au == name]
            contexts = [c["isolated"], c["event"], c["boundary"], c["dip"]] if self.scoring.temporal else ["-"] * 4
            auc = self.skill[i] if i < self.skill.size else np.nan
            shown_auc = "-" if not np.isfinite(auc) else f"{auc:.2f}"
            if name in self.skipped:
                table.add_row(name, shown_auc, *["[yellow]-[/yellow]"] * 9)
                continue
            table.add_row(name, shown_auc, str(c["missed"]), str(c["spurious"]), *map(str, contexts), str(c["confusion"]),
                          f"{c['frames']:,}", f"{mine.max():.3f}" if mine.size else "-")
        return table

    def top_table(self, n: int = 15):
        """Rich table of the ``n`` best-ranked flags."""
        from rich.table import Table

        table = Table(title=f"Top {min(n, len(self.flags))} flags", caption="the reasons are in the CSV queue and the HTML report")
        for column in ("#", "source", "frames", "AU", "label", "p", "score", "flag"):
            table.add_column(column, justify="right" if column in ("#", "label", "p", "score") else "left",
                             max_width=28 if column == "source" else None, overflow="ellipsis")
        f = self.flags
        for i in range(min(n, len(f))):
            frames = f"{f.frame_start[i]}" if f.frame_start[i] == f.frame_stop[i] else f"{f.frame_start[i]}-{f.frame_stop[i]}"
            kind = f"{f.kind[i]}, {f.context[i]}" + (f" ({f.side[i]})" if f.side[i] else "") + (f", swap {f.partner[i]}" if f.partner[i] else "")
            table.add_row(str(f.rank[i]), str(f.source_key[i]), frames, str(f.au[i]), str(int(f.label[i])),
                          f"{f.mean_p[i]:.2f}", f"{f.score[i]:.3f}", kind)
        return table


def audit_arrays(record: AuditRecord) -> dict[str, np.ndarray]:
    return {"rows": record.rows, "segment": record.segment, "probs": record.probs.astype(np.float32),
            "raw_probs": record.raw_probs.astype(np.float32), "labels": record.labels.astype(np.int8),
            "fold": record.fold.astype(np.int32), "frame_scores": record.frame_scores.astype(np.float32),
            **record.flags.to_arrays()}


def run_audit(
    store: str | Path,
    oof: OutOfFold,
    *,
    label_set: str,
    name: str | None = None,
    missed: str | float | dict[str, float] | None = None,
    spurious: str | float | dict[str, float] | None = None,
    margin: float | None = None,
    gammas: float | dict[str, float] | None = None,
    scoring: ScoringConfig | None = None,
    max_gap: float = 2.0,
    min_auc: float = DEFAULT_MIN_AUC,
    write: bool = True,
) -> AuditRecord:
    """Judge ``label_set`` of ``store`` with out-of-fold predictions and (by default) store the audit.

    Args:
        store: the corpus store (opened for appending when ``write``).
        oof: calibrated out-of-fold predictions (:mod:`aucli.audit.sources`).
        label_set: the label set to judge (its current labels; ``oof`` says which rows).
        name: audit run name (default: the label set's name, made unique).
        missed, spurious: threshold overrides (:func:`aucli.audit.thresholds.parse_threshold_spec`).
        margin, gammas: MDWA settings for p* (default: those of the model's recipe, ``oof.loss``).
        scoring: flag scoring options.
        max_gap: a frame step above ``max_gap`` times the usual one starts a new segment.
        min_auc: AUs whose out-of-fold AUC against the audited labels is below this get no flag.
        write: store the audit as ``/audit/<name>``.
    """
    from aucli.store import CorpusStore

    scoring = scoring or ScoringConfig()
    with CorpusStore.open(store, "a" if write else "r") as opened:
        if label_set not in opened.label_sets():
            have = ", ".join(opened.label_sets()) or "none"
            raise StoreError(f"no label set {label_set!r} in {store}; it has: {have}")
        label_aus = oof.label_aus
        labels_all = opened.read_labels(label_set, au_names=label_aus).occurrence
        if oof.rows.size and (oof.rows.min() < 0 or oof.rows.max() >= opened.n_faces):
            raise StoreError(f"the predictions name face rows up to {int(oof.rows.max())} but {store} has {opened.n_faces} faces")
        faces = opened.face_table(["source", "frame", "track"])
        sources = opened.source_table(latest=False)
        order = sequence_order(faces["source"][oof.rows], faces["track"][oof.rows], faces["frame"][oof.rows])
        rows = oof.rows[order]
        source, track, frame = faces["source"][rows], faces["track"][rows], faces["frame"][rows]
        segment = segment_ids(source, track, frame, max_gap=max_gap)
        labels = labels_all[rows]
        probs = oof.calibrated[order]
        loss = oof.loss or {}
        known = (labels == 0) | (labels == 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(known.sum(0) > 0, (labels == 1).sum(0) / np.maximum(known.sum(0), 1), np.nan)
        thresholds = derive_thresholds(
            label_aus, rates=rates, gammas=gammas if gammas is not None else _gammas_by_label_au(loss.get("gammas"), oof),
            gamma_tiers=loss.get("gamma_tiers") or (0.75, 1.0, 1.25),
            margin=margin if margin is not None else float(loss.get("margin", 0.05)), missed=missed, spurious=spurious,
        )
        skill = auc_scores(probs, labels)
        skipped = {a: ("the labels hold one class only" if not np.isfinite(skill[k]) else
                       f"held-out AUC {skill[k]:.2f} < {min_auc:g}: the model cannot judge it, or its labels disagree with the model throughout")
                   for k, a in enumerate(label_aus) if not skill[k] >= min_auc}
        scores = score_labels(probs, labels, segment, thresholds, scoring, skip=skipped)
        keep = scores.flags[~np.isin(scores.candidates.au[scores.flags], [label_aus.index(a) for a in skipped])]
        flags = FlagTable.from_candidates(scores.candidates.take(keep), au_names=label_aus, rows=rows, source=source, track=track,
                                          frame=frame, source_keys=sources["key"], subjects=sources["subject"])
        record = AuditRecord(
            name=name or label_set, store=Path(store), label_set=label_set, au_names=list(label_aus), model_aus=list(oof.au_names),
            rows=rows, segment=segment, probs=probs, raw_probs=oof.raw_probs[order], labels=labels, fold=oof.fold[order],
            frame_scores=scores.frame_scores, flags=flags, thresholds=thresholds, scoring=scoring, max_gap=float(max_gap),
            source=dict(oof.source), skill=skill, min_auc=float(min_auc), skipped=skipped, checkpoints={str(k): str(v) for k, v in oof.checkpoints.items()},
            calibrations={str(k): v.to_dict() for k, v in oof.calibrations.items()},
            confusion_pairs=[list(pair) for pair in scores.pairs],
        )
        if write:
            record.name = name if name is not None else opened.unique_run_name("audit", label_set)
            opened.write_run("audit", record.name, audit_arrays(record), _attrs(record))
            record.created_at = opened.run_attrs("audit", record.name).get("created_at", "")
    return record


def _plain_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _gammas_by_label_au(gammas: dict[str, float] | None, oof: OutOfFold) -> dict[str, float] | None:
    """The recipe's per-AU gammas (keyed by model AU) keyed by the label-set AU they judge."""
    if not gammas:
        return None
    return {oof.au_columns.get(a, a): float(g) for a, g in gammas.items() if oof.au_columns.get(a, a) in oof.label_aus}


def _attrs(record: AuditRecord) -> dict[str, Any]:
    return {
        "format": "aucli-audit-1", "label_set": record.label_set, "au_names": record.au_names, "model_aus": record.model_aus,
        "thresholds": record.thresholds.to_dict(), "scoring": record.scoring.to_dict(),
        "confusion_pairs": [list(pair) for pair in record.confusion_pairs], "max_gap": record.max_gap,
        "skill": [_plain_float(v) for v in record.skill], "min_auc": record.min_auc, "skipped": record.skipped,
        "source": record.source, "checkpoints": record.checkpoints, "calibrations": record.calibrations,
        "counts": record.counts(), "n_flags": len(record.flags),
    }


def read_audit(store, name: str) -> AuditRecord:
    """An audit run read back from an open :class:`aucli.store.CorpusStore`."""
    run = store.read_run("audit", name)
    attrs, arrays = run.attrs, run.arrays
    if attrs.get("format") != "aucli-audit-1":
        raise StoreError(f"audit run {name!r} of {store.path} is not in the aucli-audit-1 format (found {attrs.get('format')!r})")
    scoring_attrs = dict(attrs["scoring"])
    scoring_attrs.setdefault("confusion_pairs", [])  # audits stored before confusion evidence had none
    return AuditRecord(
        name=name, store=Path(store.path), label_set=attrs["label_set"], au_names=list(attrs["au_names"]),
        model_aus=list(attrs.get("model_aus", attrs["au_names"])), rows=arrays["rows"], segment=arrays["segment"],
        probs=arrays["probs"], raw_probs=arrays["raw_probs"], labels=arrays["labels"], fold=arrays["fold"],
        frame_scores=arrays["frame_scores"], flags=FlagTable.from_arrays(arrays),
        thresholds=AuditThresholds.from_dict(attrs["thresholds"]), scoring=ScoringConfig(**scoring_attrs),
        max_gap=float(attrs.get("max_gap", 2.0)), source=dict(attrs.get("source", {})),
        skill=np.array([np.nan if v is None else v for v in attrs.get("skill", [])], dtype=np.float64),
        min_auc=float(attrs.get("min_auc", DEFAULT_MIN_AUC)), skipped=dict(attrs.get("skipped", {})),
        checkpoints=dict(attrs.get("checkpoints", {})), calibrations=dict(attrs.get("calibrations", {})),
        confusion_pairs=[list(pair) for pair in attrs.get("confusion_pairs", [])], created_at=str(attrs.get("created_at", "")),
    )


def check_run_name(store, name: str | None) -> None:
    """Fail before any work when ``/audit/<name>`` exists already."""
    if name is not None and name in store.runs("audit"):
        raise UsageError(f"audit run {name!r} already exists in {store.path}; choose another --name or delete it")
