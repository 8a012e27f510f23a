"""aucli's plain label CSV: one row per labelled frame, any number of recordings in one file.

Columns:
- ``source``: the store source, as its key (``F001/T1``, ``clips/a.mp4``), path, file name or
  file stem (an ambiguous name is refused);
- ``frame``: the store frame index (videos: 0-based decode order; frame folders: the number in
  the image file name; single images: 0);
- one column per AU: ``AU12``, ``AU01``, ``AU12_c`` or ``AU10L`` for occurrence (1, 0, and -1,
  9 or empty for unknown); ``AU12_r`` for intensity (0-5, empty for unknown);
- ignored: ``subject``, ``recording``, ``timestamp``, ``track``, ``row``, ``face_id``.

``aucli labels export`` writes this format, so an exported set imports back unchanged.
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

__all__ = ["IGNORED_COLUMNS", "read_plain_csv"]

IGNORED_COLUMNS = frozenset({"subject", "recording", "timestamp", "track", "row", "face_id"})
_SUFFIX = re.compile(r"^(?P<au>.+?)_(?P<kind>[cr])$", re.IGNORECASE)


def read_plain_csv(paths: Sequence[str | Path], *, au_names: Sequence[str] | None = None) -> LabelTable:
    """Read plain label CSVs (files, folders or globs)."""
    files = expand_label_paths(paths, (".csv",))
    grouped: dict[str, dict[int, tuple[dict[str, int], dict[str, float]]]] = {}
    origin: dict[str, list[str]] = {}
    all_aus: list[str] = []
    has_intensity = False
    for path in files:
        rows = read_csv_rows(path)
        try:
            header_line, header = next(rows)
        except StopIteration:
            raise LabelFormatError(f"{path}: no header row") from None
        lower = [h.lower() for h in header]
        for required in ("source", "frame"):
            if required not in lower:
                raise LabelFormatError(
                    f"{path}, line {header_line}: no {required!r} column (plain label CSVs have source, frame, AU columns)"
                )
        source_col, frame_col = lower.index("source"), lower.index("frame")
        occurrence_cols: dict[str, int] = {}
        intensity_cols: dict[str, int] = {}
        for i, cell in enumerate(header):
            if i in (source_col, frame_col) or cell.lower() in IGNORED_COLUMNS:
                continue
            match = _SUFFIX.match(cell)
            kind = match.group("kind").lower() if match else "c"
            au = known_au(match.group("au") if match else cell, path, header_line)
            target = intensity_cols if kind == "r" else occurrence_cols
            if au in target:
                raise LabelFormatError(
                    f"{path}, line {header_line}: two columns for {au} {'intensity' if kind == 'r' else 'occurrence'}"
                )
            target[au] = i
        if not occurrence_cols and not intensity_cols:
            raise LabelFormatError(f"{path}, line {header_line}: no AU columns (AU1, AU12_c, AU12_r, ...)")
        has_intensity |= bool(intensity_cols)
        all_aus.extend([*occurrence_cols, *intensity_cols])
        for line, cells in rows:
            if len(cells) != len(header):
                raise LabelFormatError(f"{path}, line {line}: {len(cells)} values, but the header has {len(header)} columns")
            source = cells[source_col]
            if not source:
                raise LabelFormatError(f"{path}, line {line}: empty source")
            frame = parse_int(cells[frame_col], path, line, "frame")
            if frame < 0:
                raise LabelFormatError(f"{path}, line {line}: frame {frame} is negative")
            occurrence = {au: _occurrence(cells[i], path, line, au) for au, i in occurrence_cols.items()}
            intensity = {au: _intensity(cells[i], path, line, au) for au, i in intensity_cols.items()}
            frames = grouped.setdefault(source, {})
            if frame in frames:
                raise LabelFormatError(f"{path}, line {line}: source {source!r} frame {frame} is labelled twice")
            frames[frame] = (occurrence, intensity)
            origin.setdefault(source, [])
            if str(path) not in origin[source]:
                origin[source].append(str(path))
    names = merge_au_names(all_aus)
    recordings = []
    for source, frames in grouped.items():
        order = sorted(frames)
        occurrence = np.full((len(order), len(names)), -1, np.int8)
        intensity = np.full((len(order), len(names)), np.nan, np.float32) if has_intensity else None
        for r, frame in enumerate(order):
            occ, inten = frames[frame]
            for au, value in occ.items():
                occurrence[r, names.index(au)] = value
            if intensity is not None:
                for au, value in inten.items():
                    intensity[r, names.index(au)] = value
        recordings.append(
            RecordingLabels(Target(source=source), np.asarray(order, np.int64), occurrence, intensity, origin[source])
        )
    table = LabelTable("csv", names, recordings, [str(p) for p in files])
    return table.select(au_names) if au_names else table


def _occurrence(raw: str, path: Path, line: int, au: str) -> int:
    if raw in ("", "-1", "9"):
        return -1
    if raw in ("0", "1", "0.0", "1.0"):
        return int(float(raw))
    raise LabelFormatError(f"{path}, line {line}: {au} value {raw!r}; expected 1, 0, or -1 / 9 / empty for unknown")


def _intensity(raw: str, path: Path, line: int, au: str) -> float:
    if raw == "" or raw.lower() == "nan":
        return math.nan
    try:
        value = float(raw)
    except ValueError:
        raise LabelFormatError(f"{path}, line {line}: {au} intensity {raw!r} is not a number") from None
    if not 0.0 <= value <= 5.0:
        raise LabelFormatError(f"{path}, line {line}: {au} intensity {raw!r} is outside 0-5")
    return value
