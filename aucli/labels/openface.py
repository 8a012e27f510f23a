"""OpenFace 2.0 output CSVs (``FeatureExtraction``/``FaceLandmarkVidMulti``), one per video.

Conventions handled here:
- headers carry leading spaces (`` AU01_r``): names are stripped;
- ``frame`` is 1-based: OpenFace frame f is store video frame f-1;
- ``AUxx_c`` (0/1 presence) is the occurrence, ``AUxx_r`` (0-5) the intensity;
- rows with ``success`` 0 (no face tracked) are unknown for every AU, not negative;
- OpenFace 2.0 has no AU24 (and AU28 only as presence): an AU the file lacks is unknown when a
  label set names it (``au_names``), never 0;
- with several faces (``face_id``), the lowest face id is read and the others are reported.

The CSV's file stem names the video it was made from (``clip.csv`` for ``clip.mp4``); that stem
is matched to the store's sources.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aucli.errors import LabelFormatError
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

__all__ = ["OPENFACE_AUS_C", "OPENFACE_AUS_R", "OPENFACE_FRAME_COLUMNS", "is_openface_au_column", "openface_columns", "read_openface"]

_AU_COLUMN = re.compile(r"^AU\w*_(?P<kind>[cr])$", re.IGNORECASE)

#: OpenFace 2.0's per-frame columns before the AUs (it writes gaze, pose and landmarks between them).
OPENFACE_FRAME_COLUMNS = ("frame", "face_id", "timestamp", "confidence", "success")
#: The AUs OpenFace 2.0 writes, in its order: intensities (``AUxx_r``), then presences (``AUxx_c``).
OPENFACE_AUS_R = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
                  "AU23", "AU25", "AU26", "AU45")
OPENFACE_AUS_C = (*OPENFACE_AUS_R[:-1], "AU28", "AU45")


def is_openface_au_column(name: str) -> bool:
    """True for an OpenFace AU column, ``AU01_r`` or ``AU01_c`` (leading spaces allowed)."""
    return _AU_COLUMN.match(name.strip()) is not None


def openface_columns(au_names: Sequence[str], *, intensity: bool) -> list[tuple[str, str]]:
    """``(aucli column, OpenFace 2.0 header)`` pairs in OpenFace's order, for a table of ``au_names``.

    For ``aucli predict`` writing OpenFace-compatible tables: the frame columns first (headers
    after the first carry OpenFace's leading space, `` face_id``), then every ``AUxx_r`` (when
    ``intensity``), then every ``AUxx_c``, each block in OpenFace's AU order with the AUs OpenFace
    does not know (AU24, side-coded ones) after its own, by FACS number. aucli's ``AUxx_p``
    probabilities have no OpenFace column and are left out. The writer must add 1 to ``frame``
    (OpenFace numbers frames from 1) and write ``timestamp`` as seconds.
    """
    from aucli.aus import au_number, openface_column, parse_au

    names = [parse_au(a) for a in au_names]

    def ordered(reference: Sequence[str]) -> list[str]:
        known = [a for a in reference if a in names]
        return known + sorted((a for a in names if a not in reference), key=lambda a: (au_number(a), a))

    pairs = [(c, c if i == 0 else f" {c}") for i, c in enumerate(OPENFACE_FRAME_COLUMNS)]
    blocks = ([("r", OPENFACE_AUS_R)] if intensity else []) + [("c", OPENFACE_AUS_C)]
    for suffix, reference in blocks:
        pairs += [(openface_column(a, suffix), f" {openface_column(a, suffix)}") for a in ordered(reference)]
    return pairs


def read_openface(paths: Sequence[str | Path], *, au_names: Sequence[str] | None = None) -> LabelTable:
    """Read OpenFace 2.0 CSVs (files, folders or globs)."""
    files = expand_label_paths(paths, (".csv",))
    parsed = [_read_file(path) for path in files]
    names = merge_au_names([au for _, aus, *_ in parsed for au in aus])
    recordings = []
    ignored_faces = 0
    for path, aus, frames, occurrence, intensity, other_rows in parsed:
        ignored_faces += other_rows
        full_occurrence = np.full((frames.size, len(names)), -1, np.int8)
        full_intensity = np.full((frames.size, len(names)), np.nan, np.float32)
        for j, au in enumerate(aus):
            full_occurrence[:, names.index(au)] = occurrence[:, j]
            full_intensity[:, names.index(au)] = intensity[:, j]
        recordings.append(RecordingLabels(Target(source=path.stem), frames, full_occurrence, full_intensity, [str(path)]))
    details = {"rows_of_other_faces": ignored_faces}
    table = LabelTable("openface", names, recordings, [str(p) for p in files], details)
    return table.select(au_names) if au_names else table


def _read_file(path: Path):
    rows = read_csv_rows(path)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise LabelFormatError(f"{path}: no header row") from None
    lower = [h.lower() for h in header]
    if "frame" not in lower:
        raise LabelFormatError(f"{path}, line {header_line}: no 'frame' column; is this an OpenFace CSV?")
    frame_col = lower.index("frame")
    success_col = lower.index("success") if "success" in lower else None
    face_col = lower.index("face_id") if "face_id" in lower else None
    presence: dict[str, int] = {}
    intensity_cols: dict[str, int] = {}
    for position, cell in enumerate(header):
        match = _AU_COLUMN.match(cell)
        if match is None:
            continue
        au = known_au(cell[: -len("_c")], path, header_line)
        (presence if match.group("kind").lower() == "c" else intensity_cols)[au] = position
    aus = merge_au_names([*presence, *intensity_cols])
    if not aus:
        raise LabelFormatError(f"{path}, line {header_line}: no AU columns (AU01_c, AU01_r, ...); is this an OpenFace CSV?")
    per_face: dict[int, dict[int, tuple[list[int], list[float]]]] = {}
    for line, cells in rows:
        if len(cells) != len(header):
            raise LabelFormatError(f"{path}, line {line}: {len(cells)} values, but the header has {len(header)} columns")
        face = parse_int(cells[face_col], path, line, "face_id") if face_col is not None else 0
        frame = parse_int(cells[frame_col], path, line, "frame")
        if frame < 1:
            raise LabelFormatError(f"{path}, line {line}: frame {frame}; OpenFace numbers frames from 1")
        success = parse_int(cells[success_col], path, line, "success") if success_col is not None else 1
        if success not in (0, 1):
            raise LabelFormatError(f"{path}, line {line}: success {cells[success_col]!r} is not 0 or 1")  # type: ignore[index]
        occurrence_row = []
        intensity_row = []
        for au in aus:
            value = -1
            if au in presence:
                column = header[presence[au]]
                raw = _number(cells[presence[au]], path, line, column)
                if raw not in (0.0, 1.0):
                    raise LabelFormatError(f"{path}, line {line}: {column} value {cells[presence[au]]!r} is not 0 or 1")
                value = int(raw)
            strength = math.nan
            if au in intensity_cols:
                column = header[intensity_cols[au]]
                strength = _number(cells[intensity_cols[au]], path, line, column)
                if not 0.0 <= strength <= 5.0:
                    raise LabelFormatError(f"{path}, line {line}: {column} value {cells[intensity_cols[au]]!r} is outside 0-5")
            if not success:
                value, strength = -1, math.nan
            occurrence_row.append(value)
            intensity_row.append(strength)
        index = frame - 1  # OpenFace frame 1 is video frame 0
        entries = per_face.setdefault(face, {})
        if index in entries:
            raise LabelFormatError(f"{path}, line {line}: frame {frame} appears twice for face {face}")
        entries[index] = (occurrence_row, intensity_row)
    if not per_face:
        raise LabelFormatError(f"{path}: no data rows")
    face = min(per_face)
    entries = per_face[face]
    other_rows = sum(len(e) for f, e in per_face.items() if f != face)
    frames = np.asarray(sorted(entries), dtype=np.int64)
    occurrence = np.asarray([entries[f][0] for f in frames], dtype=np.int8).reshape(frames.size, len(aus))
    intensity = np.asarray([entries[f][1] for f in frames], dtype=np.float32).reshape(frames.size, len(aus))
    return path, aus, frames, occurrence, intensity, other_rows


def _number(raw: str, path: Path, line: int, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise LabelFormatError(f"{path}, line {line}: {what} value {raw!r} is not a number") from None
    if math.isnan(value):
        raise LabelFormatError(f"{path}, line {line}: {what} value is NaN")
    return value
