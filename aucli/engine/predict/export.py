"""``aucli predict export``: the tables of a predictions folder in another tool's layout (OpenFace 2.0).

OpenFace 2.0 (``FeatureExtraction``) writes one CSV per video: ``frame`` (from 1), `` face_id``,
`` timestamp``, `` confidence``, `` success``, then `` AUxx_r`` intensities and `` AUxx_c``
presences, headers after the first with a leading space. aucli predicts occurrence, so the export
has the presence block only (:func:`aucli.labels.openface.openface_columns`): ``AUxx_c`` is aucli's
decision at the checkpoint's threshold, ``AUxx_p`` has no OpenFace column. A frame without a face
is one row with ``success`` 0, face 0 and zeros, as OpenFace writes it. Tools that read OpenFace
output (and ``aucli labels compare``, ``aucli labels import --format openface``) read these files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aucli.errors import UsageError
from aucli.fileio import atomic_write_text, resolve_inside

__all__ = ["ExportSummary", "export_openface"]


@dataclass
class ExportSummary:
    """What :func:`export_openface` wrote."""

    folder: str
    out: str
    files: list[str] = field(default_factory=list)
    rows: int = 0

    def to_dict(self) -> dict:
        return {"folder": self.folder, "out": self.out, "files": self.files, "rows": self.rows}


def export_openface(folder: str | Path, out: str | Path, *, overwrite: bool = False) -> ExportSummary:
    """Write every predicted table of ``folder`` as an OpenFace 2.0 CSV under ``out`` (same names)."""
    from aucli.engine.predict.manifest import read_manifest
    from aucli.engine.predict.tables import read_table
    from aucli.labels.openface import openface_columns

    folder, out = Path(folder), Path(out)
    manifest = read_manifest(folder)
    if manifest is None:
        raise UsageError(f"{folder} holds no predictions.json: give the --out folder of an `aucli predict` run")
    pairs = openface_columns(manifest["au_names"], intensity=False)
    entries = [e for e in manifest["inputs"] if e.get("status") == "done" and e.get("table")]
    targets = [resolve_inside(out, str(Path(e["table"]).with_suffix(".csv")), "the export folder") for e in entries]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; add --overwrite to replace the exported files (nothing was written)")
    summary = ExportSummary(str(folder), str(out))
    for entry, target in zip(entries, targets):
        table = read_table(resolve_inside(folder, entry["table"], f"{folder / 'predictions.json'}"))
        text, rows = _openface_csv(table, pairs)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        summary.files.append(target.relative_to(out.resolve()).as_posix())
        summary.rows += rows
    return summary


def _openface_csv(table: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> tuple[str, int]:
    """One table as OpenFace 2.0 CSV text, and its row count."""
    missing = [name for name, _ in pairs if name not in table and name not in ("frame", "face_id", "timestamp", "confidence", "success")]
    if missing:
        raise UsageError(f"a prediction table lacks {', '.join(missing)}")
    n = table["frame"].size
    face = table["face_id"]
    found = face >= 0
    columns: dict[str, list[str]] = {
        "frame": [str(int(f) + 1) for f in table["frame"]],  # OpenFace numbers frames from 1
        "face_id": [str(int(f)) if ok else "0" for f, ok in zip(face, found)],
        "timestamp": [f"{t:.3f}" if np.isfinite(t) else "0.000" for t in table["timestamp"]],
        "confidence": [f"{c:.2f}" if ok and np.isfinite(c) else "0.00" for c, ok in zip(table["confidence"], found)],
        "success": [str(int(s)) if s >= 0 else "0" for s in table["success"]],
    }
    for name, _ in pairs:
        if name.endswith("_c"):
            columns[name] = [f"{float(max(int(v), 0)):.2f}" for v in table[name]]  # OpenFace writes 0.00 / 1.00
    lines = [",".join(header for _, header in pairs)]
    lines += [",".join(columns[name][i] for name, _ in pairs) for i in range(n)]
    return "\n".join(lines) + "\n", n
