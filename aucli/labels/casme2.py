"""The CASME II coding sheet (saved as CSV): one row per micro-expression clip.

Columns (matched without regard to case and spaces): ``Subject`` (``1`` or ``01`` -> sub01),
``Filename`` (``EP02_01f``, the clip folder ``sub01/EP02_01f/``), ``OnsetFrame``, ``ApexFrame``
(may be missing, e.g. ``/``), ``OffsetFrame``, ``Action Units`` (``4+L10``, ``R12``, ``1+2``).
Frame numbers are the numbers in the clip's image names (``img46.jpg`` -> 46), as in the store.

Every frame from onset to offset (inclusive) is labelled: the clip's AUs present, every other AU
of the sheet absent. Frames of the clip outside onset..offset are left unlabelled (unknown).
Side codes become side-coded AUs (``L10`` -> AU10L) and also mark the bilateral AU present (a
unilateral AU10 is AU10 occurring), so both per-side and protocol AU sets can be read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aucli.aus import au_name, au_number, au_side
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

__all__ = ["read_casme2"]

_COLUMNS = {
    "subject": "subject",
    "filename": "filename",
    "onsetframe": "onset",
    "apexframe": "apex",
    "offsetframe": "offset",
    "actionunits": "aus",
}
_MISSING = {"", "/", "-", "na", "n/a", "nan"}


def read_casme2(paths: Sequence[str | Path], *, au_names: Sequence[str] | None = None) -> LabelTable:
    """Read CASME II coding sheets saved as CSV (files, folders or globs)."""
    files = expand_label_paths(paths, (".csv",))
    clips: list[tuple[str, str, int, int, list[str], str]] = []
    seen: dict[tuple[str, str], str] = {}
    for path in files:
        if path.suffix.lower() in (".xlsx", ".xls"):
            raise LabelFormatError(f"{path}: save the CASME II coding sheet as CSV first (File > Save As > CSV)")
        rows = read_csv_rows(path)
        try:
            header_line, header = next(rows)
        except StopIteration:
            raise LabelFormatError(f"{path}: no header row") from None
        positions: dict[str, int] = {}
        for i, cell in enumerate(header):
            key = re.sub(r"[\s_]", "", cell.lower())
            if key in _COLUMNS:
                positions[_COLUMNS[key]] = i
        missing = [name for name in ("subject", "filename", "onset", "offset", "aus") if name not in positions]
        if missing:
            raise LabelFormatError(
                f"{path}, line {header_line}: no column(s) {', '.join(missing)}; expected Subject, Filename, "
                "OnsetFrame, ApexFrame, OffsetFrame, Action Units"
            )
        for line, cells in rows:
            cells = cells + [""] * (len(header) - len(cells))
            subject = _subject(cells[positions["subject"]], path, line)
            clip = cells[positions["filename"]].strip()
            if not clip:
                raise LabelFormatError(f"{path}, line {line}: empty Filename")
            onset = parse_int(cells[positions["onset"]], path, line, "OnsetFrame")
            offset = parse_int(cells[positions["offset"]], path, line, "OffsetFrame")
            if offset < onset:
                raise LabelFormatError(f"{path}, line {line}: OffsetFrame {offset} is before OnsetFrame {onset}")
            if "apex" in positions and cells[positions["apex"]].strip().lower() not in _MISSING:
                apex = parse_int(cells[positions["apex"]], path, line, "ApexFrame")
                if not onset <= apex <= offset:
                    raise LabelFormatError(f"{path}, line {line}: ApexFrame {apex} is outside {onset}..{offset}")
            aus = _action_units(cells[positions["aus"]], path, line)
            if (subject, clip) in seen:
                raise LabelFormatError(
                    f"{path}, line {line}: clip {subject}/{clip} is coded twice (also {seen[(subject, clip)]})"
                )
            seen[(subject, clip)] = f"{path}, line {line}"
            clips.append((subject, clip, onset, offset, aus, str(path)))
    names = merge_au_names([au for clip in clips for au in clip[4]])
    recordings = []
    for subject, clip, onset, offset, aus, file in clips:
        frames = np.arange(onset, offset + 1, dtype=np.int64)
        occurrence = np.zeros((frames.size, len(names)), np.int8)
        for au in aus:
            occurrence[:, names.index(au)] = 1
        recordings.append(RecordingLabels(Target(subject=subject, recording=clip), frames, occurrence, None, [file]))
    table = LabelTable("casme2", names, recordings, [str(p) for p in files])
    return table.select(au_names) if au_names else table


def _subject(raw: str, path: Path, line: int) -> str:
    text = raw.strip()
    match = re.fullmatch(r"(?:sub)?0*(\d+)", text, re.IGNORECASE)
    if match is None:
        raise LabelFormatError(f"{path}, line {line}: Subject {text!r} is not a subject number (1, 01 or sub01)")
    return f"sub{int(match.group(1)):02d}"


def _action_units(raw: str, path: Path, line: int) -> list[str]:
    text = raw.strip()
    if text.lower() in _MISSING:
        raise LabelFormatError(f"{path}, line {line}: no Action Units given ({text!r})")
    names: list[str] = []
    for token in text.split("+"):
        au = known_au(token, path, line)
        names.append(au)
        if au_side(au) is not None:
            names.append(au_name(au_number(au)))
    return list(dict.fromkeys(names))
