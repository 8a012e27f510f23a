"""py-feat result CSVs (``Detector.detect_video`` / ``detect_image`` saved with ``Fex.to_csv``), one per video.

Conventions handled here:
- AU columns are bare names (``AU01``, ``AU02``, ... ``AU43``) holding probabilities in [0, 1]:
  occurrence = probability >= ``threshold`` (0.5, py-feat's own cut); py-feat gives no intensity;
- ``frame`` is 0-based, as in aucli (py-feat frame f is store video frame f);
- a row whose AU cells are empty or NaN (no face found) is unknown for every AU;
- with several faces on one frame, the largest face box (``FaceRectWidth * FaceRectHeight``,
  aucli's track 0) is read and the others are reported; without box columns, the first row;
- other columns (the pandas index, landmarks, pose, emotions, ``input``) are ignored.

The CSV's file stem names the video it was made from (``clip.csv`` for ``clip.mp4``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aucli.errors import LabelFormatError
from aucli.labels.table import LabelTable, RecordingLabels, Target, expand_label_paths, known_au, merge_au_names, parse_int, read_csv_rows

__all__ = ["DEFAULT_THRESHOLD", "is_pyfeat_au_column", "read_pyfeat"]

DEFAULT_THRESHOLD = 0.5
_AU_COLUMN = re.compile(r"^AU\d+[LR]?$", re.IGNORECASE)


def is_pyfeat_au_column(name: str) -> bool:
    """True for a py-feat AU column (``AU01``, ``AU12``), not OpenFace's ``AU01_r`` / ``AU01_c``."""
    return _AU_COLUMN.match(name.strip()) is not None


def read_pyfeat(paths: Sequence[str | Path], *, au_names: Sequence[str] | None = None,
                threshold: float = DEFAULT_THRESHOLD) -> LabelTable:
    """Read py-feat result CSVs (files, folders or globs)."""
    files = expand_label_paths(paths, (".csv",))
    parsed = [_read_file(path, threshold) for path in files]
    names = merge_au_names([au for _, aus, *_ in parsed for au in aus])
    recordings = []
    other_faces = 0
    for path, aus, frames, occurrence, others in parsed:
        other_faces += others
        full = np.full((frames.size, len(names)), -1, np.int8)
        for j, au in enumerate(aus):
            full[:, names.index(au)] = occurrence[:, j]
        recordings.append(RecordingLabels(Target(source=path.stem), frames, full, None, [str(path)]))
    table = LabelTable("pyfeat", names, recordings, [str(p) for p in files], {"rows_of_other_faces": other_faces})
    return table.select(au_names) if au_names else table


def _read_file(path: Path, threshold: float):
    rows = read_csv_rows(path)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise LabelFormatError(f"{path}: no header row") from None
    lower = [h.lower() for h in header]
    if "frame" not in lower:
        raise LabelFormatError(f"{path}, line {header_line}: no 'frame' column; is this a py-feat CSV?")
    au_cols = {known_au(cell, path, header_line): i for i, cell in enumerate(header) if is_pyfeat_au_column(cell)}
    if not au_cols:
        raise LabelFormatError(f"{path}, line {header_line}: no AU columns (AU01, AU02, ...); is this a py-feat CSV?")
    aus = merge_au_names(list(au_cols))
    frame_col = lower.index("frame")
    box = [lower.index(c) for c in ("facerectwidth", "facerectheight") if c in lower]
    best: dict[int, tuple[float, list[int]]] = {}
    n_rows = 0
    for line, cells in rows:
        if len(cells) != len(header):
            raise LabelFormatError(f"{path}, line {line}: {len(cells)} values, but the header has {len(header)} columns")
        n_rows += 1
        frame = parse_int(cells[frame_col], path, line, "frame")
        if frame < 0:
            raise LabelFormatError(f"{path}, line {line}: frame {frame}; py-feat numbers frames from 0")
        probabilities = [_probability(cells[au_cols[au]], path, line, header[au_cols[au]]) for au in aus]
        labels = [-1 if math.isnan(p) else int(p >= threshold) for p in probabilities]
        size = _box_area(cells, box) if len(box) == 2 else 0.0
        if frame not in best or size > best[frame][0]:
            best[frame] = (size, labels)
    if not best:
        raise LabelFormatError(f"{path}: no data rows")
    frames = np.asarray(sorted(best), dtype=np.int64)
    occurrence = np.asarray([best[f][1] for f in frames], dtype=np.int8).reshape(frames.size, len(aus))
    return path, aus, frames, occurrence, n_rows - frames.size


def _probability(raw: str, path: Path, line: int, column: str) -> float:
    if raw == "" or raw.lower() == "nan":
        return math.nan
    try:
        value = float(raw)
    except ValueError:
        raise LabelFormatError(f"{path}, line {line}: {column} value {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise LabelFormatError(f"{path}, line {line}: {column} value {raw!r} is not a probability in [0, 1]")
    return value


def _box_area(cells: list[str], box: list[int]) -> float:
    try:
        area = float(cells[box[0]]) * float(cells[box[1]])
    except ValueError:
        return 0.0
    return area if math.isfinite(area) else 0.0
