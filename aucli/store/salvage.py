"""``aucli info BROKEN.h5 --check --salvage NEW.h5``: copy a damaged store's last consistent state.

The new store gets the intact sources with their faces and no-face rows, every intact label set
(cut to the intact faces) and every intact run that covers no more than those faces. The damaged
store is only read. Rerunning ``aucli preprocess`` with ``--out NEW.h5`` then redoes the sources
that were lost.
"""

from __future__ import annotations

from pathlib import Path

from aucli.errors import StoreError
from aucli.store.check import CheckReport, open_tolerating
from aucli.store.files import check_output_path, read_attrs
from aucli.store.schema import FACE_COLUMNS, NOFACE_COLUMNS, RUN_KINDS, SOURCE_COLUMNS
from aucli.store.store import CorpusStore

__all__ = ["salvage_store"]

_SLAB = 256


def salvage_store(path: str | Path, out: str | Path, report: CheckReport) -> list[str]:
    """Write the last consistent state that ``report`` (of ``path``) found into a new store ``out``.

    Returns:
        one line per label set or run that was cut or left out.

    Raises:
        StoreError: ``out`` exists or cannot be written, or nothing is intact.
    """
    path, out = Path(path), check_output_path(out)
    if out.exists():
        raise StoreError(f"{out}: already exists; give --salvage a new file name")
    if out.resolve() == path.resolve():
        raise StoreError("--salvage needs another file than the store being checked")
    if not report.intact_sources:
        raise StoreError(f"{path} holds no intact source: nothing to salvage; preprocess the inputs again into a new store")
    source, reader = open_tolerating(path)
    try:
        attrs = read_attrs(source)
        notes: list[str] = []
        with CorpusStore.create(
            out,
            crop_size=int(attrs["crop_size"]),
            compression=str(attrs.get("compression", "none")),
            root=attrs.get("root") or None,
            preprocess=attrs.get("preprocess") or {},
        ) as store:
            _copy_rows(source, store, report)
            notes += _copy_label_sets(source, store, report)
            notes += _copy_runs(source, store, report)
            store.h5.attrs["salvaged_from"] = str(path.resolve())
            store._durable()
    finally:
        source.close()
        reader.close()
    return notes


def _copy_rows(source, store: CorpusStore, report: CheckReport) -> None:
    """Copy the intact rows of /sources, /frames and /noface and publish the sources."""
    for group, columns, n in (
        ("sources", [c.name for c in SOURCE_COLUMNS], report.intact_sources),
        ("frames", ["image", *[c.name for c in FACE_COLUMNS]], report.intact_faces),
        ("noface", [c.name for c in NOFACE_COLUMNS], report.intact_noface),
    ):
        for name in columns:
            read, write = source[group][name], store.h5[group][name]
            write.resize(n, axis=0)
            for start in range(0, n, _SLAB):
                rows = read[start : min(start + _SLAB, n)]
                store._ensure_space(rows.nbytes)
                write[start : start + len(rows)] = rows
    store.h5["sources"].attrs["n_rows"] = report.intact_sources
    store._durable()
    store._load_counts()


def _copy_label_sets(source, store: CorpusStore, report: CheckReport) -> list[str]:
    notes = []
    for name, status in report.label_sets.items():
        if status != "ok":
            notes.append(f"label set {name}: left out ({status})")
            continue
        source.copy(source["labels"][name], store.h5["labels"], name=name)
        group = store.h5["labels"][name]
        if group["occurrence"].shape[0] > report.intact_faces:
            for dataset in group.values():
                dataset.resize(report.intact_faces, axis=0)
            group.attrs["n_rows"] = min(int(group.attrs.get("n_rows", 0)), report.intact_faces)
            notes.append(f"label set {name}: cut to the {report.intact_faces} intact face(s)")
        store._durable()
    return notes


def _copy_runs(source, store: CorpusStore, report: CheckReport) -> list[str]:
    notes = []
    for label, status in report.runs.items():
        kind, name = label.split("/", 1)
        if kind not in RUN_KINDS:
            continue
        covered = int(read_attrs(source[kind][name]).get("n_faces", 0))
        if status != "ok" or covered > report.intact_faces:
            reason = status if status != "ok" else f"it covers {covered} faces, {report.intact_faces} are intact"
            notes.append(f"{kind} run {name}: left out ({reason})")
            continue
        source.copy(source[kind][name], store.h5[kind], name=name)
        store._durable()
    return notes
