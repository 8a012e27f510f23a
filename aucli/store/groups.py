"""Label sets and prediction/audit runs: named groups of a store, each written atomically.

A group is written under a ``.partial-`` name and renamed when complete, so a half-written one
never appears under its name; the rename and the journal commit (``CorpusStore._durable``) make
it durable together. :class:`NamedGroups` is a base of :class:`aucli.store.store.CorpusStore`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from aucli.aus import parse_au
from aucli.errors import StoreError, UsageError
from aucli.store.files import read_attrs, write_attrs
from aucli.store.records import LabelSet, Run, utc_now, version_string
from aucli.store.schema import PARTIAL_PREFIX, RUN_KINDS, check_name

__all__ = ["NamedGroups"]


class NamedGroups:
    """Label sets (``/labels/<name>``) and runs (``/predictions/<run>``, ``/audit/<run>``).

    The host class provides ``h5``, ``path``, ``n_faces``, ``_require_writable()``,
    ``_ensure_space(nbytes)``, ``_durable()`` (commit what was written) and ``_failed()``.
    """

    path: Any
    h5: Any
    n_faces: int
    _require_writable: Callable[[], None]
    _ensure_space: Callable[[int], None]
    _durable: Callable[[], None]
    _failed: Callable[[], bool]

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
        self._ensure_space(occurrence.size * (5 if intensity is not None else 1))
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
        ``/<kind>/<name>`` and committed; on an exception it is deleted. Refuses an existing name.
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
            parent.move(partial, name)
            self._durable()
        except BaseException:
            if not self._failed() and partial in parent:
                del parent[partial]
                self._durable()
            raise

    def _rename(self, collection: str, old: str, new: str, what: str) -> None:
        self._require_writable()
        self._collection_item(collection, old)
        check_name(new, f"{what} name")
        if new in self.h5[collection]:
            raise StoreError(f"{what} {new!r} already exists in {self.path}; choose another name")
        self.h5[collection].move(old, new)
        self._durable()

    def _delete(self, collection: str, name: str) -> None:
        self._require_writable()
        self._collection_item(collection, name)
        del self.h5[collection][name]
        self._durable()

