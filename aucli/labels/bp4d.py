"""BP4D AU occurrence files: ``AUCoding/AU_OCC/F001_T1.csv``.

Layout: a header row of column numbers (``0,1,2,...``): column ``0`` is the frame, every other
column is the AU of that number; then one row per coded frame. Values 1 present, 0 absent, 9 not
coded (unknown). The frame is the number in the frame image's file name (``2440`` for
``F001/T1/2440.jpg``), which is also how a frame folder's frames are indexed in the store.
Subject and task come from the file name (``F001_T1.csv`` -> subject F001, recording T1).

By default the 12 AUs of the BP4D protocol are read; ``au_names`` picks others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aucli.aus import BP4D_AUS, au_name, parse_au
from aucli.errors import LabelFormatError, UnknownAUError
from aucli.labels.table import LabelTable, RecordingLabels, Target, expand_label_paths, parse_int, read_csv_rows

__all__ = ["read_bp4d"]

_FILE_NAME = re.compile(r"^(?P<subject>[A-Za-z]\d{3})_(?P<task>T\d+)$")
_FRAME_HEADERS = {"0", "", "frame", "frames"}


def read_bp4d(paths: Sequence[str | Path], *, au_names: Sequence[str] | None = None) -> LabelTable:
    """Read BP4D AU_OCC CSV files (files, folders or globs)."""
    files = expand_label_paths(paths, (".csv",))
    wanted = [parse_au(a) for a in au_names] if au_names else [au_name(n) for n in BP4D_AUS]
    recordings = []
    seen: dict[tuple[str, str], Path] = {}
    for path in files:
        match = _FILE_NAME.match(path.stem)
        if match is None:
            raise LabelFormatError(
                f"{path}: BP4D label files are named SUBJECT_TASK.csv (like F001_T1.csv); cannot tell subject and task"
            )
        subject, task = match.group("subject"), match.group("task")
        if (subject, task) in seen:
            raise LabelFormatError(f"{path}: labels for {subject}/{task} were already read from {seen[(subject, task)]}")
        seen[(subject, task)] = path
        recordings.append(_read_file(path, subject, task, wanted))
    return LabelTable("bp4d", wanted, recordings, [str(p) for p in files])


def _read_file(path: Path, subject: str, task: str, wanted: list[str]) -> RecordingLabels:
    rows = read_csv_rows(path)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise LabelFormatError(f"{path}: no header row") from None
    if header[0].lower() not in _FRAME_HEADERS:
        raise LabelFormatError(
            f"{path}, line {header_line}: first column must be the frame (header '0' or 'frame'), found {header[0]!r}"
        )
    column_of: dict[str, int] = {}
    for position, cell in enumerate(header[1:], start=1):
        # the header numbers every column (0-99 in the released files); only wanted AUs are read
        try:
            name = parse_au(cell)
        except UnknownAUError:
            raise LabelFormatError(f"{path}, line {header_line}: unknown AU name {cell!r} in the header") from None
        if name in wanted:
            column_of[name] = position
    frames: list[int] = []
    values: list[list[int]] = []
    lines: dict[int, int] = {}
    for line, cells in rows:
        if len(cells) != len(header):
            raise LabelFormatError(f"{path}, line {line}: {len(cells)} values, but the header has {len(header)} columns")
        frame = parse_int(cells[0], path, line, "frame")
        if frame < 0:
            raise LabelFormatError(f"{path}, line {line}: frame {frame} is negative")
        if frame in lines:
            raise LabelFormatError(f"{path}, line {line}: frame {frame} is coded twice (first on line {lines[frame]})")
        lines[frame] = line
        row = []
        for name in wanted:
            position = column_of.get(name)
            if position is None:
                row.append(-1)
                continue
            raw = cells[position]
            if raw not in ("0", "1", "9"):
                raise LabelFormatError(f"{path}, line {line}: value {raw!r} for {name}; BP4D codes 0, 1 or 9 (not coded)")
            row.append(-1 if raw == "9" else int(raw))
        frames.append(frame)
        values.append(row)
    occurrence = np.asarray(values, dtype=np.int8).reshape(len(frames), len(wanted))
    return RecordingLabels(Target(subject=subject, recording=task), np.asarray(frames, np.int64), occurrence, None, [str(path)])
