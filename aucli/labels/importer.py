"""Match label files to a store's faces and write them as a new label set.

Labels are matched by (source, frame index). Each recording's labels go to the faces of its
source's subject track (track 0: the face ranked first on each frame; ``track=`` picks another),
never to every face of a frame. What does not match is reported, not guessed:
- labelled frames whose source has no stored face on that frame ("no face"),
- labelled frames the store never sampled (past the end of the video, or skipped by
  ``--every``/``--fps``: "not in the store"),
- label recordings without a stored source, and stored sources without labels.
Nothing is written when no label matches a stored face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.errors import LabelFormatError, StoreError, UsageError
from aucli.labels.bp4d import read_bp4d
from aucli.labels.casme2 import read_casme2
from aucli.labels.disfa import DEFAULT_THRESHOLD, read_disfa
from aucli.labels.openface import read_openface
from aucli.labels.plain import read_plain_csv
from aucli.labels.pyfeat import read_pyfeat
from aucli.labels.table import LabelTable, RecordingLabels, Target
from aucli.store.schema import SUBJECT_TRACK, check_name
from aucli.store.store import CorpusStore, SourceRecord

__all__ = [
    "FORMATS",
    "ImportReport",
    "RecordingMatch",
    "check_label_set_free",
    "import_labels",
    "match_labels",
    "read_label_files",
    "write_label_table",
]

#: ``--label-format`` name -> reader.
FORMATS: dict[str, Callable[..., LabelTable]] = {
    "bp4d": read_bp4d,
    "disfa": read_disfa,
    "openface": read_openface,
    "casme2": read_casme2,
    "csv": read_plain_csv,
    "pyfeat": read_pyfeat,
}


def read_label_files(
    paths: Sequence[str | Path],
    format: str,
    *,
    au_names: Sequence[str] | None = None,
    threshold: float | None = None,
) -> LabelTable:
    """Read label files of one format (files, folders, globs) into a :class:`LabelTable`."""
    reader = FORMATS.get(format)
    if reader is None:
        raise UsageError(f"unknown label format {format!r}; choose one of {', '.join(FORMATS)}")
    if threshold is not None and format != "disfa":
        raise UsageError(f"--threshold applies to DISFA intensities only, not to format {format!r}")
    if format == "disfa":
        return reader(paths, au_names=au_names, threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    return reader(paths, au_names=au_names)


@dataclass
class RecordingMatch:
    """How one label recording met the store."""

    label: str
    sources: list[str]
    n_labelled: int
    n_matched: int = 0
    n_noface: int = 0
    missing: list[int] = field(default_factory=list)

    @property
    def n_missing(self) -> int:
        return len(self.missing)


@dataclass
class ImportReport:
    """What an import matched, and everything it could not match."""

    name: str
    format: str
    au_names: list[str]
    files: list[str]
    recordings: list[RecordingMatch]
    unmatched: list[str]
    sources_without_labels: list[str]
    n_faces_unlabelled: int
    rates: dict[str, float]
    positives: dict[str, int]
    known: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def n_labelled(self) -> int:
        """Labelled frames of the recordings that matched a stored source."""
        return sum(r.n_labelled for r in self.recordings)

    @property
    def n_matched(self) -> int:
        return sum(r.n_matched for r in self.recordings)

    @property
    def n_noface(self) -> int:
        return sum(r.n_noface for r in self.recordings)

    @property
    def n_missing(self) -> int:
        return sum(r.n_missing for r in self.recordings)

    def problems(self) -> list[str]:
        """One line per mismatch, for warnings and the summary."""
        lines = []
        for rec in self.recordings:
            if rec.n_missing:
                lines.append(
                    f"{rec.label}: {rec.n_missing} labelled frame(s) not in the store "
                    f"(frames {_ranges(rec.missing)}: past the end of the media or skipped by --every/--fps)"
                )
            if rec.n_noface:
                lines.append(f"{rec.label}: {rec.n_noface} labelled frame(s) have no stored face")
        lines.extend(f"{label}: no stored source matches these labels" for label in self.unmatched)
        if self.sources_without_labels:
            shown = ", ".join(self.sources_without_labels[:5])
            more = f" and {len(self.sources_without_labels) - 5} more" if len(self.sources_without_labels) > 5 else ""
            lines.append(f"{len(self.sources_without_labels)} stored source(s) have no labels: {shown}{more}")
        lines.extend(self.notes)
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "au_names": self.au_names,
            "files": self.files,
            "labelled_frames": self.n_labelled,
            "matched_faces": self.n_matched,
            "labelled_frames_without_face": self.n_noface,
            "labelled_frames_not_in_store": self.n_missing,
            "unmatched_recordings": self.unmatched,
            "sources_without_labels": self.sources_without_labels,
            "faces_without_labels": self.n_faces_unlabelled,
            "rates": self.rates,
            "positives": self.positives,
            "known": self.known,
            "problems": self.problems(),
        }


def _ranges(values: Sequence[int], limit: int = 4) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"`` (first ``limit`` runs, then ``...``)."""
    values = sorted(values)
    runs: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(f"{start}-{prev}" if prev != start else f"{start}")
        if value is not None:
            start = prev = value
    return ", ".join(runs[:limit]) + (", ..." if len(runs) > limit else "")


class _SourceIndex:
    """Find the stored sources a label target names."""

    def __init__(self, records: Sequence[SourceRecord]) -> None:
        self.records = [r for r in records if r.status == "done"]

    def find(self, target: Target) -> list[SourceRecord]:
        if target.source is not None:
            text = target.source.strip()
            tiers: list[Callable[[SourceRecord], bool]] = [
                lambda r: r.key == text,
                lambda r: r.path == text or Path(r.path) == Path(text).expanduser().resolve(),
                lambda r: _strip_suffix(r.key) == text,
                lambda r: Path(r.key).name == text,
                lambda r: _strip_suffix(Path(r.key).name) == text,
            ]
            for matches in tiers:
                found = [r for r in self.records if matches(r)]
                if len(found) > 1:
                    keys = ", ".join(r.key for r in found[:5])
                    raise LabelFormatError(
                        f"label source {text!r} matches {len(found)} stored sources ({keys}); use the full key"
                    )
                if found:
                    return found
            return []
        return [
            r
            for r in self.records
            if r.subject == target.subject and (target.recording is None or r.recording == target.recording)
        ]


def _strip_suffix(name: str) -> str:
    path = Path(name)
    return path.with_suffix("").as_posix() if path.suffix else name


def match_labels(
    store: CorpusStore,
    table: LabelTable,
    *,
    track: int = SUBJECT_TRACK,
) -> tuple[np.ndarray, np.ndarray | None, list[RecordingMatch], list[str], list[str], int]:
    """Place a label table on the store's face rows.

    Returns:
        occurrence (n_faces, K) int8 (-1 where unlabelled), intensity (n_faces, K) float32 or None,
        per-recording matches, unmatched recording labels, stored sources without labels, and the
        number of subject-track faces of labelled sources that got no label.
    """
    n_aus = len(table.au_names)
    occurrence = np.full((store.n_faces, n_aus), -1, np.int8)
    intensity = np.full((store.n_faces, n_aus), np.nan, np.float32) if table.has_intensity else None
    index = _SourceIndex(store.sources())
    claimed: dict[str, dict[int, str]] = {}
    matches: list[RecordingMatch] = []
    unmatched: list[str] = []
    subject_faces: dict[str, int] = {}
    labelled_faces: dict[str, int] = {}
    per_file: dict[str, int] = {}
    for rec in table.recordings:
        if len(rec.files) == 1:
            per_file[rec.files[0]] = per_file.get(rec.files[0], 0) + 1
    for rec in table.recordings:
        label = _describe(rec, shared=len(rec.files) == 1 and per_file[rec.files[0]] > 1)
        sources = index.find(rec.target)
        if not sources:
            unmatched.append(label)
            continue
        match = RecordingMatch(label, [s.key for s in sources], int(rec.frames.size))
        for source in sources:
            # several recordings may name one source (a plain CSV spelling it two ways), but never
            # label the same frame twice
            earlier = claimed.setdefault(source.key, {})
            twice = [int(f) for f in rec.frames if int(f) in earlier]
            if twice:
                raise LabelFormatError(
                    f"stored source {source.key!r} frame {twice[0]} is labelled twice: in {earlier[twice[0]]} and in {label}"
                )
            earlier.update((int(f), label) for f in rec.frames)
            rows_of = store.frame_rows(source, track=track)
            # frames sampled without a (subject) face: no face at all, or only other tracks' faces
            faceless = set(store.noface_frames(source).tolist())
            faceless.update(int(f) for f in store.h5["frames"]["frame"][source.row_start : source.row_stop])
            rows = np.array([rows_of.get(int(f), -1) for f in rec.frames], dtype=np.int64)
            hit = rows >= 0
            occurrence[rows[hit]] = rec.occurrence[hit]
            if intensity is not None and rec.intensity is not None:
                intensity[rows[hit]] = rec.intensity[hit]
            match.n_matched += int(hit.sum())
            for frame in rec.frames[~hit]:
                if int(frame) in faceless:
                    match.n_noface += 1
                else:
                    match.missing.append(int(frame))
            subject_faces[source.key] = len(rows_of)
            labelled_faces[source.key] = labelled_faces.get(source.key, 0) + int(hit.sum())
        match.missing = sorted(set(match.missing))
        matches.append(match)
    unlabelled_faces = sum(subject_faces[key] - labelled_faces[key] for key in subject_faces)
    without = [r.key for r in index.records if r.key not in claimed]
    return occurrence, intensity, matches, unmatched, without, unlabelled_faces


def _describe(rec: RecordingLabels, shared: bool) -> str:
    """A short name for a recording's labels: its file, plus the clip when a file holds many."""
    first = Path(rec.files[0]).name
    where = first if len(rec.files) == 1 else f"{rec.target.subject} ({len(rec.files)} files)"
    if shared:
        clip = rec.target.source or "/".join(p for p in (rec.target.subject, rec.target.recording) if p)
        return f"{where} [{clip}]"
    return where


def import_labels(
    store: str | Path | CorpusStore,
    paths: Sequence[str | Path],
    format: str,
    name: str,
    *,
    au_names: Sequence[str] | None = None,
    threshold: float | None = None,
    track: int = SUBJECT_TRACK,
) -> ImportReport:
    """Read label files and write them into ``store`` as the new label set ``name``.

    Raises:
        StoreError: the store is missing or already has a label set ``name`` (never overwritten).
        LabelFormatError: a file breaks its format (file, line and value named), or no labelled
            frame matches a stored face (nothing is written then).
    """
    check_name(name, "label set name")
    if isinstance(store, CorpusStore):
        return _import(store, paths, format, name, au_names, threshold, track)
    with CorpusStore.open(store, "a") as opened:
        return _import(opened, paths, format, name, au_names, threshold, track)


def _import(store, paths, format, name, au_names, threshold, track) -> ImportReport:
    check_label_set_free(store, name)
    table = read_label_files(paths, format, au_names=au_names, threshold=threshold)
    return write_label_table(store, table, name, track=track)


def check_label_set_free(store: CorpusStore, name: str) -> None:
    """Raise StoreError when ``name`` is taken (label sets are never overwritten)."""
    check_name(name, "label set name")
    if name in store.label_sets():
        raise StoreError(
            f"label set {name!r} already exists in {store.path}; import under another name (--as NAME) "
            f"or delete it first (`aucli labels delete {store.path} {name}`)"
        )


def write_label_table(store: CorpusStore, table: LabelTable, name: str, *, track: int = SUBJECT_TRACK) -> ImportReport:
    """Match an already read label table to the store and write it as label set ``name``."""
    format = table.format
    check_label_set_free(store, name)
    if store.n_faces == 0:
        raise StoreError(f"{store.path}: holds no faces yet; run `aucli preprocess` first")
    occurrence, intensity, matches, unmatched, without, unlabelled = match_labels(store, table, track=track)
    n_matched = sum(m.n_matched for m in matches)
    if n_matched == 0:
        where = "; ".join(f"{m.label}: frames {_ranges(m.missing)}" for m in matches if m.missing)[:300]
        raise LabelFormatError(
            f"none of the {table.n_rows} labelled frames in {len(table.files)} file(s) matches a stored face"
            + (f" ({len(unmatched)} recording(s) have no stored source, e.g. {unmatched[0]})" if unmatched else "")
            + (f" ({where})" if where else "")
            + f"; check --label-format {format} and the frame numbering (see `aucli labels import --help`)"
        )
    notes = []
    uncoded = [
        au for j, au in enumerate(table.au_names) if not any((rec.occurrence[:, j] >= 0).any() for rec in table.recordings)
    ]
    if uncoded:
        notes.append(f"{', '.join(uncoded)}: not coded in the files (unknown everywhere)")
    if table.details.get("rows_of_other_faces"):
        notes.append(f"{table.details['rows_of_other_faces']} row(s) of other faces (face_id > lowest) were ignored")
    attrs = {
        "format": format,
        "files": table.files,
        "track": int(track),
        "matched_faces": n_matched,
        **{k: v for k, v in table.details.items() if k != "rows_of_other_faces"},
    }
    store.write_labels(name, table.au_names, occurrence, intensity=intensity, attrs=attrs)
    known = (occurrence >= 0).sum(axis=0)
    positives = (occurrence == 1).sum(axis=0)
    rates = {au: (float(positives[j] / known[j]) if known[j] else float("nan")) for j, au in enumerate(table.au_names)}
    return ImportReport(
        name=name,
        format=format,
        au_names=table.au_names,
        files=table.files,
        recordings=matches,
        unmatched=unmatched,
        sources_without_labels=without,
        n_faces_unlabelled=unlabelled,
        rates=rates,
        positives={au: int(positives[j]) for j, au in enumerate(table.au_names)},
        known={au: int(known[j]) for j, au in enumerate(table.au_names)},
        notes=notes,
    )
