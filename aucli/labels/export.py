"""Write a label set as aucli's plain label CSV (see ``aucli.labels.plain``)."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from aucli.errors import StoreError
from aucli.store.store import CorpusStore

__all__ = ["export_labels"]


def export_labels(store: CorpusStore, name: str, out: str | Path, *, include_unlabelled: bool = False) -> int:
    """Write label set ``name`` to ``out`` (CSV); returns the number of rows written.

    Columns: ``source`` (key), ``subject``, ``frame``, ``timestamp``, ``track``, one occurrence
    column per AU (``AU12``: 1, 0, -1 unknown) and, when the set has intensities, ``AU12_r``
    (empty when unknown). Rows: faces with at least one known AU (all faces with
    ``include_unlabelled``), in store order. The file is written to a temporary name and renamed.
    """
    out = Path(out)
    if out.is_dir():
        raise StoreError(f"{out}: is a folder; give a file name such as {out / (name + '.csv')}")
    if not out.parent.is_dir():
        raise StoreError(f"cannot write {out}: folder {out.parent} does not exist")
    labels = store.read_labels(name)
    faces = store.face_table(["source", "frame", "timestamp", "track"])
    sources = store.source_table(latest=False)
    rows = np.arange(store.n_faces) if include_unlabelled else labels.labelled_rows()
    header = ["source", "subject", "frame", "timestamp", "track", *labels.au_names]
    if labels.intensity is not None:
        header += [f"{au}_r" for au in labels.au_names]
    handle, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            for row in rows:
                source = int(faces["source"][row])
                timestamp = float(faces["timestamp"][row])
                line = [
                    sources["key"][source],
                    sources["subject"][source],
                    int(faces["frame"][row]),
                    "" if math.isnan(timestamp) else f"{timestamp:.6f}",
                    int(faces["track"][row]),
                    *[int(v) for v in labels.occurrence[row]],
                ]
                if labels.intensity is not None:
                    line += ["" if math.isnan(v) else f"{v:g}" for v in labels.intensity[row]]
                writer.writerow(line)
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return int(rows.size)
