"""Another tool's per-video result CSV (OpenFace 2.0 or py-feat), read to compare with a label set.

The format is found from the header: ``AUxx_c`` / ``AUxx_r`` columns are OpenFace 2.0's
(:mod:`aucli.labels.openface`), bare ``AUxx`` columns py-feat's (:mod:`aucli.labels.pyfeat`). A
header with neither gets one line saying what was expected. The frames come back in the store's
convention (0-based video frames), each reader's own convention undone.
"""

from __future__ import annotations

from pathlib import Path

from aucli.errors import LabelFormatError
from aucli.labels.openface import is_openface_au_column, read_openface
from aucli.labels.pyfeat import is_pyfeat_au_column, read_pyfeat
from aucli.labels.table import RecordingLabels, read_csv_rows

__all__ = ["FOREIGN_FORMATS", "EXPECTED_COLUMNS", "detect_foreign_format", "read_foreign"]

FOREIGN_FORMATS = ("openface", "pyfeat")
EXPECTED_COLUMNS = ("an OpenFace 2.0 CSV (frame, face_id, timestamp, confidence, success, AU01_r ..., AU01_c ...) "
                    "or a py-feat CSV (frame, AU01, AU02, ... probabilities)")


def detect_foreign_format(path: str | Path) -> str:
    """``openface`` or ``pyfeat`` from the CSV's header; raises :class:`LabelFormatError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise LabelFormatError(f"{path}: no such file")
    try:
        _, header = next(read_csv_rows(path))
    except StopIteration:
        raise LabelFormatError(f"{path}: empty file; expected {EXPECTED_COLUMNS}") from None
    has_frame = any(h.lower() == "frame" for h in header)
    if has_frame and any(is_openface_au_column(h) for h in header):
        return "openface"
    if has_frame and any(is_pyfeat_au_column(h) for h in header):
        return "pyfeat"
    shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
    raise LabelFormatError(f"{path}: unknown columns ({shown}); expected {EXPECTED_COLUMNS}")


def read_foreign(path: str | Path, format: str | None = None) -> tuple[str, list[str], RecordingLabels]:
    """``(format, au_names, labels)`` of one OpenFace 2.0 or py-feat CSV (``format`` None: detected)."""
    chosen = format or detect_foreign_format(path)
    if chosen not in FOREIGN_FORMATS:
        raise LabelFormatError(f"unknown tool format {chosen!r}; choose one of {', '.join(FOREIGN_FORMATS)}")
    table = read_openface([path]) if chosen == "openface" else read_pyfeat([path])
    return chosen, list(table.au_names), table.recordings[0]
