"""DISFA AU intensity files: ``SN001_au1.txt`` (one file per subject and AU).

Each line is ``frame,intensity`` with frames numbered 1, 2, 3, ... and FACS intensities 0-5.
Line k belongs to video frame k-1 (the store numbers video frames from 0 in decode order).
Occurrence is ``intensity >= threshold`` (2 by default, as the field does); intensities are kept.
A subject's labels apply to every stored video of that subject (DISFA's left and right cameras
are synchronised).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aucli.errors import LabelFormatError, UsageError
from aucli.labels.table import (
    LabelTable,
    RecordingLabels,
    Target,
    expand_label_paths,
    known_au,
    merge_au_names,
    parse_int,
    read_csv_rows,
)

__all__ = ["DEFAULT_THRESHOLD", "read_disfa"]

DEFAULT_THRESHOLD = 2.0
_FILE_NAME = re.compile(r"^(?P<subject>SN\d{3})_au(?P<au>\w+)$", re.IGNORECASE)


def read_disfa(
    paths: Sequence[str | Path],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    au_names: Sequence[str] | None = None,
) -> LabelTable:
    """Read DISFA per-AU label files (files, folders or globs)."""
    if not 0 < threshold <= 5:
        raise UsageError(f"DISFA occurrence threshold must be in (0, 5], got {threshold}")
    files = expand_label_paths(paths, (".txt",))
    per_subject: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    sources: dict[str, list[str]] = defaultdict(list)
    for path in files:
        match = _FILE_NAME.match(path.stem)
        if match is None:
            raise LabelFormatError(f"{path}: DISFA label files are named SUBJECT_auN.txt (like SN001_au12.txt)")
        subject = match.group("subject").upper()
        au = known_au(match.group("au"), path, None)
        if au in per_subject[subject]:
            raise LabelFormatError(f"{path}: a second file for {subject} {au}")
        per_subject[subject][au] = _read_file(path)  # type: ignore[index]
        sources[subject].append(str(path))
    names = merge_au_names([au for aus in per_subject.values() for au in aus])
    recordings = []
    for subject in sorted(per_subject):
        aus = per_subject[subject]
        length = max(values.size for values in aus.values())
        intensity = np.full((length, len(names)), np.nan, np.float32)
        for au, values in aus.items():
            intensity[: values.size, names.index(au)] = values
        occurrence = np.where(np.isnan(intensity), -1, intensity >= threshold).astype(np.int8)
        frames = np.arange(length, dtype=np.int64)  # line k -> video frame k-1
        recordings.append(RecordingLabels(Target(subject=subject), frames, occurrence, intensity, sources[subject]))
    table = LabelTable("disfa", names, recordings, [str(p) for p in files], {"threshold": float(threshold)})
    return table.select(au_names) if au_names else table


def _read_file(path: Path) -> np.ndarray:
    values: list[float] = []
    for line, cells in read_csv_rows(path):
        if len(cells) != 2:
            raise LabelFormatError(f"{path}, line {line}: expected 'frame,intensity', found {','.join(cells)!r}")
        frame = parse_int(cells[0], path, line, "frame")
        if frame != len(values) + 1:
            raise LabelFormatError(
                f"{path}, line {line}: frame {frame}, expected {len(values) + 1} (DISFA numbers frames 1, 2, 3, ... one per line)"
            )
        intensity = parse_int(cells[1], path, line, "intensity")
        if not 0 <= intensity <= 5:
            raise LabelFormatError(f"{path}, line {line}: intensity {cells[1]!r} is outside 0-5")
        values.append(float(intensity))
    if not values:
        raise LabelFormatError(f"{path}: no label lines")
    return np.asarray(values, dtype=np.float32)
