"""Appending faces to a store: row buffers, slab writes, and durable commits of finished sources.

A source's faces are buffered and written to the file in slabs of ``WRITE_BATCH`` rows, past the
committed length, each after a check that the disk has room for it. When the source is finished
its /sources row joins the *pending* sources; a commit writes the pending rows, raises the
/sources ``n_rows`` attribute (the value that publishes them to readers) and commits the store's
journal. Until then a crash, a full disk or an I/O error loses them and nothing else: the journal
rolls the file back to the last commit.

A finished source is committed at once, except that sources finishing less than
``COMMIT_INTERVAL`` seconds after the previous commit, and themselves shorter than that, wait
for the next one (a corpus of single images would otherwise spend most of its time flushing).
So an interrupt loses at most the source in progress plus ``COMMIT_INTERVAL`` seconds of work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from aucli.errors import StoreError
from aucli.store.records import SourceInfo, SourceRecord, utc_now
from aucli.store.schema import FACE_COLUMNS, NOFACE_COLUMNS, SOURCE_COLUMNS

__all__ = ["COMMIT_INTERVAL", "WRITE_BATCH", "Appender", "SourceWriter"]


class WritableStore(Protocol):
    """What the writer uses of :class:`aucli.store.store.CorpusStore` (no import back to it)."""

    _n_sources: int
    _n_faces: int
    _n_noface: int
    _file: Any
    _writer: SourceWriter | None
    _appender: Appender | None

    @property
    def h5(self) -> Any: ...

    @property
    def crop_size(self) -> int: ...

    def _ensure_space(self, nbytes: int) -> None: ...

    def _raise_if_failed(self) -> None: ...

    def _durable(self) -> None: ...

#: Faces buffered in memory before one slab write (``WRITE_BATCH`` chunks in one call).
WRITE_BATCH = 64
#: Seconds of finished short sources that may wait for a common commit.
COMMIT_INTERVAL = 0.5


class Appender:
    """The write side of a writable store: row buffers and pending sources (one per store)."""

    def __init__(self, store: WritableStore) -> None:
        self.store = store
        size = store.crop_size
        self.file_faces = store._n_faces  # face rows present in the file (a writable open truncates)
        self.file_noface = store._n_noface
        self.images = np.empty((WRITE_BATCH, size, size, 3), dtype=np.uint8)
        self.meta: dict[str, list] = {c.name: [] for c in FACE_COLUMNS}
        self.noface: dict[str, list] = {c.name: [] for c in NOFACE_COLUMNS}
        self.pending: list[dict[str, Any]] = []
        self.last_commit = time.monotonic()

    @property
    def next_face(self) -> int:
        return self.file_faces + len(self.meta["frame"])

    @property
    def next_noface(self) -> int:
        return self.file_noface + len(self.noface["frame"])

    @property
    def next_source(self) -> int:
        return self.store._n_sources + len(self.pending)

    def add_face(self, source: int, frame: int, timestamp: float, face: Any) -> None:
        size = self.store.crop_size
        crop = np.asarray(face.crop)
        if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
            raise StoreError(
                f"face crop has shape {crop.shape} {crop.dtype}, but the store holds ({size}, {size}, 3) uint8 crops"
            )
        k = len(self.meta["frame"])
        self.images[k] = crop
        self.meta["source"].append(source)
        self.meta["frame"].append(int(frame))
        self.meta["timestamp"].append(float(timestamp))
        self.meta["track"].append(int(getattr(face, "track_id", 0)))
        self.meta["box"].append(np.asarray(face.box, dtype=np.float32).reshape(4))
        self.meta["landmarks"].append(np.asarray(face.landmarks, dtype=np.float32).reshape(5, 2))
        self.meta["score"].append(float(face.score))
        if k + 1 == WRITE_BATCH:
            self.write_faces()

    def add_noface(self, source: int, frame: int, timestamp: float) -> None:
        self.noface["source"].append(source)
        self.noface["frame"].append(int(frame))
        self.noface["timestamp"].append(float(timestamp))
        if len(self.noface["frame"]) >= 4096:
            self.write_noface()

    def write_faces(self) -> None:
        """Write the buffered faces as one slab past the rows already in the file."""
        k = len(self.meta["frame"])
        if not k:
            return
        self.store._ensure_space(self.images[:k].nbytes)
        group = self.store.h5["frames"]
        start, stop = self.file_faces, self.file_faces + k
        for name in ("image", *[c.name for c in FACE_COLUMNS]):
            group[name].resize(stop, axis=0)
        group["image"][start:stop] = self.images[:k]
        for column in FACE_COLUMNS:
            group[column.name][start:stop] = np.asarray(self.meta[column.name], dtype=np.dtype(column.dtype))
            self.meta[column.name].clear()
        self.file_faces = stop
        self.store._raise_if_failed()

    def write_noface(self) -> None:
        k = len(self.noface["frame"])
        if not k:
            return
        group = self.store.h5["noface"]
        start, stop = self.file_noface, self.file_noface + k
        for column in NOFACE_COLUMNS:
            group[column.name].resize(stop, axis=0)
            group[column.name][start:stop] = np.asarray(self.noface[column.name], dtype=np.dtype(column.dtype))
            self.noface[column.name].clear()
        self.file_noface = stop

    def truncate(self, face_start: int, noface_start: int) -> None:
        """Drop every row from ``face_start`` / ``noface_start`` on (buffered or in the file)."""
        if face_start >= self.file_faces:
            keep = face_start - self.file_faces
            for values in self.meta.values():
                del values[keep:]
        else:
            for values in self.meta.values():
                values.clear()
            for name in ("image", *[c.name for c in FACE_COLUMNS]):
                self.store.h5["frames"][name].resize(face_start, axis=0)
            self.file_faces = face_start
        if noface_start >= self.file_noface:
            keep = noface_start - self.file_noface
            for values in self.noface.values():
                del values[keep:]
        else:
            for values in self.noface.values():
                values.clear()
            for column in NOFACE_COLUMNS:
                self.store.h5["noface"][column.name].resize(noface_start, axis=0)
            self.file_noface = noface_start

    def finish(
        self, info: SourceInfo, status: str, n_frames: int, row_start: int, noface_start: int, message: str, started: float
    ) -> SourceRecord:
        """Add a finished source (its rows end at the buffers' end) to the pending ones."""
        values = {
            "key": info.key,
            "path": str(info.path),
            "kind": info.kind,
            "subject": info.subject,
            "recording": info.recording,
            "size": int(info.size),
            "mtime_ns": int(info.mtime_ns),
            "digest": info.digest,
            "status": status,
            "n_frames": int(n_frames),
            "n_faces": int(self.next_face - row_start),
            "row_start": int(row_start),
            "row_stop": int(self.next_face),
            "noface_start": int(noface_start),
            "noface_stop": int(self.next_noface),
            "message": message,
            "processed_at": utc_now(),
        }
        for name, value in values.items():
            if isinstance(value, str) and not _is_utf8(value):
                raise StoreError(f"{value!r}: the source's {name} is not valid UTF-8 text and cannot be stored")
        record = SourceRecord(index=self.next_source, **values)
        self.pending.append(values)
        now = time.monotonic()
        if now - started >= COMMIT_INTERVAL or now - self.last_commit >= COMMIT_INTERVAL:
            try:
                self.commit()
            except BaseException:
                # not finished after all: the caller aborts it; sources finished before stay pending
                self.pending = [row for row in self.pending if row is not values]
                raise
        return record

    def commit(self) -> None:
        """Make the pending sources durable (one journal commit)."""
        self.write_faces()
        self.write_noface()
        if not self.pending:
            return
        store = self.store
        group = store.h5["sources"]
        start = store._n_sources
        stop = start + len(self.pending)
        for column in SOURCE_COLUMNS:
            dataset = group[column.name]
            dataset.resize(stop, axis=0)
            values = [row[column.name] for row in self.pending]
            dataset[start:stop] = np.asarray(values, dtype=object if column.dtype == "str" else np.dtype(column.dtype))
        group.attrs["n_rows"] = stop
        store._durable()
        store._n_sources = stop
        store._n_faces = max([store._n_faces, *[row["row_stop"] for row in self.pending]])
        store._n_noface = max([store._n_noface, *[row["noface_stop"] for row in self.pending]])
        self.pending.clear()
        self.last_commit = time.monotonic()


def _is_utf8(text: str) -> bool:
    """False for names decoded from bytes that are not UTF-8 (``os.fsdecode`` surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SourceWriter:
    """Appends the faces of one source; ``commit()`` finishes it, ``abort()`` drops it."""

    def __init__(self, store: WritableStore, info: SourceInfo) -> None:
        self.store = store
        self.info = info
        self._appender: Appender = store._appender  # type: ignore[assignment]
        self.row_start = self._appender.next_face
        self.noface_start = self._appender.next_noface
        self.source_index = self._appender.next_source
        self.n_frames = 0
        self.n_faces = 0
        self._started = time.monotonic()
        self._closed = False

    def add_frame(self, frame_index: int, timestamp: float, faces: Sequence[Any]) -> None:
        """Record one sampled frame and its faces.

        Each face has ``crop`` (S, S, 3) uint8, ``box`` (4,), ``landmarks`` (5, 2), ``score`` and
        ``track_id`` (an ``aucli.faces.pipeline.FaceRecord``); no faces adds a /noface row.
        """
        self._check_open()
        self.n_frames += 1
        if not faces:
            self._appender.add_noface(self.source_index, frame_index, timestamp)
            return
        for face in faces:
            self._appender.add_face(self.source_index, frame_index, timestamp, face)
            self.n_faces += 1

    def commit(self, message: str = "") -> SourceRecord:
        """Finish the source as ``done``; it is durable now or within ``COMMIT_INTERVAL`` seconds."""
        self._check_open()
        record = self._appender.finish(
            self.info, "done", self.n_frames, self.row_start, self.noface_start, message, self._started
        )
        self._close()
        return record

    def abort(self) -> None:
        """Drop everything written for this source (the store stays as after the last source)."""
        if self._closed:
            return
        if self.store._file is not None:
            self._appender.truncate(self.row_start, self.noface_start)
        self._close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this source writer is already committed or aborted")

    def _close(self) -> None:
        self._closed = True
        if self.store._writer is self:
            self.store._writer = None
