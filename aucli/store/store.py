"""``CorpusStore``: open, create, append to and read an aucli corpus store (see ``schema.py``).

One writer at a time (an exclusive file lock refuses a second one with a clear error); any number
of readers when nobody writes. Faces are appended source by source through a
:class:`SourceWriter`; a commit makes finished sources durable through the store's rollback
journal (:mod:`aucli.store.journal`), so a crash, ``kill -9``, a full disk or an I/O error at any
moment leaves the store as it was after the last commit. Label sets and runs
(:mod:`aucli.store.groups`) are written under a ``.partial-`` name and renamed when complete.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aucli.errors import StoreError, UsageError
from aucli.store.files import (
    DAMAGE_ERRORS,
    check_marker,
    check_output_path,
    committed_counts,
    damaged_error,
    drop_uncommitted,
    initialise,
    open_file,
    read_attrs,
)
from aucli.store.groups import NamedGroups
from aucli.store.journal import JournaledFile, free_bytes
from aucli.store.records import LabelSet, Run, SourceInfo, SourceRecord
from aucli.store.schema import (
    DEFAULT_CROP_SIZE,
    FACE_COLUMNS,
    NOFACE_COLUMNS,
    SOURCE_COLUMNS,
    SUBJECT_TRACK,
    check_compression,
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

#: Free bytes a write leaves on the disk besides its own data (HDF5 metadata, the journal).
SPACE_MARGIN = 1 << 20


def open_store(path: str | Path, mode: str = "r") -> CorpusStore:
    """Open an existing store: ``mode`` ``"r"`` (read) or ``"a"`` (read and write)."""
    return CorpusStore.open(path, mode)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class CorpusStore(NamedGroups):
    """An open aucli corpus store. Use as a context manager, or call ``close()``.

    Row counts (``n_faces``, ``n_sources``) are the committed ones. A writable store holds its
    file through a :class:`~aucli.store.journal.JournaledFile`: what was written since the last
    commit is rolled back when a write fails, the process dies, or the store is closed after a
    failure.
    """

    def __init__(self, file, path: Path, io: JournaledFile | None) -> None:
        self._file = file
        self._io = io
        self.path = path
        self.writable = io is not None
        self._reported = False  # a failed write was already raised as a StoreError
        self._writer: SourceWriter | None = None
        self._appender: Appender | None = None
        self._load_counts()
        if io is not None:
            self._appender = Appender(self)

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> CorpusStore:
        """Open an existing store for reading (``"r"``) or appending (``"a"``).

        A write a killed process left unfinished is rolled back first.

        Raises:
            StoreError: missing file, not an aucli store, another schema version, locked,
                read-only, truncated or damaged.
        """
        if mode not in ("r", "a"):
            raise UsageError(f"store mode must be 'r' or 'a', got {mode!r}")
        path = Path(path).expanduser()
        file, io = open_file(path, writable=mode == "a")
        try:
            check_marker(file, path)
            store = cls(file, path, io)
            if io is not None and drop_uncommitted(file):
                store._durable()
                store._load_counts()
        except DAMAGE_ERRORS as error:
            _close_quietly(file, io)
            raise damaged_error(path, error) from None
        except BaseException:
            _close_quietly(file, io)
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
        """Create a new, empty store (refuses an existing file).

        The store is made under a temporary name and linked into place once complete, so ``path``
        never names a half-made store.
        """
        path = check_output_path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists; open it instead of creating it")
        if int(crop_size) < 16:
            raise UsageError(f"crop size must be at least 16 pixels, got {crop_size}")
        compression = check_compression(compression)
        temporary = path.with_name(f".{path.name}.new-{os.getpid()}")
        try:
            _make_store(temporary, int(crop_size), compression, root, preprocess)
            os.link(temporary, path)
        except FileExistsError:
            raise StoreError(f"{path}: already exists; open it instead of creating it") from None
        except OSError as error:
            raise StoreError(f"cannot create {path}: {error.strerror or error}") from None
        finally:
            temporary.unlink(missing_ok=True)
        return cls.open(path, "a")

    def close(self) -> None:
        """Abort a source still being written, make finished ones durable, close the file.

        After a failed write the store goes back to its last commit instead.
        """
        if self._file is None:
            return
        try:
            if self._writer is not None:
                self._writer.abort()
            if self._appender is not None and not self._failed():
                self._appender.commit()
        finally:
            file, io = self._file, self._io
            self._file = self._io = None
            file.close()
            if io is not None:
                self._finish(io)

    def _finish(self, io: JournaledFile) -> None:
        """Commit what the closed HDF5 file wrote last, or roll back after a failure."""
        if io.failed is None:
            io.commit()
        failure = io.failed
        try:
            if failure is not None:
                io.rollback()  # a StoreError when the disk refuses that too (the journal stays)
        finally:
            io.close()
        if failure is not None and not self._reported:
            self._reported = True
            raise _write_error(self.path, failure, self._n_sources)

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CorpusStore({str(self.path)!r}, sources={self._n_sources}, faces={self._n_faces})"

    @property
    def h5(self):
        """The underlying ``h5py.File`` (for advanced reads; write through the methods)."""
        if self._file is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._file

    # -- durability --------------------------------------------------------------------------------

    def _failed(self) -> bool:
        return self._io is not None and self._io.failed is not None

    def _raise_if_failed(self) -> None:
        """A failed write becomes one StoreError (the store rolls back when it is closed)."""
        if not self._failed():
            return
        if self._reported:
            raise StoreError(f"{self.path}: a write failed before; close the store")
        self._reported = True
        raise _write_error(self.path, self._io.failed, self._n_sources)  # type: ignore[union-attr, arg-type]

    def _durable(self) -> None:
        """Flush HDF5 and commit the journal: what was written survives a crash from now on."""
        self._raise_if_failed()
        self.h5.flush()
        self._io.commit()  # type: ignore[union-attr]
        self._raise_if_failed()

    def _ensure_space(self, nbytes: int) -> None:
        """Refuse a write of ``nbytes`` that would leave less than :data:`SPACE_MARGIN` free."""
        free = free_bytes(self.path.parent)
        if free < nbytes + SPACE_MARGIN:
            raise StoreError(
                f"{self.path}: not enough free space on its disk ({_megabytes(free)} free; the next write needs "
                f"{_megabytes(nbytes + SPACE_MARGIN)}); the store keeps its last commit ({self._n_sources} source(s)): "
                "free some space and rerun the same command to continue"
            )

    # -- counts ------------------------------------------------------------------------------

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


def _close_quietly(file, io: JournaledFile | None) -> None:
    """Close a store that failed to open (what it wrote is rolled back)."""
    file.close()
    if io is not None:
        io.rollback()
        io.close()


def _make_store(path: Path, crop_size: int, compression: str, root, preprocess) -> None:
    """Write a new, empty store at ``path`` (a fresh name), durably; OSError when that fails."""
    import h5py

    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666))
    io = JournaledFile(path)
    try:
        with h5py.File(io, "w") as file:
            initialise(file, crop_size, compression, root, preprocess)
        io.commit()
        if io.failed is not None:
            raise io.failed
    finally:
        io.close()
        io.journal.unlink(missing_ok=True)


def _write_error(path: Path, error: OSError, n_sources: int) -> StoreError:
    """The message of a write the disk refused (the store rolls back to its last commit)."""
    kept = f"the write was rolled back and the store keeps its last commit ({n_sources} source(s))"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        return StoreError(f"{path}: {what}; {kept}: free some space and rerun the same command to continue")
    reason = os.strerror(error.errno) if error.errno else str(error)
    return StoreError(f"{path}: writing the store failed ({reason}); {kept}; check the disk before writing to it again")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
