"""The store's file: opening it (with plain errors), attributes, committed counts, creation.

A read-only open goes straight to HDF5 (shared lock, best effort where the filesystem has no
locks) after rolling back a journal a killed writer left; a writable open goes through
:class:`aucli.store.journal.JournaledFile` (exclusive lock, rollback journal).
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aucli.errors import StoreError
from aucli.store.journal import JournaledFile, recover
from aucli.store.records import utc_now, version_string
from aucli.store.schema import (
    COLLECTIONS,
    FACE_COLUMNS,
    NOFACE_COLUMNS,
    PARTIAL_PREFIX,
    SCHEMA_VERSION,
    SOURCE_COLUMNS,
    STORE_MARKER,
    Column,
    numpy_dtype,
)

__all__ = [
    "DAMAGE_ERRORS",
    "check_exists",
    "check_marker",
    "check_output_path",
    "committed_counts",
    "damaged_error",
    "drop_uncommitted",
    "initialise",
    "open_file",
    "read_attrs",
    "write_attrs",
]

_JSON_ATTRS = "json_attrs"
#: What h5py raises when it reads a damaged file.
DAMAGE_ERRORS = (OSError, RuntimeError, KeyError, ValueError)
_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


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


def check_exists(path: Path) -> None:
    """Refuse a missing path, a folder or an empty file with a plain message."""
    if not path.exists():
        raise StoreError(f"{path}: no such store; create one with `aucli preprocess INPUTS --out {path}`")
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store file")
    if path.stat().st_size == 0:
        raise StoreError(f"{path}: empty file (0 bytes), not an aucli store")


def open_file(path: Path, writable: bool) -> tuple[Any, JournaledFile | None]:
    """(h5py.File, its JournaledFile or None) of an existing store; every failure a StoreError."""
    import h5py

    check_exists(path)
    if not writable:
        try:
            recover(path)
            return h5py.File(path, "r", locking="best-effort"), None
        except OSError as error:
            raise _open_error(path, error, writable) from None
    try:
        io = JournaledFile(path)
    except OSError as error:
        raise _open_error(path, error, writable) from None
    try:
        return h5py.File(io, "r+"), io
    except OSError as error:
        io.close()
        raise _open_error(path, error, writable) from None


def _open_error(path: Path, error: OSError, writable: bool) -> StoreError:
    """The plain message of an error met while opening a store."""
    text = str(error)
    if isinstance(error, BlockingIOError):
        if not writable:
            return StoreError(
                f"{path}: the store is being written by another process (a running `aucli preprocess`?); wait for it to finish"
            )
        return StoreError(
            f"{path}: the store is open in another process (preprocess, train, predict, ...); "
            "writing needs it alone: wait for the other process to finish"
        )
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        action = "write" if writable else "read"
        return StoreError(f"cannot {action} {path}: {os.strerror(error.errno or errno.EACCES)}")
    truncated = _TRUNCATED.search(text)
    if truncated:
        have, want = (int(v) for v in truncated.groups())
        return StoreError(
            f"{path}: the store is truncated: the file has {have:,} bytes but its index needs {want:,} "
            "(an incomplete copy or download, or a write cut short); copy it again from the original, or run "
            f"`aucli info {path} --check` to see its last consistent state"
        )
    if "file signature not found" in text or "not an hdf5" in text.lower():
        return StoreError(f"{path}: not an aucli store (not an HDF5 file)")
    if "unable to lock file" in text:
        return StoreError(f"{path}: cannot lock the store ({text}); is another process using it?")
    return damaged_error(path, error)


def damaged_error(path: Path, error: BaseException) -> StoreError:
    """The message of a store that HDF5 cannot read: damaged, and where to look next."""
    return StoreError(
        f"{path}: the store looks damaged ({error}); run `aucli info {path} --check` to see its last consistent state"
    )


def check_marker(file, path: Path) -> None:
    """Refuse an HDF5 file that is not an aucli store, or one of another schema version."""
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


# ----------------------------------------------------------------------------------------------
# committed rows


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
    # A store written before the journal could publish sources whose rows never reached the file.
    while n_sources and (row_stop[n_sources - 1] > face_len or noface_stop[n_sources - 1] > noface_len):
        n_sources -= 1
    n_faces = int(row_stop[:n_sources].max(initial=0))
    n_noface = int(noface_stop[:n_sources].max(initial=0))
    return n_sources, n_faces, n_noface


def drop_uncommitted(file) -> bool:
    """Drop rows past the committed counts and half-written groups; True when anything changed.

    A rolled-back journal leaves nothing of the kind; stores written by older versions may.
    """
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
    return changed


# ----------------------------------------------------------------------------------------------
# creation


def initialise(file, crop_size: int, compression: str, root, preprocess) -> None:
    """Write the root attributes and the empty groups and datasets of a new store."""
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
