"""``CorpusStore``: open, create, append to and read an aucli corpus store (see ``schema.py``).

One writer at a time (HDF5 file locking refuses a second one with a clear error); any number of
readers when nobody writes. Faces are appended source by source through a :class:`SourceWriter`;
``commit`` makes a source durable in two flushes (data first, then the one attribute that
publishes it), so a crash or ``kill -9`` at any moment leaves the store as it was after the last
committed source. Label sets and runs are written under a ``.partial-`` name and renamed when
complete, so a half-written one never appears under its name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aucli.aus import parse_au
from aucli.errors import StoreError, UsageError
from aucli.store.records import LabelSet, Run, SourceInfo, SourceRecord, utc_now, version_string
from aucli.store.schema import (
    COLLECTIONS,
    DEFAULT_CROP_SIZE,
    FACE_COLUMNS,
    NOFACE_COLUMNS,
    PARTIAL_PREFIX,
    RUN_KINDS,
    SCHEMA_VERSION,
    SOURCE_COLUMNS,
    STORE_MARKER,
    SUBJECT_TRACK,
    Column,
    check_compression,
    check_name,
    numpy_dtype,
)
from aucli.store.writer import Appender, SourceWriter

__all__ = [
    "CorpusStore",
    "LabelSet",
    "Run",
    "SourceInfo",
    "SourceRecord",
    "SourceWriter",
    "check_output_path",
    "open_store",
]

_JSON_ATTRS = "json_attrs"


# ----------------------------------------------------------------------------------------------
# attributes


def write_attrs(obj, attrs: Mapping[str, Any]) -> None:
    """Write attributes; dicts, lists of mixed values and None are stored as JSON and read back."""
    json_names = set(_read_json_names(obj))
    for name, value in attrs.items():
        if name == _JSON_ATTRS:
            continue
        if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
            obj.attrs[name] = value
            json_names.discard(name)
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            obj.attrs[name] = value
            json_names.discard(name)
        else:
            obj.attrs[name] = json.dumps(value, default=_json_default)
            json_names.add(name)
    if json_names:
        obj.attrs[_JSON_ATTRS] = json.dumps(sorted(json_names))


def read_attrs(obj) -> dict[str, Any]:
    """Attributes as Python values (JSON-encoded ones decoded, numpy scalars made plain)."""
    json_names = set(_read_json_names(obj))
    result: dict[str, Any] = {}
    for name, value in obj.attrs.items():
        if name == _JSON_ATTRS:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if name in json_names and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        result[name] = value
    return result


def _read_json_names(obj) -> list[str]:
    raw = obj.attrs.get(_JSON_ATTRS)
    if raw is None:
        return []
    return list(json.loads(raw if isinstance(raw, str) else raw.decode("utf-8")))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ----------------------------------------------------------------------------------------------
# opening


def check_output_path(path: str | Path) -> Path:
    """Fail before any work when ``path`` cannot hold a store: a folder, missing or read-only folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise StoreError(f"{path}: is a folder; give a file name for the store, e.g. {path / 'corpus.h5'}")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise StoreError(f"cannot write {path}: {parent} is not a folder")
    if not parent.is_dir():
        raise StoreError(f"cannot write {path}: folder {parent} does not exist; create it first")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot write {path}: permission denied")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {path}: folder {parent} is not writable")
    return path


def _open_h5(path: Path, mode: str):
    import h5py

    if mode == "r" or path.exists():
        if not path.exists():
            raise StoreError(f"{path}: no such store; create one with `aucli preprocess INPUTS --out {path}`")
        if path.is_dir():
            raise StoreError(f"{path}: is a folder, not a store file")
        if path.stat().st_size == 0:
            raise StoreError(f"{path}: empty file (0 bytes), not an aucli store")
    try:
        return h5py.File(path, mode)
    except BlockingIOError:
        if mode == "r":
            raise StoreError(
                f"{path}: the store is being written by another process (a running `aucli preprocess`?); wait for it to finish"
            ) from None
        raise StoreError(
            f"{path}: the store is open in another process (preprocess, train, predict, ...); "
            "writing needs it alone: wait for the other process to finish"
        ) from None
    except PermissionError:
        action = "read" if mode == "r" else "write"
        raise StoreError(f"cannot {action} {path}: permission denied") from None
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(f"cannot write {path}: {os.strerror(error.errno)}") from None
        if "lock" in str(error).lower():
            raise StoreError(
                f"{path}: this filesystem does not support HDF5 file locking ({error}); "
                "set HDF5_USE_FILE_LOCKING=FALSE and make sure only one process writes the store"
            ) from None
        if mode in ("w", "w-") and error.errno:
            raise StoreError(f"cannot create {path}: {os.strerror(error.errno)}") from None
        if "signature" in str(error) or "not an hdf5" in str(error).lower():
            raise StoreError(f"{path}: not an aucli store (not an HDF5 file)") from None
        raise StoreError(f"{path}: cannot be opened as an aucli store ({error})") from None


def _check_marker(file, path: Path) -> None:
    marker = file.attrs.get("aucli_store")
    if isinstance(marker, bytes):
        marker = marker.decode()
    if marker != STORE_MARKER:
        raise StoreError(
            f"{path}: an HDF5 file but not an aucli store (no aucli_store attribute); use another path for a new store"
        )
    version = file.attrs.get("schema_version")
    if version is None or int(version) != SCHEMA_VERSION:
        found = "none" if version is None else int(version)
        advice = (
            "upgrade aucli to read it"
            if version is not None and int(version) > SCHEMA_VERSION
            else "re-run `aucli preprocess` into a new store"
        )
        raise StoreError(f"{path}: store schema version {found}, but this aucli reads version {SCHEMA_VERSION}; {advice}")


def committed_counts(file) -> tuple[int, int, int]:
    """(sources, faces, noface rows) that are committed: published by /sources ``n_rows`` and
    wholly present in the file."""
    sources = file["sources"]
    lengths = [sources[c.name].shape[0] for c in SOURCE_COLUMNS]
    n_sources = min([int(sources.attrs.get("n_rows", 0)), *lengths])
    row_stop = sources["row_stop"][:n_sources]
    noface_stop = sources["noface_stop"][:n_sources]
    face_len = min(file["frames"][c].shape[0] for c in ("image", *[c.name for c in FACE_COLUMNS]))
    noface_len = min(file["noface"][c.name].shape[0] for c in NOFACE_COLUMNS)
    # A flush cut short can publish sources whose rows did not all reach the file: drop them.
    while n_sources and (row_stop[n_sources - 1] > face_len or noface_stop[n_sources - 1] > noface_len):
        n_sources -= 1
    n_faces = int(row_stop[:n_sources].max(initial=0))
    n_noface = int(noface_stop[:n_sources].max(initial=0))
    return n_sources, n_faces, n_noface


def _recover(file) -> None:
    """Drop rows past the committed counts and half-written groups (before a writable open)."""
    n_sources, n_faces, n_noface = committed_counts(file)
    changed = False
    for group, n, columns in (
        ("sources", n_sources, [c.name for c in SOURCE_COLUMNS]),
        ("frames", n_faces, ["image", *[c.name for c in FACE_COLUMNS]]),
        ("noface", n_noface, [c.name for c in NOFACE_COLUMNS]),
    ):
        for name in columns:
            dataset = file[group][name]
            if dataset.shape[0] != n:
                dataset.resize(n, axis=0)
                changed = True
    if int(file["sources"].attrs.get("n_rows", 0)) != n_sources:
        file["sources"].attrs["n_rows"] = n_sources
        changed = True
    for collection in COLLECTIONS:
        for name in list(file[collection]):
            if name.startswith(PARTIAL_PREFIX):
                del file[collection][name]
                changed = True
    if changed:
        file.flush()


def open_store(path: str | Path, mode: str = "r") -> CorpusStore:
    """Open an existing store: ``mode`` ``"r"`` (read) or ``"a"`` (read and write)."""
    return CorpusStore.open(path, mode)


# ----------------------------------------------------------------------------------------------
# the store


class CorpusStore:
    """An open aucli corpus store. Use as a context manager, or call ``close()``.

    Row counts (``n_faces``, ``n_sources``) are the committed ones: data a crashed writer left past
    them is invisible to readers and removed by the next writable open.
    """

    def __init__(self, file, path: Path, writable: bool) -> None:
        self._file = file
        self.path = path
        self.writable = writable
        self._writer: SourceWriter | None = None
        self._appender: Appender | None = None
        self._load_counts()
        if writable:
            self._appender = Appender(self)

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> CorpusStore:
        """Open an existing store for reading (``"r"``) or appending (``"a"``).

        Raises:
            StoreError: missing file, not an aucli store, another schema version, locked or
                read-only.
        """
        if mode not in ("r", "a"):
            raise UsageError(f"store mode must be 'r' or 'a', got {mode!r}")
        path = Path(path).expanduser()
        if not path.exists():
            raise StoreError(f"{path}: no such store; create one with `aucli preprocess INPUTS --out {path}`")
        file = _open_h5(path, "r" if mode == "r" else "r+")
        try:
            _check_marker(file, path)
            if mode == "a":
                _recover(file)
            store = cls(file, path, writable=mode == "a")
        except BaseException:
            file.close()
            raise
        return store

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        crop_size: int = DEFAULT_CROP_SIZE,
        compression: str = "none",
        root: str | Path | None = None,
        preprocess: Mapping[str, Any] | None = None,
    ) -> CorpusStore:
        """Create a new, empty store (refuses an existing file)."""
        path = check_output_path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists; open it instead of creating it")
        if int(crop_size) < 16:
            raise UsageError(f"crop size must be at least 16 pixels, got {crop_size}")
        compression = check_compression(compression)
        file = _open_h5(path, "w-")
        try:
            _initialise(file, int(crop_size), compression, root, preprocess)
            file.flush()
            store = cls(file, path, writable=True)
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)
            raise
        return store

    def close(self) -> None:
        """Abort a source still being written, make finished ones durable, close the file."""
        if self._file is not None:
            try:
                if self._writer is not None:
                    self._writer.abort()
                if self._appender is not None:
                    self._appender.commit()
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CorpusStore({str(self.path)!r}, sources={self.n_sources}, faces={self.n_faces})"

    @property
    def h5(self):
        """The underlying ``h5py.File`` (for advanced reads; write through the methods)."""
        if self._file is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._file

    # -- counts and recovery -----------------------------------------------------------------------

    def _load_counts(self) -> None:
        self._n_sources, self._n_faces, self._n_noface = committed_counts(self.h5)

    def _settle(self) -> None:
        """Commit finished sources that wait for a common commit, so that reads see them."""
        if self._appender is not None and self._appender.pending and self._file is not None:
            self._appender.commit()

    @property
    def n_sources(self) -> int:
        """Committed /sources rows (a retried source has several; see ``sources()``)."""
        self._settle()
        return self._n_sources

    @property
    def n_faces(self) -> int:
        """Committed face rows."""
        self._settle()
        return self._n_faces

    @property
    def n_noface(self) -> int:
        """Committed rows of sampled frames without a face."""
        self._settle()
        return self._n_noface

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only")

    # -- store-wide attributes ---------------------------------------------------------------------

    @property
    def crop_size(self) -> int:
        return int(self.h5.attrs["crop_size"])

    @property
    def compression(self) -> str:
        value = self.h5.attrs.get("compression", "none")
        return value.decode() if isinstance(value, bytes) else str(value)

    @property
    def root(self) -> Path | None:
        value = self.h5.attrs.get("root", "")
        value = value.decode() if isinstance(value, bytes) else str(value)
        return Path(value) if value else None

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (schema version, crop size, creation, preprocess options...)."""
        return read_attrs(self.h5)

    # -- sources -----------------------------------------------------------------------------------

    def source_table(self, *, latest: bool = True) -> dict[str, np.ndarray]:
        """Committed /sources columns as arrays (strings as ``str`` objects), plus ``index``.

        With ``latest`` only the last row of each key is kept (a source retried after a failure
        has an earlier ``failed`` row).
        """
        group = self.h5["sources"]
        n = self.n_sources
        table: dict[str, np.ndarray] = {}
        for column in SOURCE_COLUMNS:
            dataset = group[column.name]
            if column.dtype == "str":
                table[column.name] = np.asarray(dataset.asstr()[:n], dtype=object) if n else np.zeros(0, object)
            else:
                table[column.name] = dataset[:n]
        table["index"] = np.arange(n)
        if latest and n:
            last: dict[str, int] = {}
            for i, key in enumerate(table["key"]):
                last[key] = i
            keep = np.array(sorted(last.values()), dtype=np.int64)
            table = {name: values[keep] for name, values in table.items()}
        return table

    def sources(self, *, latest: bool = True) -> list[SourceRecord]:
        """Committed sources, in the order they were written."""
        table = self.source_table(latest=latest)
        names = [c.name for c in SOURCE_COLUMNS]
        return [
            SourceRecord(
                index=int(table["index"][i]),
                **{name: _plain(table[name][i]) for name in names},
            )
            for i in range(len(table["index"]))
        ]

    def find_source(self, key: str) -> SourceRecord | None:
        """The latest committed row of the source ``key``, or None."""
        for record in reversed(self.sources(latest=False)):
            if record.key == key:
                return record
        return None

    def record_failure(self, info: SourceInfo, message: str, *, n_frames: int = 0) -> SourceRecord:
        """Record a ``failed`` source: nothing of it is stored; later runs may retry it."""
        self._require_writable()
        if self._writer is not None:
            raise StoreError("another source is being written; commit or abort it first")
        appender = self._appender
        return appender.finish(info, "failed", n_frames, appender.next_face, appender.next_noface, message, time.monotonic())  # type: ignore[union-attr]

    def begin_source(self, info: SourceInfo) -> SourceWriter:
        """Start writing the faces of one source; ``commit()`` or ``abort()`` the writer."""
        self._require_writable()
        if self._writer is not None:
            raise StoreError("another source is being written; commit or abort it first")
        self._writer = SourceWriter(self, info)
        return self._writer

    def commit(self) -> None:
        """Make every finished source durable now (reads and ``close()`` do it too)."""
        self._require_writable()
        self._appender.commit()  # type: ignore[union-attr]

    # -- faces -------------------------------------------------------------------------------------

    def face_table(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Committed /frames metadata columns (not the images), each with ``n_faces`` rows."""
        names = [c.name for c in FACE_COLUMNS] if columns is None else list(columns)
        known = {c.name for c in FACE_COLUMNS}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UsageError(f"unknown face column(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        group = self.h5["frames"]
        return {name: group[name][: self.n_faces] for name in names}

    def noface_table(self) -> dict[str, np.ndarray]:
        """Committed /noface columns: sampled frames without a stored face."""
        group = self.h5["noface"]
        return {c.name: group[c.name][: self.n_noface] for c in NOFACE_COLUMNS}

    def face_subjects(self) -> np.ndarray:
        """(n_faces,) subject of each face row (from its source), as ``str`` objects."""
        group = self.h5["sources"]
        subjects = np.asarray(group["subject"].asstr()[: self.n_sources], dtype=object) if self.n_sources else np.zeros(0, object)
        return subjects[self.h5["frames"]["source"][: self.n_faces]]

    def rows(self, *, subjects: Sequence[str] | None = None, sources: Sequence[str] | None = None) -> np.ndarray:
        """Face rows (sorted) of the given subjects and/or source keys; all rows when neither is given."""
        mask = np.ones(self.n_faces, dtype=bool)
        if subjects is not None:
            wanted = {str(s) for s in subjects}
            mask &= np.isin(self.face_subjects(), list(wanted))
        if sources is not None:
            keys = (
                np.asarray(self.h5["sources"]["key"].asstr()[: self.n_sources], dtype=object)
                if self.n_sources
                else np.zeros(0, object)
            )
            wanted_sources = np.flatnonzero(np.isin(keys, [str(k) for k in sources]))
            mask &= np.isin(self.h5["frames"]["source"][: self.n_faces], wanted_sources)
        return np.flatnonzero(mask)

    def images(self, rows: Sequence[int] | np.ndarray | slice) -> np.ndarray:
        """Face crops (k, S, S, 3) uint8 RGB of the given rows (any order, repeats allowed)."""
        dataset = self.h5["frames"]["image"]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_faces)
            return dataset[start:stop:step]
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_faces):
            raise UsageError(f"face rows must be in 0..{self.n_faces - 1}")
        unique, inverse = np.unique(rows, return_inverse=True)
        data = np.empty((unique.size, self.crop_size, self.crop_size, 3), dtype=np.uint8)
        # Runs of consecutive rows are read as slabs; h5py's fancy indexing is slow.
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run in np.split(np.arange(unique.size), breaks):
            if run.size:
                data[run[0] : run[-1] + 1] = dataset[unique[run[0]] : unique[run[-1]] + 1]
        return data[inverse]

    def image(self, row: int) -> np.ndarray:
        """One face crop (S, S, 3) uint8 RGB."""
        if not 0 <= int(row) < self.n_faces:
            raise UsageError(f"face row {row} is out of range 0..{self.n_faces - 1}")
        return self.h5["frames"]["image"][int(row)]

    def frame_rows(self, record: SourceRecord, *, track: int = SUBJECT_TRACK) -> dict[int, int]:
        """frame index -> face row of ``track`` in a source (default: the subject's, track 0)."""
        if record.n_faces == 0:
            return {}
        group = self.h5["frames"]
        frames = group["frame"][record.row_start : record.row_stop]
        tracks = group["track"][record.row_start : record.row_stop]
        rows = np.arange(record.row_start, record.row_stop)
        keep = tracks == track
        return {int(frame): int(row) for frame, row in zip(frames[keep], rows[keep])}

    def noface_frames(self, record: SourceRecord) -> np.ndarray:
        """Frame indices of a source that were sampled but hold no stored face."""
        return self.h5["noface"]["frame"][record.noface_start : record.noface_stop]

    # -- label sets --------------------------------------------------------------------------------

    def label_sets(self) -> list[str]:
        """Names of the label sets, sorted."""
        return sorted(name for name in self.h5["labels"] if not name.startswith(PARTIAL_PREFIX))

    def label_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of a label set (``au_names``, ``n_rows``, ``format``, ...), without its data."""
        return read_attrs(self._collection_item("labels", name))

    def read_labels(self, name: str, *, au_names: Sequence[str] | None = None) -> LabelSet:
        """A label set, padded with unknown (-1) rows up to ``n_faces``.

        With ``au_names``, the columns are those AUs in that order; an AU the set lacks is unknown.
        """
        group = self._collection_item("labels", name)
        attrs = read_attrs(group)
        stored_names = [str(a) for a in attrs.get("au_names", [])]
        occurrence = group["occurrence"][: self.n_faces]
        intensity = group["intensity"][: self.n_faces] if "intensity" in group else None
        if occurrence.shape[0] < self.n_faces:
            pad = self.n_faces - occurrence.shape[0]
            occurrence = np.concatenate([occurrence, np.full((pad, occurrence.shape[1]), -1, np.int8)])
            if intensity is not None:
                intensity = np.concatenate([intensity, np.full((pad, intensity.shape[1]), np.nan, np.float32)])
        if au_names is not None:
            wanted = [parse_au(a) for a in au_names]
            index = {a: i for i, a in enumerate(stored_names)}
            columns = [index.get(a, -1) for a in wanted]
            picked = np.full((occurrence.shape[0], len(wanted)), -1, np.int8)
            picked_intensity = np.full((occurrence.shape[0], len(wanted)), np.nan, np.float32) if intensity is not None else None
            for j, i in enumerate(columns):
                if i >= 0:
                    picked[:, j] = occurrence[:, i]
                    if picked_intensity is not None:
                        picked_intensity[:, j] = intensity[:, i]  # type: ignore[index]
            occurrence, intensity, stored_names = picked, picked_intensity, wanted
        return LabelSet(name, stored_names, occurrence, intensity, attrs)

    def write_labels(
        self,
        name: str,
        au_names: Sequence[str],
        occurrence: np.ndarray,
        *,
        intensity: np.ndarray | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a new label set (refuses an existing name: label sets are never overwritten).

        Args:
            au_names: K AU names (any spelling ``parse_au`` accepts; stored canonical).
            occurrence: (n_faces, K) with values -1 (unknown), 0, 1.
            intensity: optional (n_faces, K) float, NaN unknown.
        """
        self._require_writable()
        check_name(name, "label set name")
        if name in self.h5["labels"]:
            raise StoreError(
                f"label set {name!r} already exists in {self.path}; import under another name (--as NAME) "
                f"or delete it first (`aucli labels delete {self.path} {name}`)"
            )
        names = [parse_au(a) for a in au_names]
        if len(set(names)) != len(names):
            raise UsageError(f"AU names repeat in {names}")
        occurrence = np.asarray(occurrence)
        if occurrence.shape != (self.n_faces, len(names)):
            raise UsageError(
                f"occurrence has shape {occurrence.shape}, but the store has {self.n_faces} face rows "
                f"and {len(names)} AUs were named: expected {(self.n_faces, len(names))}"
            )
        bad = ~np.isin(occurrence, (-1, 0, 1))
        if bad.any():
            raise UsageError(f"occurrence values must be -1, 0 or 1; found {np.unique(occurrence[bad])[:5].tolist()}")
        if intensity is not None:
            intensity = np.asarray(intensity, dtype=np.float32)
            if intensity.shape != occurrence.shape:
                raise UsageError(f"intensity has shape {intensity.shape}, expected {occurrence.shape}")
        meta = {"format": "", "files": [], **(attrs or {})}
        meta.update(au_names=names, n_rows=self.n_faces, created_at=utc_now(), created_by=version_string())
        with self._partial_group("labels", name) as group:
            chunks = (max(1, min(self.n_faces, 65536)), max(1, len(names)))
            group.create_dataset("occurrence", data=occurrence.astype(np.int8), chunks=chunks, maxshape=(None, len(names)))
            if intensity is not None:
                group.create_dataset("intensity", data=intensity, chunks=chunks, maxshape=(None, len(names)))
            write_attrs(group, meta)

    def rename_labels(self, old: str, new: str) -> None:
        """Rename a label set (refuses an existing target name)."""
        self._rename("labels", old, new, "label set")

    def delete_labels(self, name: str) -> None:
        """Delete a label set (the file keeps its size until ``h5repack``)."""
        self._delete("labels", name)

    # -- prediction and audit runs ---------------------------------------------------------------

    def runs(self, kind: str) -> list[str]:
        """Names of the ``predictions`` or ``audit`` runs, sorted."""
        self._check_kind(kind)
        return sorted(name for name in self.h5[kind] if not name.startswith(PARTIAL_PREFIX))

    def unique_run_name(self, kind: str, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``, ... whichever is free."""
        self._check_kind(kind)
        check_name(base, "run name")
        taken = set(self.h5[kind])
        if base not in taken:
            return base
        k = 2
        while f"{base}-{k}" in taken:
            k += 1
        return f"{base}-{k}"

    @contextlib.contextmanager
    def run_writer(self, kind: str, name: str, attrs: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Write a run incrementally and atomically::

            with store.run_writer("predictions", "vit-fold1", {"checkpoint": ck}) as group:
                probs = group.create_dataset("probs", shape=(n, k), dtype="float32")
                for rows, p in batches: probs[rows] = p

        ``group`` is an ``h5py.Group`` under a ``.partial-`` name; on a normal exit it is renamed to
        ``/<kind>/<name>`` and flushed; on an exception it is deleted. Refuses an existing name.
        """
        self._check_kind(kind)
        self._require_writable()
        check_name(name, "run name")
        if name in self.h5[kind]:
            raise StoreError(f"{kind} run {name!r} already exists in {self.path}; choose another name or delete it")
        meta = {**(attrs or {}), "created_at": utc_now(), "created_by": version_string(), "n_faces": self.n_faces}
        with self._partial_group(kind, name) as group:
            write_attrs(group, meta)
            yield group

    def write_run(
        self,
        kind: str,
        name: str,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a whole run at once (atomically, see :meth:`run_writer`)."""
        with self.run_writer(kind, name, attrs) as group:
            for key, value in arrays.items():
                value = np.asarray(value)
                if value.dtype.kind in "OU":
                    import h5py

                    group.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
                else:
                    group.create_dataset(key, data=value)

    def read_run(self, kind: str, name: str) -> Run:
        """A run's datasets (loaded) and attributes."""
        self._check_kind(kind)
        group = self._collection_item(kind, name)
        arrays = {}
        for key, dataset in group.items():
            if not hasattr(dataset, "shape"):
                continue
            arrays[key] = dataset.asstr()[()] if dataset.dtype.kind == "O" else dataset[()]
        return Run(kind, name, arrays, read_attrs(group))

    def run_attrs(self, kind: str, name: str) -> dict[str, Any]:
        """A run's attributes, without its data."""
        self._check_kind(kind)
        return read_attrs(self._collection_item(kind, name))

    def rename_run(self, kind: str, old: str, new: str) -> None:
        self._check_kind(kind)
        self._rename(kind, old, new, f"{kind} run")

    def delete_run(self, kind: str, name: str) -> None:
        self._check_kind(kind)
        self._delete(kind, name)

    # -- collection helpers ------------------------------------------------------------------------

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in RUN_KINDS:
            raise UsageError(f"run kind must be one of {', '.join(RUN_KINDS)}, got {kind!r}")

    def _collection_item(self, collection: str, name: str):
        group = self.h5[collection]
        if name.startswith(PARTIAL_PREFIX) or name not in group:
            what = "label set" if collection == "labels" else f"{collection} run"
            have = sorted(n for n in group if not n.startswith(PARTIAL_PREFIX))
            listing = f"; the store has: {', '.join(have)}" if have else "; the store has none"
            raise StoreError(f"no {what} {name!r} in {self.path}{listing}")
        return group[name]

    @contextlib.contextmanager
    def _partial_group(self, collection: str, name: str) -> Iterator[Any]:
        parent = self.h5[collection]
        partial = f"{PARTIAL_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        group = parent.create_group(partial)
        try:
            yield group
            self.h5.flush()
            parent.move(partial, name)
            self.h5.flush()
        except BaseException:
            if partial in parent:
                del parent[partial]
                self.h5.flush()
            raise

    def _rename(self, collection: str, old: str, new: str, what: str) -> None:
        self._require_writable()
        self._collection_item(collection, old)
        check_name(new, f"{what} name")
        if new in self.h5[collection]:
            raise StoreError(f"{what} {new!r} already exists in {self.path}; choose another name")
        self.h5[collection].move(old, new)
        self.h5.flush()

    def _delete(self, collection: str, name: str) -> None:
        self._require_writable()
        self._collection_item(collection, name)
        del self.h5[collection][name]
        self.h5.flush()


# ----------------------------------------------------------------------------------------------
# creation


def _initialise(file, crop_size: int, compression: str, root, preprocess) -> None:
    write_attrs(
        file,
        {
            "aucli_store": STORE_MARKER,
            "schema_version": SCHEMA_VERSION,
            "crop_size": crop_size,
            "compression": compression,
            "root": Path(root).as_posix() if root else "",
            "preprocess": dict(preprocess or {}),
            "created_at": utc_now(),
            "created_by": version_string(),
        },
    )
    sources = file.create_group("sources")
    for column in SOURCE_COLUMNS:
        _create_column(sources, column, 256)
    sources.attrs["n_rows"] = 0
    frames = file.create_group("frames")
    options: dict[str, Any] = {}
    if compression == "lzf":
        options = {"compression": "lzf"}
    elif compression == "gzip":
        options = {"compression": "gzip", "compression_opts": 4}
    frames.create_dataset(
        "image",
        shape=(0, crop_size, crop_size, 3),
        maxshape=(None, crop_size, crop_size, 3),
        chunks=(1, crop_size, crop_size, 3),
        dtype=np.uint8,
        **options,
    )
    for column in FACE_COLUMNS:
        _create_column(frames, column, 4096)
    noface = file.create_group("noface")
    for column in NOFACE_COLUMNS:
        _create_column(noface, column, 4096)
    for collection in COLLECTIONS:
        file.create_group(collection)


def _create_column(group, column: Column, chunk_rows: int) -> None:
    group.create_dataset(
        column.name,
        shape=(0, *column.shape),
        maxshape=(None, *column.shape),
        chunks=(chunk_rows, *column.shape),
        dtype=numpy_dtype(column),
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
