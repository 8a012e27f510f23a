"""The review queue: a CSV a person edits, and a Label Studio project (tasks, face images, config).

CSV queue (one row per flag, best first)::

    rank, audit_run, label_set, source, subject, track, frame_start, frame_stop, n_frames, au,
    label, probability, peak_probability, score, kind, context, confused_with, reason, corrected

``confused_with`` names the partner AU when the flag's labels look swapped with that AU's
(confusion evidence, :mod:`aucli.audit.flags`): the partner has its own flag over the same frames.
``corrected`` is empty; a reviewer writes the right label for the flag's frames: ``1`` / ``present``,
``0`` / ``absent``, ``-1`` / ``unknown`` (the frames become uncoded), or leaves it empty (no
change). ``frame_start`` and ``frame_stop`` (inclusive) may be edited to correct a different range
(an onset two frames later, for example). ``aucli audit apply`` reads the file back.

Label Studio (``--label-studio DIR``): ``DIR/tasks.json`` (import it into a project),
``DIR/labeling_config.xml`` (the project's labeling interface), ``DIR/images/flag_00001.png``
(per flag: frames before, across and after it, each with its label and probability) referenced as
``/data/local-files/?d=images/flag_00001.png``: start Label Studio with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=DIR`` and add
a "Local files" storage with the absolute path ``DIR/images`` (``DIR/README.txt`` repeats this).
Each task carries the flag's fields and a pre-annotation with the model's reading. Its JSON export
(or JSON-MIN / CSV export) goes to ``aucli audit apply``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from aucli.audit.images import CONTEXT_COLOUR, FLAG_COLOUR, flag_frames, hstack, png_bytes, tile
from aucli.audit.run import AuditRecord

__all__ = ["LABELING_CONFIG", "QUEUE_COLUMNS", "flag_strip", "sequence_frames", "write_label_studio", "write_queue_csv"]

QUEUE_COLUMNS = ("rank", "audit_run", "label_set", "source", "subject", "track", "frame_start", "frame_stop", "n_frames", "au",
                 "label", "probability", "peak_probability", "score", "kind", "context", "confused_with",
                 "reason", "corrected")

LABELING_CONFIG = """<View>
  <Header value="#$rank  $au  ($source, frames $frame_start-$frame_stop)"/>
  <Text name="question" value="$question"/>
  <Image name="image" value="$image" zoom="true"/>
  <Text name="reason" value="$reason"/>
  <Choices name="corrected" toName="image" choice="single" required="true" showInline="true">
    <Choice value="present" hotkey="1"/>
    <Choice value="absent" hotkey="2"/>
    <Choice value="unknown" hotkey="3"/>
    <Choice value="unsure" hotkey="4"/>
  </Choices>
</View>
"""

_README = """Label Studio project for audit {run} of {store} (label set {label_set}), {n} task(s).

1. Start Label Studio so that it may serve the images of this folder:
     LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\
     LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root} label-studio start
2. Create a project; Settings > Labeling Interface > Code: paste labeling_config.xml.
3. Settings > Cloud Storage > Add Source Storage > Local files, absolute path {images}
   (do not sync it: the tasks already reference the images).
4. Import tasks.json. Each task shows the frames before (grey), across (orange) and after a flag.
   Answer present / absent (the label of the orange frames), unknown (make them uncoded) or unsure
   (leave them as they are).
5. Export as JSON (or JSON-MIN, or CSV) and run:
     aucli audit apply EXPORT.json --store {store} --as {label_set}_reviewed
"""


def write_queue_csv(record: AuditRecord, path: str | Path, *, top: int | None = None) -> int:
    """Write the review queue of ``record`` (``top`` best flags, default all); returns the number of rows."""
    from aucli.fileio import atomic_write_text

    flags = record.flags
    n = len(flags) if top is None else min(top, len(flags))
    lines: list[list[Any]] = []
    for i in range(n):
        lines.append([
            int(flags.rank[i]), record.name, record.label_set, flags.source_key[i], flags.subject[i], int(flags.track[i]),
            int(flags.frame_start[i]), int(flags.frame_stop[i]), int(flags.n_frames[i]), flags.au[i], int(flags.label[i]),
            f"{flags.mean_p[i]:.4f}", f"{flags.peak_p[i]:.4f}", f"{flags.score[i]:.4f}", flags.kind[i], flags.context[i],
            flags.partner[i], flags.reason[i], "",
        ])
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(QUEUE_COLUMNS)
    writer.writerows(lines)
    atomic_write_text(path, buffer.getvalue())
    return n


def _position_index(record: AuditRecord) -> dict[int, int]:
    return {int(r): i for i, r in enumerate(record.rows)}


def sequence_frames(store, record: AuditRecord) -> np.ndarray:
    """``(n,)`` frame index of each audited position."""
    return store.face_table(["frame"])["frame"][record.rows]


def flag_strip(store, record: AuditRecord, i: int, *, size: int = 112, show: int = 4, around: int = 1,
               position: dict[int, int] | None = None, frames: np.ndarray | None = None) -> np.ndarray:
    """Frames before, across and after flag ``i`` side by side, each captioned with frame, label and p."""
    flags = record.flags
    position = position if position is not None else _position_index(record)
    frames = frames if frames is not None else sequence_frames(store, record)
    au = record.au_names.index(str(flags.au[i]))
    positions = np.array([position[int(r)] for r in flags.rows_of(i)])
    chosen, inside = flag_frames(positions, record.segment, show=show, around=around)
    crops = store.images(record.rows[chosen])
    tiles = []
    for crop, pos, is_flag in zip(crops, chosen, inside):
        label = int(record.labels[pos, au])
        text = {1: "1", 0: "0"}.get(label, "?")
        lines = [f"frame {int(frames[pos])}", f"label {text}  p {record.probs[pos, au]:.2f}"]
        tiles.append(tile(crop, lines, size=size, border=FLAG_COLOUR if is_flag else CONTEXT_COLOUR))
    return hstack(tiles)


def _question(record: AuditRecord, i: int) -> str:
    f = record.flags
    label = "present" if int(f.label[i]) == 1 else "absent"
    return (f"Labelled {label} on {int(f.n_frames[i])} frame(s); the model's calibrated p is {f.mean_p[i]:.2f}. "
            f"Is {f.au[i]} present on the orange frames?")


def _check_project_folder(folder: Path, names: list[str]) -> None:
    """Refuse, before writing anything, a project folder where one of ``names`` (or ``images/``)
    leads outside it through a symbolic link: a rerun into an edited folder must not write
    elsewhere. Files are then written atomically, so a link at a name is replaced, never followed."""
    from aucli.fileio import resolve_inside

    if not folder.exists():
        return
    for name in ["images", *names]:
        resolve_inside(folder, name, f"the Label Studio folder {folder}")


def write_label_studio(store, record: AuditRecord, folder: str | Path, *, top: int | None = None,
                       document_root: str | Path | None = None, size: int = 112) -> int:
    """Write a Label Studio project folder for the ``top`` best flags; returns the number of tasks.

    Args:
        store: an open :class:`aucli.store.CorpusStore` (face crops).
        record: the audit.
        folder: output folder (created); images go to ``folder/images``.
        document_root: Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (default ``folder``);
            image URLs are relative to it.
    """
    from aucli.fileio import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    flags = record.flags
    n = len(flags) if top is None else min(top, len(flags))
    names = [f"images/flag_{int(flags.rank[i]):05d}.png" for i in range(n)]
    _check_project_folder(folder, [*names, "tasks.json", "labeling_config.xml", "README.txt"])
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    root = Path(document_root).resolve() if document_root else folder.resolve()
    position = _position_index(record)
    frames = sequence_frames(store, record)
    tasks = []
    for i in range(n):
        image_path = folder / names[i]
        atomic_write_bytes(image_path, png_bytes(flag_strip(store, record, i, size=size, position=position, frames=frames)))
        relative = os.path.relpath(image_path.resolve(), root).replace(os.sep, "/")
        model_says = "present" if flags.kind[i] == "missed" else "absent"
        tasks.append({
            "data": {
                "image": f"/data/local-files/?d={relative}", "rank": int(flags.rank[i]), "audit_run": record.name,
                "label_set": record.label_set, "source": str(flags.source_key[i]), "subject": str(flags.subject[i]),
                "track": int(flags.track[i]), "frame_start": int(flags.frame_start[i]), "frame_stop": int(flags.frame_stop[i]),
                "n_frames": int(flags.n_frames[i]), "au": str(flags.au[i]), "label": int(flags.label[i]),
                "probability": round(float(flags.mean_p[i]), 4), "score": round(float(flags.score[i]), 4),
                "kind": str(flags.kind[i]), "context": str(flags.context[i]),
                "confused_with": str(flags.partner[i]), "reason": str(flags.reason[i]),
                "question": _question(record, i),
            },
            "predictions": [{
                "model_version": f"aucli-audit-{record.name}", "score": round(float(flags.score[i]), 4),
                "result": [{"from_name": "corrected", "to_name": "image", "type": "choices", "value": {"choices": [model_says]}}],
            }],
        })
    atomic_write_text(folder / "tasks.json", json.dumps(tasks, indent=1))
    atomic_write_text(folder / "labeling_config.xml", LABELING_CONFIG)
    atomic_write_text(folder / "README.txt", _README.format(run=record.name, store=record.store, label_set=record.label_set,
                                                             n=n, root=root, images=images.resolve()))
    return n
