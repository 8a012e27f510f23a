"""``aucli info STORE --check``: verify a store and find its last consistent state.

The check opens the file through :class:`ToleratingReader`, which also opens a truncated file
(reads past its real end fail instead of the whole open), then:

- opens every dataset of /sources, /frames and /noface, and finds in each how many leading rows
  are intact: every chunk indexed, inside the file and readable (every chunk is read);
- takes the published sources (/sources ``n_rows``) whose rows are all intact and whose face rows
  say they are theirs: that prefix is the *last consistent state*;
- reads every label set and run completely.

A journal left by a killed writer is rolled back first, as any open does.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.errors import StoreError
from aucli.store.files import DAMAGE_ERRORS, check_exists, check_marker, read_attrs
from aucli.store.journal import recover
from aucli.store.schema import COLLECTIONS, FACE_COLUMNS, NOFACE_COLUMNS, PARTIAL_PREFIX, SOURCE_COLUMNS

__all__ = ["CheckReport", "ToleratingReader", "check_store", "damage_message", "open_tolerating", "render_check_report"]

#: The file size the reader reports, so that HDF5 opens a file shorter than its index says.
_VIRTUAL_END = 1 << 50
#: Rows read at once while checking (images: one chunk each).
_IMAGE_SLAB, _COLUMN_SLAB = 256, 1 << 16
_TABLES = (
    ("sources", tuple(c.name for c in SOURCE_COLUMNS)),
    ("frames", ("image", *(c.name for c in FACE_COLUMNS))),
    ("noface", tuple(c.name for c in NOFACE_COLUMNS)),
)


class ToleratingReader:
    """A store file for h5py's ``fileobj`` driver, read-only: reads past its real end raise
    ``OSError`` (a zero-filled read can send HDF5 into an endless loop), and the file claims to be
    long enough for any index, so a truncated file still opens."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.end = os.fstat(self._fd).st_size
        self._position = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: _VIRTUAL_END}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        got = os.preadv(self._fd, [view], self._position) if self._position < self.end else 0
        if got < len(view):
            raise OSError(5, f"bytes {self._position + got:,}.. are past the end of the file ({self.end:,} bytes)")
        self._position += got
        return got

    def read(self, n: int = -1) -> bytes:
        buffer = bytearray(max(0, self.end - self._position) if n < 0 else n)
        self.readinto(buffer)
        return bytes(buffer)

    def lock_shared(self, path: Path) -> None:
        """Refuse to check while another process writes the store."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{path}: the store is being written by another process; check it when that has finished") from None
        except OSError:
            pass  # a filesystem without locks

    def close(self) -> None:
        os.close(self._fd)


def open_tolerating(path: Path) -> tuple[Any, ToleratingReader]:
    """(h5py.File, its reader) of a store that may be damaged; StoreError when even the HDF5
    header is unreadable."""
    import h5py

    check_exists(path)
    recover(path)
    reader = ToleratingReader(path)
    try:
        reader.lock_shared(path)
        return h5py.File(reader, "r"), reader
    except DAMAGE_ERRORS as error:
        reader.close()
        if "signature" in str(error):
            raise StoreError(f"{path}: not an aucli store (not an HDF5 file)") from None
        raise StoreError(f"{path}: the HDF5 header of the file is unreadable ({error}); nothing in it can be recovered") from None


@dataclass
class CheckReport:
    """What :func:`check_store` found. ``intact_*`` describe the last consistent state."""

    path: str
    size_bytes: int
    rolled_back: bool = False
    published_sources: int = 0
    intact_sources: int = 0
    intact_faces: int = 0
    intact_noface: int = 0
    last_source: str = ""
    last_commit: str = ""
    label_sets: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check_store(path: str | Path) -> CheckReport:
    """Verify the store at ``path`` (see the module docstring).

    Raises:
        StoreError: no such file, being written, or so damaged that nothing is readable.
    """
    path = Path(path)
    check_exists(path)
    rolled_back = recover(path)
    file, reader = open_tolerating(path)
    report = CheckReport(str(path), reader.end, rolled_back=rolled_back)
    if rolled_back:
        report.notes.append("a write that did not finish was rolled back to the last commit")
    try:
        try:
            check_marker(file, path)
        except StoreError as error:
            report.problems.append(str(error).removeprefix(f"{path}: "))
            return report
        except DAMAGE_ERRORS as error:
            report.problems.append(f"the store's root attributes are unreadable ({error})")
            return report
        intact = {group: _table_rows(file, group, columns, reader.end, report) for group, columns in _TABLES}
        try:
            _consistent_prefix(file, intact, report)
        except DAMAGE_ERRORS as error:
            report.problems.append(f"/sources: unreadable ({error})")
        _check_named_groups(file, report)
    finally:
        file.close()
        reader.close()
    return report


def _table_rows(file, group: str, columns: tuple[str, ...], end: int, report: CheckReport) -> int:
    """Leading rows of the table ``group`` intact in every column."""
    rows = None
    for name in columns:
        try:
            dataset = file[group][name]
            count = _intact_rows(dataset, end)
        except DAMAGE_ERRORS as error:
            report.problems.append(f"/{group}/{name}: unreadable ({error})")
            count = 0
        rows = count if rows is None else min(rows, count)
    return rows or 0


def _intact_rows(dataset, end: int) -> int:
    """Leading rows of ``dataset`` whose chunks are all indexed, inside the file and readable."""
    extent = dataset.shape[0]
    if extent == 0:
        return 0
    per_chunk = dataset.chunks[0]
    present: set[int] = set()
    dataset.id.chunk_iter(lambda info: present.add(info.chunk_offset[0]) if info.byte_offset + info.size <= end else None)
    bound = next((start for start in range(0, extent, per_chunk) if start not in present), extent)
    slab = max(per_chunk, _IMAGE_SLAB if dataset.ndim == 4 else _COLUMN_SLAB)
    for start in range(0, bound, slab):
        try:
            dataset[start : min(start + slab, bound)]
        except DAMAGE_ERRORS:
            for chunk in range(start, min(start + slab, bound), per_chunk):
                try:
                    dataset[chunk : min(chunk + per_chunk, bound)]
                except DAMAGE_ERRORS:
                    return chunk
    return bound


def _consistent_prefix(file, intact: dict[str, int], report: CheckReport) -> None:
    """The published sources whose rows are all intact and their own: the last consistent state."""
    sources = file["sources"]
    try:
        published = int(sources.attrs.get("n_rows", 0))
    except DAMAGE_ERRORS as error:
        report.problems.append(f"/sources: its n_rows attribute is unreadable ({error})")
        published = 0
    report.published_sources = published
    k = min(published, intact["sources"])
    if k < published:
        report.problems.append(f"/sources: rows {k}..{published - 1} of {published} published are damaged")
    row_start, row_stop = sources["row_start"][:k], sources["row_stop"][:k]
    noface_start, noface_stop = sources["noface_start"][:k], sources["noface_stop"][:k]
    owner = file["frames"]["source"][: intact["frames"]]
    for i in range(k):
        inside = row_stop[i] <= intact["frames"] and noface_stop[i] <= intact["noface"]
        ordered = row_start[i] <= row_stop[i] and noface_start[i] <= noface_stop[i]
        if not (inside and ordered and (owner[row_start[i] : row_stop[i]] == i).all()):
            key = sources["key"].asstr()[i]
            what = "its face rows are damaged or missing" if not inside else "its rows do not match it"
            report.problems.append(f"source {i} ({key}) and every later one: {what}")
            k = i
            break
    report.intact_sources = k
    report.intact_faces = int(row_stop[:k].max(initial=0))
    report.intact_noface = int(noface_stop[:k].max(initial=0))
    if k:
        report.last_source = str(sources["key"].asstr()[k - 1])
        report.last_commit = str(sources["processed_at"].asstr()[k - 1])
    extra = file["frames"]["image"].shape[0] - int(row_stop.max(initial=0))
    if k == published and extra > 0:
        report.notes.append(f"{extra} face row(s) past the last commit, left by an interrupted run; the next write drops them")


def _check_named_groups(file, report: CheckReport) -> None:
    """Read every label set and run completely."""
    for collection in COLLECTIONS:
        try:
            names = [n for n in file[collection] if not n.startswith(PARTIAL_PREFIX)]
        except DAMAGE_ERRORS as error:
            report.problems.append(f"/{collection}: unreadable ({error})")
            continue
        for name in sorted(names):
            status = _read_group(file[collection], name, collection == "labels")
            target = report.label_sets if collection == "labels" else report.runs
            target[name if collection == "labels" else f"{collection}/{name}"] = status
            if status != "ok":
                report.problems.append(f"/{collection}/{name}: {status}")


def _read_group(parent, name: str, is_label_set: bool) -> str:
    """``ok`` or what is wrong with a label set or run."""
    try:
        group = parent[name]
        attrs = read_attrs(group)
        arrays = {key: group[key][()] for key in group}
    except DAMAGE_ERRORS as error:
        return f"unreadable ({error})"
    if is_label_set:
        occurrence = arrays.get("occurrence")
        if occurrence is None or occurrence.ndim != 2 or occurrence.shape[1] != len(attrs.get("au_names", [])):
            return "its occurrence table does not match its AU names"
        if not np.isin(occurrence, (-1, 0, 1)).all():
            return "its occurrence table holds values other than -1, 0, 1"
    return "ok"


def render_check_report(report: CheckReport) -> None:
    """Print a :class:`CheckReport` as a table, its problems and notes, and what to do."""
    from rich.table import Table

    from aucli.console import console

    table = Table(title=f"Check {report.path} ({report.size_bytes:,} bytes)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    state = f"{report.intact_sources} of {report.published_sources} source row(s), {report.intact_faces} face(s)"
    if report.last_source:
        state += f": up to {report.last_source} (committed {report.last_commit})"
    table.add_row("result", "[green]consistent[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]")
    table.add_row("last consistent state", state)
    table.add_row("label sets", ", ".join(f"{k} {v}" for k, v in report.label_sets.items()) or "none")
    table.add_row("runs", ", ".join(f"{k} {v}" for k, v in report.runs.items()) or "none")
    console.print(table)
    for title, lines in (("Problems", report.problems), ("Notes", report.notes)):
        if lines:
            console.print(f"{title}:")
            for line in lines:
                console.print(f"  - {line}", highlight=False, markup=False)


def damage_message(report: CheckReport) -> str:
    """The one-line error of a damaged store: its last consistent state and how to recover it."""
    if not report.intact_sources:
        return f"{report.path} is damaged and holds no intact source; preprocess the inputs again into a new store"
    return (
        f"{report.path} is damaged; its last consistent state is {report.intact_sources} source row(s) with "
        f"{report.intact_faces} face(s). Recover it: `aucli info {report.path} --check --salvage NEW.h5` copies that "
        "state into a new store; then rerun `aucli preprocess` with --out NEW.h5 to redo the rest"
    )
