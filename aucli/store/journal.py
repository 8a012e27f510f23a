"""A rollback journal under the store's HDF5 file: a write either commits whole or never happened.

HDF5 updates its metadata (superblock, object headers, chunk indexes) in place, and a write that
fails half-way (a full disk, an I/O error, ``kill -9`` during a flush) leaves a file HDF5 cannot
open again. So a writable store is not opened by path: h5py's ``fileobj`` driver routes every
read and write of the HDF5 library through a :class:`JournaledFile`, which

- writes bytes past the file's committed length at once (a rollback cuts them off), but keeps
  in memory every write over a byte that was in the file at the last commit (HDF5's metadata
  updates: small), where HDF5's reads see it;
- on :meth:`~JournaledFile.commit` appends the old content of those bytes to the journal
  ``<store>.journal`` beside the store, fsyncs the journal, writes the kept bytes over them,
  fsyncs the store and deletes the journal: that deletion is the commit point (two fsyncs a
  commit, however many blocks HDF5 updated);
- on a failed write (``ENOSPC``, ``EIO``, ...) stops touching the disk: HDF5 is told the write
  succeeded and later writes go to memory only, so the library never sees an error (its error
  paths leave broken files and sometimes crash); the store then closes and :meth:`rollback`
  restores the saved bytes and cuts the file to its committed length.

A journal left by a killed process (a *hot* journal) is rolled back by the next open, read-only
ones included (:func:`recover`). Bytes appended past the committed length need no journal:
rollback truncates them. The journal holds a header (magic, committed length, CRC) and records
(offset, length, CRC, bytes); a torn last record was never applied to the store.

The writer also holds an exclusive ``flock`` on the store for as long as it is open: HDF5's own
readers take a shared one, so a second writer, or a reader during a write, is refused.

:class:`SafeFile` is the same file object without the journal: preprocess workers write their
part files through it, so a full disk stops them with a plain error instead of crashing HDF5.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import zlib
from pathlib import Path

from aucli.errors import StoreError

__all__ = ["JOURNAL_SUFFIX", "JournaledFile", "SafeFile", "free_bytes", "journal_path", "recover"]

JOURNAL_SUFFIX = ".journal"
_MAGIC = b"AUCLI-JOURNAL-1\n"
_HEADER = struct.Struct("<16sQI")  # magic, committed length, crc32 of the two
_RECORD = struct.Struct("<QQI")  # offset, length, crc32 of the bytes
#: errno values of a filesystem without file locks (some network filesystems).
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def journal_path(store: Path) -> Path:
    """``corpus.h5`` -> ``corpus.h5.journal`` (beside it, on the same filesystem)."""
    return store.with_name(store.name + JOURNAL_SUFFIX)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem of ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _locking_wanted() -> bool:
    return os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() not in ("FALSE", "0")


def lock_exclusive(fd: int, path: Path) -> bool:
    """Take the store's writer lock; False where the filesystem has no locks (then no guard)."""
    if not _locking_wanted():
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreError(
            f"{path}: the store is open in another process (preprocess, train, predict, ...); "
            "writing needs it alone: wait for the other process to finish"
        ) from None
    except OSError as error:
        if error.errno in _NO_LOCKS:
            return False
        raise
    return True


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view, offset = view[written:], offset + written


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_journal(journal: Path) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(committed length, records) of a journal; None when its header never reached the disk."""
    data = journal.read_bytes()
    if len(data) < _HEADER.size:
        return None
    magic, committed, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC or crc != zlib.crc32(data[: _HEADER.size - 4]):
        return None
    records, at = [], _HEADER.size
    while at + _RECORD.size <= len(data):
        offset, length, crc = _RECORD.unpack_from(data, at)
        chunk = data[at + _RECORD.size : at + _RECORD.size + length]
        if len(chunk) != length or zlib.crc32(chunk) != crc:
            break  # torn: written by a process that died before it touched the store
        records.append((offset, chunk))
        at += _RECORD.size + length
    return committed, records


def _roll_back(fd: int, journal: Path) -> None:
    """Undo an unfinished write: cut the file to its committed length, restore saved bytes.

    Raises:
        StoreError: the disk refused the rollback; the journal stays for the next try.
    """
    try:
        content = _read_journal(journal)
        if content is not None:
            committed, records = content
            os.ftruncate(fd, committed)
            for offset, chunk in records:
                _write_all(fd, chunk, offset)
            os.fsync(fd)
        journal.unlink()
        _fsync_folder(journal.parent)
    except OSError as error:
        store = journal.with_name(journal.name.removesuffix(JOURNAL_SUFFIX))
        raise StoreError(
            f"{store}: rolling back a write that did not finish failed ({error.strerror or error}); {journal.name} "
            "stays beside the store and the next aucli command on it finishes the rollback: retry once the disk works"
        ) from None


def recover(path: Path) -> bool:
    """Roll back a journal a killed writer left beside ``path``; True when there was one.

    Raises:
        StoreError: the store is being written now, or rolling back needs write access.
    """
    journal = journal_path(path)
    if not journal.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except PermissionError:
        raise StoreError(
            f"{path}: a write to this store did not finish ({journal.name} is beside it) and rolling it back "
            "needs write access: run any aucli command on the store as a user who may write it"
        ) from None
    try:
        lock_exclusive(fd, path)
        if journal.exists():  # another process may have rolled it back meanwhile
            _roll_back(fd, journal)
    finally:
        os.close(fd)
    return True


class SafeFile:
    """A file as h5py's ``fileobj`` driver sees it, that never hands HDF5 a write error.

    ``failed`` holds the first ``OSError`` a write met; from then on nothing reaches the disk
    (writes are kept in memory, so HDF5 reads back what it wrote) and the caller must stop and
    close. HDF5's own error paths after a failed write leave broken files and can crash the
    process; this keeps the library on its normal path while the caller decides.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self.failed: OSError | None = None
        self._position = 0
        # writes not on the disk (yet), in order; a rewrite of the same block replaces the older copy
        self._memory: dict[tuple[int, int], bytes] = {}

    @classmethod
    def create(cls, path: Path) -> SafeFile:
        """A new, empty file (an existing one is emptied)."""
        return cls(path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        start, n = self._position, len(view)
        got = os.preadv(self._fd, [view], start) if start < self.size else 0
        if got < n:
            view[got:] = bytes(n - got)
        for (offset, _), data in self._memory.items():
            lo, hi = max(start, offset), min(start + n, offset + len(data))
            if lo < hi:
                view[lo - start : hi - start] = data[lo - offset : hi - offset]
        if self.size < start + n:  # truncated (after a failure the disk may still hold the bytes)
            cut = max(0, self.size - start)
            view[cut:] = bytes(n - cut)
        self._position += n
        return n

    def read(self, n: int = -1) -> bytes:
        buffer = bytearray(max(0, self.size - self._position) if n < 0 else n)
        self.readinto(buffer)
        return bytes(buffer)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start, n = self._position, len(view)
        if self.failed is None:
            try:
                self._before_change(start, start + n)
                _write_all(self._fd, view, start)
            except OSError as error:
                self.failed = error
        if self.failed is not None:
            self._keep(start, bytes(view))
        self.size = max(self.size, start + n)
        self._position += n
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if self.failed is None:
            try:
                self._before_change(size, self.size)
                os.ftruncate(self._fd, size)
            except OSError as error:
                self.failed = error
        self.size = size
        return size

    def flush(self) -> None:
        """Nothing to do: writes go to the OS at once (:meth:`JournaledFile.commit` fsyncs)."""

    def close(self) -> None:
        os.close(self._fd)

    def _keep(self, offset: int, data: bytes) -> None:
        """Hold a write in memory (the latest copy of a block goes last)."""
        self._memory.pop((offset, len(data)), None)
        self._memory[(offset, len(data))] = data

    def _before_change(self, start: int, stop: int) -> None:
        """Called before bytes ``start:stop`` are written or cut off (the journal's hook)."""


class JournaledFile(SafeFile):
    """The store file with rollback (see the module docstring), held under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self.locked = lock_exclusive(fd, path)
            if journal_path(path).exists():
                _roll_back(fd, journal_path(path))
        except BaseException:
            os.close(fd)
            raise
        super().__init__(path, fd)
        self.journal = journal_path(path)
        self.committed = self.size
        self._journal_fd: int | None = None
        self._journal_end = 0
        self._saved: list[tuple[int, int]] = []  # committed byte ranges already in the journal

    def write(self, data) -> int:
        """Bytes over the committed length are kept in memory until the commit; the rest goes out."""
        view = memoryview(data).cast("B")
        start, n = self._position, len(view)
        split = min(start + n, self.committed)
        if self.failed is not None or split <= start:
            return super().write(view)
        self._keep(start, bytes(view[: split - start]))
        if split < start + n:
            self._position = split
            super().write(view[split - start :])
        self.size = max(self.size, start + n)
        self._position = start + n
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if self.failed is None and size < self.committed:
            try:
                self._write_kept()  # rare (HDF5 gives back space it freed): done the slow way
            except OSError as error:
                self.failed = error
        return super().truncate(size)

    # -- transactions --------------------------------------------------------------------------------

    def commit(self) -> None:
        """Make every write since the last commit durable; the journal's deletion commits."""
        if self.failed is not None or self._journal_fd is None and not self._memory:
            return
        try:
            self._write_kept()
            os.fsync(self._fd)
            os.close(self._journal_fd)  # type: ignore[arg-type]
            self._journal_fd = None
            self.journal.unlink()
            _fsync_folder(self.path.parent)
        except OSError as error:
            self.failed = error
            return
        self.committed = self.size
        self._saved.clear()

    def rollback(self) -> None:
        """Return the file to its last commit (after a failure, or to drop uncommitted writes)."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        if self.journal.exists():
            _roll_back(self._fd, self.journal)
        self.size = self.committed = os.fstat(self._fd).st_size
        self.failed = None
        self._memory.clear()
        self._saved.clear()

    def close(self) -> None:
        """Release the lock and the file; uncommitted writes stay in the journal (rolled back on open)."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        super().close()

    # -- the journal -------------------------------------------------------------------------------

    def _begin(self) -> None:
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            head = _MAGIC + struct.pack("<Q", self.committed)
            _write_all(fd, head + struct.pack("<I", zlib.crc32(head)), 0)
            os.fsync(fd)
            _fsync_folder(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        self._journal_fd = fd
        self._journal_end = _HEADER.size

    def _before_change(self, start: int, stop: int) -> None:
        """Before bytes ``start:stop`` go out: the journal exists, and holds what they replace."""
        if self._journal_fd is None:
            self._begin()
        if self._save(start, min(stop, self.committed)):
            os.fsync(self._journal_fd)  # type: ignore[arg-type]

    def _save(self, start: int, stop: int) -> bool:
        """Append the committed bytes of ``start:stop`` the journal lacks to it; True when any."""
        missing = _subtract((start, stop), self._saved)
        for lo, hi in missing:
            chunk = os.pread(self._fd, hi - lo, lo)
            record = _RECORD.pack(lo, len(chunk), zlib.crc32(chunk)) + chunk
            _write_all(self._journal_fd, record, self._journal_end)  # type: ignore[arg-type]
            self._journal_end += len(record)
            self._saved.append((lo, lo + len(chunk)))
        self._saved.sort()
        return bool(missing)

    def _write_kept(self) -> None:
        """Journal what the kept writes replace (one fsync), then write them over it."""
        if not self._memory:
            return
        if self._journal_fd is None:
            self._begin()
        saved = [self._save(offset, offset + length) for offset, length in self._memory]
        if any(saved):
            os.fsync(self._journal_fd)  # type: ignore[arg-type]
        for (offset, _), data in self._memory.items():
            _write_all(self._fd, data, offset)
        self._memory.clear()


def _subtract(span: tuple[int, int], covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``span`` (half-open) outside the sorted ranges ``covered``."""
    start, stop = span
    parts = []
    for lo, hi in covered:
        if hi <= start or lo >= stop:
            continue
        if lo > start:
            parts.append((start, lo))
        start = max(start, hi)
    if start < stop:
        parts.append((start, stop))
    return parts
