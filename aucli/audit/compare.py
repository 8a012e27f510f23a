"""Agreement of two label sets of one store (two coders, before and after an audit's corrections), or of a
label set with another tool's results (an OpenFace 2.0 or py-feat CSV of one video).

Per AU: Cohen's kappa and F1 of the other side against the reference over the frames both code,
event agreement (:mod:`aucli.events`: runs of 1s matched one-to-one by temporal IoU), the
positive rates, and ICC(3,1) of the intensities when both sides have them
(:func:`aucli.metrics.icc_3_1`).

A tool's CSV is tied to one store source (``source``: its key; by default the source whose file
stem is the CSV's stem, or the store's only source) and one face track (``track``, 0: the subject);
its frames meet the source's faces by frame index, each format's convention undone first
(OpenFace numbers frames from 1, py-feat from 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aucli.errors import StoreError, UsageError
from aucli.events import DEFAULT_MIN_IOU, EventAgreement, event_agreement, segment_ids, sequence_order
from aucli.metrics import agreement_f1, check_labels, cohen_kappa, intensity_icc, nanmean

__all__ = ["AgreementReport", "compare_label_sets", "compare_store_label_sets", "compare_store_with_tool"]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _percent(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f}"


def _number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"


@dataclass
class AgreementReport:
    """Per-AU agreement ``(n_aus,)`` of two label sets: kappa, frame F1, event F1, rates, coded rows and,
    when both sides have intensities, ICC(3,1) (``icc``; None otherwise)."""

    au_names: list[str]
    kappa: np.ndarray
    f1: np.ndarray
    events: EventAgreement
    rate_reference: np.ndarray
    rate_other: np.ndarray
    n_both: np.ndarray
    names: tuple[str, str] = ("A", "B")
    icc: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        def plain(values):
            return [_finite(float(v)) for v in np.asarray(values, dtype=np.float64)]

        per_au: dict[str, Any] = {
            "au": list(self.au_names), "kappa": plain(self.kappa), "f1": plain(self.f1),
            "event_f1": plain(self.events.f1), "events_reference": self.events.n_reference.tolist(),
            "events_other": self.events.n_other.tolist(), "events_matched": self.events.matched.tolist(),
            "rate_reference": plain(self.rate_reference), "rate_other": plain(self.rate_other),
            "n_both": self.n_both.tolist(),
        }
        out: dict[str, Any] = {
            "reference": self.names[0], "other": self.names[1], "min_iou": self.events.min_iou,
            "mean_kappa": _finite(nanmean(self.kappa)), "mean_f1": _finite(nanmean(self.f1)),
            "mean_event_f1": _finite(nanmean(self.events.f1)), "per_au": per_au,
        }
        if self.icc is not None:
            out["mean_icc"] = _finite(nanmean(self.icc))
            per_au["icc"] = plain(self.icc)
        return out

    def table(self):
        from rich.table import Table

        a, b = self.names
        table = Table(title=f"Agreement of {b} with {a}")
        columns = ["AU", "kappa", "F1 %", "event F1 %", f"events {a}/{b}/matched", f"rate {a} %", f"rate {b} %", "frames"]
        if self.icc is not None:
            columns.insert(4, "ICC(3,1)")
        for column in columns:
            table.add_column(column, justify="left" if column == "AU" else "right")
        for i, name in enumerate(self.au_names):
            cells = [name, _number(self.kappa[i]), _percent(self.f1[i]), _percent(self.events.f1[i]),
                     f"{self.events.n_reference[i]}/{self.events.n_other[i]}/{self.events.matched[i]}",
                     _percent(self.rate_reference[i]), _percent(self.rate_other[i]), f"{int(self.n_both[i]):,}"]
            if self.icc is not None:
                cells.insert(4, _number(self.icc[i]))
            table.add_row(*cells)
        table.add_section()
        mean = ["mean", _number(nanmean(self.kappa)), _percent(nanmean(self.f1)), _percent(nanmean(self.events.f1)),
                "", "", "", ""]
        if self.icc is not None:
            mean.insert(4, _number(nanmean(self.icc)))
        table.add_row(*mean, style="bold")
        return table

    def __rich__(self):
        return self.table()


def compare_label_sets(reference, other, *, au_names: Sequence[str], sequences=None, min_iou: float = DEFAULT_MIN_IOU,
                       names: tuple[str, str] = ("A", "B"), intensities: tuple[Any, Any] | None = None) -> AgreementReport:
    """Kappa, frame F1 and event agreement of ``other`` against ``reference`` (both ``(n, n_aus)``).

    ``intensities``: ``(reference, other)`` ``(n, n_aus)`` intensities (NaN unknown) for ICC(3,1).
    """
    a, b = check_labels(reference, "reference labels"), check_labels(other, "other labels")
    if a.shape != b.shape:
        raise UsageError(f"label sets differ in shape: {a.shape} and {b.shape}.")
    if len(au_names) != a.shape[1]:
        raise UsageError(f"{len(au_names)} AU names given for {a.shape[1]} columns.")
    both = ((a == 0) | (a == 1)) & ((b == 0) | (b == 1))
    n_both = both.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_a = np.where(n_both > 0, ((a == 1) & both).sum(0) / np.maximum(n_both, 1), np.nan)
        rate_b = np.where(n_both > 0, ((b == 1) & both).sum(0) / np.maximum(n_both, 1), np.nan)
    icc = intensity_icc(*intensities) if intensities is not None else None
    return AgreementReport(au_names=list(au_names), kappa=cohen_kappa(a, b), f1=agreement_f1(a, b),
                           events=event_agreement(a, b, sequences, min_iou=min_iou), rate_reference=rate_a,
                           rate_other=rate_b, n_both=n_both, names=(str(names[0]), str(names[1])), icc=icc)


def compare_store_label_sets(store: str | Path, reference: str, other: str, *, min_iou: float = DEFAULT_MIN_IOU,
                             max_gap: float = 2.0) -> AgreementReport:
    """Per-AU Cohen's kappa, F1 of ``other`` against ``reference`` and event agreement, on the AUs both sets have.

    Faces are put in sequence order (source, track, frame) so that events are runs of consecutive
    frames; a frame gap of more than ``max_gap`` usual steps ends an event. ICC(3,1) is added when
    both sets hold intensities.
    """
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        a = opened.read_labels(reference)
        b = opened.read_labels(other)
        common = [au for au in a.au_names if au in b.au_names]
        if not common:
            raise UsageError(f"label sets {reference!r} ({', '.join(a.au_names)}) and {other!r} ({', '.join(b.au_names)}) "
                             "share no AU")
        faces = opened.face_table(["source", "track", "frame"])
    cols_a, cols_b = [a.au_names.index(au) for au in common], [b.au_names.index(au) for au in common]
    labels_a, labels_b = a.occurrence[:, cols_a], b.occurrence[:, cols_b]
    coded = np.flatnonzero(((labels_a >= 0) & (labels_b >= 0)).any(axis=1))
    order = coded[sequence_order(faces["source"][coded], faces["track"][coded], faces["frame"][coded])]
    segments = segment_ids(faces["source"][order], faces["track"][order], faces["frame"][order], max_gap=max_gap)
    intensities = None
    if a.intensity is not None and b.intensity is not None:
        intensities = (a.intensity[order][:, cols_a], b.intensity[order][:, cols_b])
    return compare_label_sets(labels_a[order], labels_b[order], au_names=common, sequences=segments, min_iou=min_iou,
                              names=(reference, other), intensities=intensities)


def compare_store_with_tool(store: str | Path, reference: str, csv_file: str | Path, *, source: str | None = None,
                            track: int = 0, tool_format: str | None = None, min_iou: float = DEFAULT_MIN_IOU,
                            max_gap: float = 2.0) -> AgreementReport:
    """Agreement of another tool's CSV (OpenFace 2.0 or py-feat, one video) with label set ``reference``.

    Args:
        source: the store source the CSV was made from (its key); None: the source whose file stem
            is the CSV's stem, else the store's only source.
        track: the face track of that source the CSV describes (0: the subject).
        tool_format: ``openface`` or ``pyfeat``; None: found from the CSV's header.
    """
    from aucli.labels.foreign import read_foreign
    from aucli.store import CorpusStore

    found_format, tool_aus, tool = read_foreign(csv_file, tool_format)
    with CorpusStore.open(store) as opened:
        record = _pick_source(opened.sources(), source, Path(csv_file))
        ref = opened.read_labels(reference)
        faces = opened.face_table(["source", "track", "frame"])
    common = [au for au in ref.au_names if au in tool_aus]
    if not common:
        raise UsageError(f"label set {reference!r} ({', '.join(ref.au_names)}) and {Path(csv_file).name} "
                         f"({', '.join(tool_aus)}) share no AU")
    rows = np.flatnonzero((faces["source"] == record.index) & (faces["track"] == track))
    rows = rows[np.argsort(faces["frame"][rows], kind="stable")]
    frames = faces["frame"][rows]
    at = np.clip(np.searchsorted(tool.frames, frames), 0, tool.frames.size - 1)  # a reader never returns no frame
    found = tool.frames[at] == frames
    if not found.any():
        raise UsageError(f"no frame of {Path(csv_file).name} ({found_format}) meets a face of source {record.key!r}, "
                         f"track {track}; check --source and --track")
    cols_ref, cols_tool = [ref.au_names.index(au) for au in common], [tool_aus.index(au) for au in common]
    labels_ref = ref.occurrence[rows][:, cols_ref]
    labels_tool = np.where(found[:, None], tool.occurrence[at][:, cols_tool], -1).astype(np.int8)
    intensities = None
    if ref.intensity is not None and tool.intensity is not None:
        intensities = (ref.intensity[rows][:, cols_ref], np.where(found[:, None], tool.intensity[at][:, cols_tool], np.nan))
    zeros = np.zeros(frames.size, np.int64)
    segments = segment_ids(zeros, zeros, frames, max_gap=max_gap)
    return compare_label_sets(labels_ref, labels_tool, au_names=common, sequences=segments, min_iou=min_iou,
                              names=(reference, f"{found_format}:{Path(csv_file).name}"), intensities=intensities)


def _pick_source(records: Sequence[Any], key: str | None, csv_file: Path) -> Any:
    """The source named ``key``; without it, the one whose stem is the CSV's stem, or the only one."""
    keys = [r.key for r in records]
    listing = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
    if key is not None:
        for record in records:
            if record.key == key:
                return record
        raise StoreError(f"the store has no source {key!r} (its sources: {listing or 'none'})")
    by_stem = [r for r in records if PurePosixPath(r.key).stem == csv_file.stem]
    if len(by_stem) == 1:
        return by_stem[0]
    if len(records) == 1:
        return records[0]
    raise UsageError(f"name the source {csv_file.name} was made from with --source KEY (sources: {listing or 'none'})")
