"""What every label reader returns: per-recording frame labels, before they meet a store.

A reader turns files of one format into a :class:`LabelTable`: one :class:`RecordingLabels` per
recording (a BP4D subject/task, a DISFA subject, an OpenFace CSV, a CASME II clip), with frame
indices already in the store's convention (video frames 0-based in decode order; frame folders:
the number in the image file name). ``aucli.labels.importer`` matches them to stored faces.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.aus import FACS_NAMES, au_number, parse_au
from aucli.errors import LabelFormatError, UnknownAUError
from aucli.labels.text import csv_delimiter, read_text

__all__ = [
    "LabelTable",
    "RecordingLabels",
    "Target",
    "expand_label_paths",
    "merge_au_names",
    "read_csv_rows",
]


@dataclass(frozen=True)
class Target:
    """How a recording's labels find their store source(s).

    ``source``: a source key, path, file name or stem (OpenFace CSVs, plain CSV); otherwise
    ``subject`` and, when known, ``recording`` (BP4D F001/T1; DISFA SN001 covers every video of
    the subject, e.g. both cameras).
    """

    source: str | None = None
    subject: str | None = None
    recording: str | None = None

    def describe(self) -> str:
        if self.source is not None:
            return f"source {self.source!r}"
        if self.recording is not None:
            return f"subject {self.subject}, recording {self.recording}"
        return f"subject {self.subject}"


@dataclass
class RecordingLabels:
    """The labelled frames of one recording.

    Attributes:
        frames: (m,) int64 frame indices in the store's convention, unique.
        occurrence: (m, K) int8, 1 / 0 / -1 unknown, columns in the table's ``au_names`` order.
        intensity: (m, K) float32 (NaN unknown) or None.
        files: the files these labels came from (for reports).
    """

    target: Target
    frames: np.ndarray
    occurrence: np.ndarray
    intensity: np.ndarray | None
    files: list[str]


@dataclass
class LabelTable:
    """Labels read from files of one format, ready to be matched to a store."""

    format: str
    au_names: list[str]
    recordings: list[RecordingLabels]
    files: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(sum(r.frames.size for r in self.recordings))

    @property
    def has_intensity(self) -> bool:
        return any(r.intensity is not None for r in self.recordings)

    def select(self, au_names: Sequence[str]) -> LabelTable:
        """The same labels restricted to / reordered as ``au_names`` (AUs the files lack: unknown)."""
        wanted = [parse_au(a) for a in au_names]
        index = {a: i for i, a in enumerate(self.au_names)}
        recordings = []
        for rec in self.recordings:
            m = rec.frames.size
            occurrence = np.full((m, len(wanted)), -1, np.int8)
            intensity = np.full((m, len(wanted)), np.nan, np.float32) if rec.intensity is not None else None
            for j, name in enumerate(wanted):
                i = index.get(name)
                if i is not None:
                    occurrence[:, j] = rec.occurrence[:, i]
                    if intensity is not None:
                        intensity[:, j] = rec.intensity[:, i]  # type: ignore[index]
            recordings.append(RecordingLabels(rec.target, rec.frames, occurrence, intensity, rec.files))
        return LabelTable(self.format, wanted, recordings, self.files, dict(self.details))


def merge_au_names(names: Sequence[str]) -> list[str]:
    """Distinct AU names sorted by FACS number, then side (``AU10``, ``AU10L``, ``AU10R``)."""
    return sorted(set(names), key=lambda a: (au_number(a), a))


def known_au(raw: str, file: str | Path, line: int | None) -> str:
    """Parse an AU name read from a file (``line`` None: from its name); unknown ones raise."""
    where = f"{file}, line {line}" if line is not None else f"{file}"
    try:
        name = parse_au(raw)
    except UnknownAUError:
        raise LabelFormatError(f"{where}: unknown AU name {raw.strip()!r}") from None
    if au_number(name) not in FACS_NAMES:
        raise LabelFormatError(f"{where}: unknown AU {raw.strip()!r} (AU{au_number(name)} is not a FACS action unit aucli knows)")
    return name


def parse_int(raw: str, file: str | Path, line: int, what: str) -> int:
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        raise LabelFormatError(f"{file}, line {line}: {what} {text!r} is not a number") from None
    if not value.is_integer():
        raise LabelFormatError(f"{file}, line {line}: {what} {text!r} is not a whole number")
    return int(value)


def read_csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of a CSV file, cells stripped; blank lines skipped. The encoding
    (UTF-8 with or without BOM, UTF-16, cp1252) and the delimiter (``,`` ``;`` tab) are found
    by :mod:`aucli.labels.text`."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text))
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            yield reader.line_num, [c.strip() for c in cells]
    except csv.Error as error:
        raise LabelFormatError(f"{path}, line {reader.line_num}: not valid CSV ({error})") from None


def expand_label_paths(paths: Sequence[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Files named by ``paths``: files, globs, and folders searched recursively for ``suffixes``.

    Raises:
        LabelFormatError: a path or glob that names nothing, or no label file at all.
    """
    found: list[Path] = []
    for raw in paths:
        text = os.path.expanduser(str(raw))
        candidates = [Path(p) for p in sorted(glob.glob(text, recursive=True))] if any(c in text for c in "*?[") else [Path(text)]
        if not candidates or not candidates[0].exists():
            raise LabelFormatError(f"{raw}: no such label file or folder")
        for candidate in candidates:
            if candidate.is_dir():
                inside = sorted(
                    p for p in candidate.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
                )
                if not inside:
                    raise LabelFormatError(f"{candidate}: folder holds no label files ({', '.join(suffixes)})")
                found.extend(inside)
            else:
                found.append(candidate)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise LabelFormatError("no label files given")
    for path in unique:
        if path.stat().st_size == 0:
            raise LabelFormatError(f"{path}: empty file (0 bytes)")
    return unique
