"""``aucli predict events``: the AU events of every table in a predictions folder.

Reads the folder's ``predictions.json`` (every table name checked to stay inside the folder), and for
each predicted input writes ``events/<table name>.csv``: one row per event of each face track
(``face_id`` then :data:`aucli.events.EVENT_COLUMNS`), found by :func:`aucli.events.events_table`
on the track's AUxx_p column with the checkpoint's thresholds (the manifest's), after HMM smoothing
unless ``smooth`` is off. The frame rate comes from the table's timestamps; frame folders and
images have none, so they need ``fps`` (otherwise they are skipped with a warning). Tables are only
read; each events file is written atomically, so a rerun rewrites the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aucli.aus import openface_column
from aucli.errors import UsageError
from aucli.events import DEFAULT_MEAN_EVENT_S, DEFAULT_MEAN_GAP_S, EVENT_COLUMNS, EventTable, events_table, frame_rates
from aucli.fileio import atomic_write_text, resolve_inside

__all__ = ["EVENTS_FOLDER", "EventsSummary", "write_prediction_events"]

#: Sub-folder of a predictions folder that holds the events tables.
EVENTS_FOLDER = "events"


@dataclass
class EventsSummary:
    """What :func:`write_prediction_events` wrote: files, events per AU, inputs skipped and why."""

    folder: str
    smoothed: bool
    files: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"folder": self.folder, "smoothed": self.smoothed, "files": self.files, "events": self.events,
                "skipped": self.skipped}


def write_prediction_events(folder: str | Path, *, smooth: bool = True, fps: float | None = None,
                            mean_event_s: float = DEFAULT_MEAN_EVENT_S, mean_gap_s: float = DEFAULT_MEAN_GAP_S,
                            warn=None) -> EventsSummary:
    """Write the events table of every predicted input of ``folder`` (module docstring)."""
    from aucli.engine.predict.manifest import read_manifest
    from aucli.engine.predict.tables import read_table

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise UsageError(f"{folder} holds no predictions.json: give the --out folder of an `aucli predict` run")
    au_names = list(manifest["au_names"])
    thresholds = np.asarray(manifest["thresholds"], dtype=np.float64)
    summary = EventsSummary(str(folder), smooth, events={au: 0 for au in au_names})
    tables = {resolve_inside(folder, e["table"], "predictions.json") for e in manifest["inputs"] if e.get("table")}
    for entry in manifest["inputs"]:
        if entry.get("status") != "done" or not entry.get("table"):
            continue
        table_path = resolve_inside(folder, entry["table"], f"{folder / 'predictions.json'}")
        if not table_path.is_file():
            summary.skipped.append(f"{entry['key']}: its table {entry['table']} is missing")
            continue
        tracks = _track_events(read_table(table_path), au_names, thresholds, smooth, fps, mean_event_s, mean_gap_s)
        if isinstance(tracks, str):
            summary.skipped.append(f"{entry['key']}: {tracks}")
            continue
        name = str(Path(entry["table"]).with_suffix(".csv"))
        target = resolve_inside(folder / EVENTS_FOLDER, name, "the events folder")
        if target in tables:
            raise UsageError(f"the events table {EVENTS_FOLDER}/{name} would replace the prediction table of another input; "
                             "nothing was written for it (an input folder is itself named 'events')")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, _events_csv(tracks))
        summary.files.append(f"{EVENTS_FOLDER}/{name}")
        for table in tracks.values():
            for au in table.columns["au"]:
                summary.events[str(au)] += 1
    if warn is not None:
        for line in summary.skipped:
            warn(line)
    if summary.skipped and not summary.files:
        raise UsageError(f"no events table written: {summary.skipped[0]}")
    return summary


def _track_events(table: dict[str, np.ndarray], au_names: list[str], thresholds: np.ndarray, smooth: bool,
                  fps: float | None, mean_event_s: float, mean_gap_s: float) -> dict[int, EventTable] | str:
    """Per face track, its events; or why the table has none to give (a string)."""
    columns = [openface_column(au, "p") for au in au_names]
    missing = [c for c in columns if c not in table]
    if missing:
        return f"its table lacks {', '.join(missing)}"
    face = table["face_id"]
    out: dict[int, EventTable] = {}
    for track in sorted(int(t) for t in np.unique(face[face >= 0])):
        rows = np.nonzero(face == track)[0]
        rows = rows[np.argsort(table["frame"][rows], kind="stable")]
        frames, stamps = table["frame"][rows], table["timestamp"][rows]
        if np.any(np.diff(frames) <= 0):
            return f"face track {track} has two rows for one frame"
        rate = fps
        if rate is None:
            measured = frame_rates(frames, stamps, None)
            rate = float(measured[0]) if measured.size and np.isfinite(measured[0]) else None
        if rate is None:
            return "no timestamps to give its frame rate (frame folder or image): give --fps"
        probs = np.stack([table[c][rows] for c in columns], axis=1)
        out[track] = events_table(probs, rate, au_names=au_names, frames=frames, timestamps=stamps, thresholds=thresholds,
                                  smooth=smooth, mean_event_s=mean_event_s, mean_gap_s=mean_gap_s)
    return out


def _events_csv(tracks: dict[int, EventTable]) -> str:
    """One CSV of every track's events: ``face_id`` then the events columns, tracks in order."""
    lines = [",".join(("face_id", *EVENT_COLUMNS))]
    for track, table in tracks.items():
        lines += [f"{track},{line}" for line in table.to_csv().splitlines()[1:]]
    return "\n".join(lines) + "\n"
