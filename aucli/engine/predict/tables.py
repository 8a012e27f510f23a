"""The tables ``aucli predict`` writes: one per input (CSV or Parquet), their names, columns and reading.

An output folder holds one table per input (video, frame folder or image), at the input's key with
its media suffix replaced (``clips/a.mp4`` -> ``clips/a.csv``; a frame folder ``F001/T1`` ->
``F001/T1.csv``; when two inputs would share a name, the suffix is kept: ``a.mp4.csv``), and a
manifest ``predictions.json`` (:mod:`aucli.engine.predict.manifest`). Every table is written to a
temporary name and renamed, so a table that exists is complete.

Table columns (one row per face per sampled frame; a frame without a face is one row with
``success`` 0 and empty face and AU cells)::

    frame           int    frame index: videos 0-based decode order, frame folders the number in
                           the file name (BP4D 2440.jpg -> 2440), single images 0
    timestamp       float  seconds from the start of the video (empty for folders and images)
    face_id         int    face track in the input; 0 is the subject (the face ranked first)
    success         int    1: a face was found on this frame, 0: none (OpenFace's success)
    confidence      float  detector score (OpenFace's confidence, py-feat's FaceScore)
    FaceRectX, FaceRectY, FaceRectWidth, FaceRectHeight
                    float  face box in frame pixels (py-feat's names): x1, y1, x2 - x1, y2 - y1
    AU01_p ...      float  probability of each AU, rounded to 6 decimals
    AU01_c ...      int    1 when AUxx_p >= the checkpoint's threshold for that AU, else 0

Column names of the AUs come from :func:`aucli.aus.openface_column` (``AU1`` -> ``AU01_p``,
side-coded ``AU10L`` -> ``AU10L_p``). Unlike OpenFace (1-based), ``frame`` is the 0-based index
used everywhere in aucli (stores, label importers).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aucli.aus import openface_column
from aucli.errors import UsageError
from aucli.fileio import atomic_write_bytes
from aucli.media.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "BASE_COLUMNS",
    "PROBABILITY_DECIMALS",
    "TABLE_FORMATS",
    "PredictionTable",
    "check_table_format",
    "read_table",
    "table_columns",
    "table_counts",
    "table_names",
    "write_table",
]

TABLE_FORMATS = ("csv", "parquet")
#: Columns before the AU columns, in order.
BASE_COLUMNS = (
    "frame",
    "timestamp",
    "face_id",
    "success",
    "confidence",
    "FaceRectX",
    "FaceRectY",
    "FaceRectWidth",
    "FaceRectHeight",
)
#: Probabilities are rounded to this many decimals, and AUxx_c is decided on the rounded value,
#: so that ``AUxx_c == (AUxx_p >= threshold)`` holds exactly in the written table.
PROBABILITY_DECIMALS = 6

_INT_COLUMNS = ("frame", "face_id", "success")
_MEDIA_SUFFIXES = frozenset(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)


@dataclass
class PredictionTable:
    """The rows of one input's table, in frame order (faces of a frame by ``face_id``).

    Attributes:
        frame: (n,) int64 frame index.
        timestamp: (n,) float64 seconds, NaN without a clock.
        face_id: (n,) int64 track id, -1 on rows without a face.
        success: (n,) int8 1 face found / 0 not.
        confidence: (n,) float32 detector score, NaN without a face.
        box: (n, 4) float32 x1, y1, x2, y2, NaN without a face.
        probs: (n, n_aus) float32 probabilities, NaN without a face.
    """

    frame: np.ndarray
    timestamp: np.ndarray
    face_id: np.ndarray
    success: np.ndarray
    confidence: np.ndarray
    box: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return int(self.frame.size)

    @property
    def n_frames(self) -> int:
        """Distinct sampled frames."""
        return int(np.unique(self.frame).size)

    @property
    def n_faces(self) -> int:
        return int(self.success.sum())


def table_columns(au_names: Sequence[str]) -> list[str]:
    """Every column of a table, in order: :data:`BASE_COLUMNS`, then ``AUxx_p`` and ``AUxx_c`` per AU."""
    return [*BASE_COLUMNS, *(openface_column(a, "p") for a in au_names), *(openface_column(a, "c") for a in au_names)]


def check_table_format(table_format: str) -> str:
    """``csv`` or ``parquet`` (parquet needs pyarrow: checked here, before any work)."""
    value = str(table_format).lower()
    if value not in TABLE_FORMATS:
        raise UsageError(f"table format must be csv or parquet, got {table_format!r}")
    if value == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UsageError("--format parquet needs pyarrow: pip install 'aucli[parquet]' (or use --format csv)") from None
    return value


def _relative_parts(key: str) -> list[str]:
    parts = [p for p in PurePosixPath(key).parts if p not in ("", "/", ".", "..")]
    if not parts:
        raise UsageError(f"source key {key!r} cannot name a table file")
    return parts


def table_names(keys: Sequence[str], table_format: str) -> dict[str, str]:
    """Key -> table path relative to the output folder (posix), unique over ``keys``.

    ``clips/a.mp4`` -> ``clips/a.csv``; frame folder ``F001/T1`` -> ``F001/T1.csv`` (only media
    suffixes are replaced: a folder ``T1.5`` gives ``T1.5.csv``). Keys whose short
    names collide (``a.mp4`` and ``a.avi``) keep their suffix: ``a.mp4.csv``, ``a.avi.csv``. The mapping
    depends only on the whole key list, so every shard of a corpus computes the same names.
    """
    ext = "." + table_format
    short: dict[str, str] = {}
    for key in keys:
        parts = _relative_parts(key)
        stem = PurePosixPath(parts[-1])
        parts[-1] = (stem.stem if stem.suffix.lower() in _MEDIA_SUFFIXES else stem.name) + ext
        short[key] = "/".join(parts)
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    names = {}
    for key, name in short.items():
        names[key] = name if counts[name.lower()] == 1 else "/".join(_relative_parts(key)) + ext
    if len({n.lower() for n in names.values()}) != len(names):
        raise UsageError("two inputs map to the same table name; give inputs with distinct paths")
    return names


# ------------------------------------------------------------------------------------ writing
def _decisions(probs: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rounded probabilities (float64, NaN kept) and 0/1 decisions (-1 where NaN)."""
    rounded = np.round(np.asarray(probs, dtype=np.float64), PROBABILITY_DECIMALS)
    decided = np.where(np.isnan(rounded), -1, rounded >= np.asarray(thresholds, dtype=np.float64)[None, :]).astype(np.int8)
    return rounded, decided


def _column_arrays(table: PredictionTable, au_names: Sequence[str], thresholds: np.ndarray) -> dict[str, np.ndarray]:
    box = np.asarray(table.box, dtype=np.float64).reshape(-1, 4)
    probs, decided = _decisions(table.probs.reshape(len(table), len(au_names)), thresholds)
    columns: dict[str, np.ndarray] = {
        "frame": np.asarray(table.frame, dtype=np.int64),
        "timestamp": np.asarray(table.timestamp, dtype=np.float64),
        "face_id": np.asarray(table.face_id, dtype=np.int64),
        "success": np.asarray(table.success, dtype=np.int64),
        "confidence": np.asarray(table.confidence, dtype=np.float64),
        "FaceRectX": box[:, 0],
        "FaceRectY": box[:, 1],
        "FaceRectWidth": box[:, 2] - box[:, 0],
        "FaceRectHeight": box[:, 3] - box[:, 1],
    }
    for k, name in enumerate(au_names):
        columns[openface_column(name, "p")] = probs[:, k]
    for k, name in enumerate(au_names):
        columns[openface_column(name, "c")] = decided[:, k]
    return columns


def _missing(name: str, values: np.ndarray) -> np.ndarray:
    if name == "face_id":
        return values < 0
    if name.endswith("_c"):
        return values < 0
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.zeros(values.shape, dtype=bool)


def _csv_text(columns: Mapping[str, np.ndarray]) -> str:
    """CSV with empty cells for missing values; floats rounded (box 2 decimals, times 6, probs 6)."""
    formatted: list[list[str]] = []
    for name, values in columns.items():
        missing = _missing(name, values)
        if name in _INT_COLUMNS or name.endswith("_c"):
            cells = [str(int(v)) for v in values]
        else:
            digits = 2 if name.startswith("FaceRect") else (4 if name == "confidence" else 6)
            cells = [repr(round(float(v), digits)) for v in values]
        formatted.append(["" if m else c for c, m in zip(cells, missing)])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*formatted))
    return buffer.getvalue()


def _parquet_bytes(columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields = [], []
    for name, values in columns.items():
        mask = _missing(name, values)
        if name in ("frame",):
            array, kind = pa.array(values, type=pa.int64()), pa.int64()
        elif name in ("face_id",):
            array, kind = pa.array(values, mask=mask, type=pa.int32()), pa.int32()
        elif name == "success" or name.endswith("_c"):
            array, kind = pa.array(values, mask=mask, type=pa.int8()), pa.int8()
        elif name.startswith("FaceRect") or name == "confidence":
            array, kind = pa.array(values.astype(np.float32), mask=mask, type=pa.float32()), pa.float32()
        elif name == "timestamp":
            array, kind = pa.array(values, type=pa.float64()), pa.float64()  # NaN kept: no clock
        else:
            array, kind = pa.array(values, mask=mask, type=pa.float64()), pa.float64()
        arrays.append(array)
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields, metadata={"aucli": json.dumps(dict(metadata), default=str)})
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def write_table(
    path: str | Path,
    table: PredictionTable,
    *,
    au_names: Sequence[str],
    thresholds: Sequence[float] | np.ndarray,
    table_format: str = "csv",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write one input's table atomically (temporary file, then rename).

    Args:
        path: the table file (its folder is created).
        table: the rows.
        au_names: the checkpoint's AUs (columns of ``table.probs``).
        thresholds: (n_aus,) per-AU thresholds that decide ``AUxx_c``.
        table_format: ``csv`` or ``parquet``.
        metadata: key/values stored in a Parquet file's schema metadata (``aucli``); CSV has none.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size != len(au_names):
        raise UsageError(f"{thresholds.size} thresholds for {len(au_names)} AUs")
    columns = _column_arrays(table, au_names, thresholds)
    data = _csv_text(columns).encode("utf-8") if table_format == "csv" else _parquet_bytes(columns, metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """A table written by :func:`write_table` as column arrays (missing cells: NaN, or -1 for face_id/AUxx_c).

    Integer columns come back as int64, the others as float64, whatever the format.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        data = pq.read_table(path)
        raw = {name: data.column(name).to_numpy(zero_copy_only=False) for name in data.column_names}
        out = {}
        for name, values in raw.items():
            integer = name in _INT_COLUMNS or name.endswith("_c")
            values = np.asarray(values, dtype=np.float64)
            out[name] = np.where(np.isnan(values), -1, values).astype(np.int64) if integer else values
        return out
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in body]
        integer = name in _INT_COLUMNS or name.endswith("_c")
        if integer:
            out[name] = np.asarray([int(c) if c != "" else -1 for c in cells], dtype=np.int64)
        else:
            out[name] = np.asarray([float(c) if c != "" else math.nan for c in cells], dtype=np.float64)
    return out


def table_counts(path: str | Path) -> tuple[int, int]:
    """(sampled frames, face rows) of a written table.

    Raises:
        UsageError: the file is not a table :func:`write_table` wrote (another CSV with the same
            name, a damaged file).
    """
    try:
        columns = read_table(path)
        return int(np.unique(columns["frame"]).size), int((columns["success"] == 1).sum())
    except (KeyError, IndexError, ValueError, UnicodeDecodeError, OSError) as error:
        raise UsageError(
            f"{path} is not a prediction table aucli wrote ({type(error).__name__}: {error}); move it away, "
            "or delete it to predict that input again"
        ) from None
