"""The layout of an aucli corpus store (one HDF5 file per corpus), schema version 1.

Every name, dtype and shape of the file is defined here; ``store.py`` reads and writes it.

Root attributes::

    aucli_store     "corpus"            marks the file as an aucli store
    schema_version  1                   refused when it differs from SCHEMA_VERSION
    crop_size       S                   side of the square face crops, pixels
    compression     none|lzf|gzip       of /frames/image, chosen when the store is created
    root            posix path          folder source keys are relative to (first run's)
    preprocess      JSON                face options of the run that created the store
    created_at, created_by              ISO time, "aucli <version>"

``/sources`` one row per input (video, image, frame folder); columns of equal length, committed
length in the group attribute ``n_rows``; see :data:`SOURCE_COLUMNS`.

``/frames`` one row per stored face, in the order faces were written (all faces of one source are
contiguous: rows ``row_start:row_stop`` of its /sources row); see :data:`FACE_COLUMNS`.
``/frames/image`` is (n, S, S, 3) uint8 RGB, one face per chunk.

``/noface`` one row per sampled frame where no face was stored (``source``, ``frame``,
``timestamp``), so that a label for such a frame is reported as "frame has no face", and predict
can write "face found = 0" rows; rows ``noface_start:noface_stop`` of each source.

``/labels/<name>`` a group per label set: ``occurrence`` (n, K) int8 with 1 present, 0 absent, -1
unknown; optionally ``intensity`` (n, K) float32 (NaN unknown, FACS 0-5); attributes ``au_names``
(K canonical names), ``n_rows`` (face rows when written; later rows read as unknown), ``format``,
``files`` (JSON list), ``created_at``, and importer details.

``/predictions/<run>`` and ``/audit/<run>``: groups written by predict and audit through
``CorpusStore.write_run`` / ``CorpusStore.run_writer``; attributes say what made them.

Commit protocol (``aucli.store.writer``): a source's rows are appended past the committed
lengths; when it is finished its /sources row is written, the file is flushed, the /sources
``n_rows`` attribute (the one value that publishes sources) is raised and the file is flushed
again. Committed lengths are derived from the published /sources rows (``row_stop``,
``noface_stop``). A writable open truncates every dataset to its committed length (dropping a
source that a crash or Ctrl-C cut short) and removes groups whose names start with
``.partial-`` (label sets or runs that were being written). /sources is append-only: a source
retried after a failure gets a new row, and the last row of a key is the one that counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from aucli.errors import UsageError

SCHEMA_VERSION = 1
STORE_MARKER = "corpus"
DEFAULT_CROP_SIZE = 256
COMPRESSIONS = ("none", "lzf", "gzip")

#: Prefix of groups being written; they get their final name (an atomic rename) when complete.
PARTIAL_PREFIX = ".partial-"
#: Groups that hold named items: label sets, prediction runs, audit runs.
COLLECTIONS = ("labels", "predictions", "audit")
RUN_KINDS = ("predictions", "audit")

#: Track id of the subject's face (the face ranked first on every frame, see aucli.faces.track);
#: label sets attach labels to this track.
SUBJECT_TRACK = 0

#: Status of a /sources row: ``done`` (its faces are committed; skipped by later runs) or
#: ``failed`` (nothing of it is stored; retried by later runs).
SOURCE_STATUSES = ("done", "failed")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class Column:
    """One dataset of a table group: ``dtype`` ``"str"`` means a variable-length UTF-8 string."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    doc: str = ""


#: /sources columns (one row per input).
SOURCE_COLUMNS: tuple[Column, ...] = (
    Column("key", "str", doc="stable id: path relative to the store's root folder, posix"),
    Column("path", "str", doc="absolute path when processed"),
    Column("kind", "str", doc="video, image or frames (a folder of frame images)"),
    Column("subject", "str", doc="person (F001, SN001, sub01, ...)"),
    Column("recording", "str", doc="task or clip (T1, EP02_01f, file stem)"),
    Column("size", "int64", doc="bytes (a frame folder: sum of its frame files)"),
    Column("mtime_ns", "int64", doc="modification time when processed"),
    Column("digest", "str", doc="content fingerprint (aucli.media.decode.file_digest)"),
    Column("status", "str", doc="done or failed"),
    Column("n_frames", "int64", doc="frames sampled (decoded and kept by --every/--fps)"),
    Column("n_faces", "int64", doc="face rows stored"),
    Column("row_start", "int64", doc="first /frames row of this source"),
    Column("row_stop", "int64", doc="one past its last /frames row"),
    Column("noface_start", "int64", doc="first /noface row of this source"),
    Column("noface_stop", "int64", doc="one past its last /noface row"),
    Column("message", "str", doc="problem met (empty when none)"),
    Column("processed_at", "str", doc="ISO time of the commit"),
)

#: /frames columns (one row per stored face), besides ``image``.
FACE_COLUMNS: tuple[Column, ...] = (
    Column("source", "int32", doc="row in /sources"),
    Column("frame", "int64", doc="frame index (video: 0-based decode order; folder: number in the file name)"),
    Column("timestamp", "float64", doc="seconds (NaN for images and frame folders)"),
    Column("track", "int32", doc="face track id within the source (0 = the subject: the face ranked first)"),
    Column("box", "float32", (4,), doc="x1, y1, x2, y2 in source-frame pixels"),
    Column("landmarks", "float32", (5, 2), doc="(x, y) eyes, nose, mouth corners (ArcFace order)"),
    Column("score", "float32", doc="detector score (1.0 with --detector none)"),
)

#: /noface columns (one row per sampled frame without a stored face).
NOFACE_COLUMNS: tuple[Column, ...] = (
    Column("source", "int32", doc="row in /sources"),
    Column("frame", "int64", doc="frame index"),
    Column("timestamp", "float64", doc="seconds (NaN without a clock)"),
)


def numpy_dtype(column: Column):
    """The h5py/numpy dtype of a column."""
    if column.dtype == "str":
        import h5py

        return h5py.string_dtype()
    return np.dtype(column.dtype)


def check_name(name: str, what: str = "name") -> str:
    """Validate a label set or run name: letters, digits, ``_ . -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"invalid {what} {name!r}: use 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


def check_compression(compression: str | None) -> str:
    value = (compression or "none").lower()
    if value not in COMPRESSIONS:
        raise UsageError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    return value
