"""The events of a store's label set: one events table (:class:`aucli.events.EventTable`) per (source, track).

An event is a run of frames coded 1 (a 0, an unknown label or a gap of more than two usual frame
steps ends it); its apex is the frame of the highest intensity when the set has intensities.
Seconds come from the store's clock, or ``fps`` for sources without one (frame folders).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aucli.errors import StoreError, UsageError
from aucli.events import EVENT_COLUMNS, EventTable, events_table, frame_rates, segment_ids, sequence_order

__all__ = ["TrackEvents", "events_csv", "label_set_events"]


@dataclass
class TrackEvents:
    """The events of one (source, track) of a label set."""

    source: str
    track: int
    table: EventTable


def label_set_events(store: str | Path, name: str, *, sources: Sequence[str] | None = None, track: int | None = None,
                     fps: float | None = None) -> list[TrackEvents]:
    """Events of label set ``name`` per (source, track), in store order.

    Args:
        sources: source keys to read (default: every source with a coded face).
        track: only this face track (default: every track with coded faces).
        fps: frame rate of sources without a clock; without it such a source raises.
    """
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        labels = opened.read_labels(name)
        faces = opened.face_table(["source", "track", "frame", "timestamp"])
        keys = {record.index: record.key for record in opened.sources(latest=False)}
    wanted = set(keys) if sources is None else {i for i, key in keys.items() if key in set(sources)}
    unknown = sorted(set(sources or ()) - {keys[i] for i in wanted})
    if unknown:
        raise StoreError(f"the store has no source {', '.join(map(repr, unknown))} (its sources: {', '.join(list(keys.values())[:10])})")
    coded = (labels.occurrence >= 0).any(axis=1) & np.isin(faces["source"], list(wanted))
    if track is not None:
        coded &= faces["track"] == track
    rows = np.flatnonzero(coded)
    rows = rows[sequence_order(faces["source"][rows], faces["track"][rows], faces["frame"][rows])]
    out: list[TrackEvents] = []
    pair = np.stack([faces["source"][rows], faces["track"][rows]], axis=1)
    starts = np.flatnonzero(np.r_[True, (pair[1:] != pair[:-1]).any(axis=1)]) if rows.size else np.zeros(0, np.int64)
    for start, stop in zip(starts, np.r_[starts[1:], rows.size]):
        block = rows[start:stop]
        source, face_track = int(faces["source"][block[0]]), int(faces["track"][block[0]])
        frames, stamps = faces["frame"][block], faces["timestamp"][block]
        zeros = np.zeros(block.size, np.int64)
        rates = frame_rates(frames, stamps, segment_ids(zeros, zeros, frames))
        rate = float(np.nanmedian(rates)) if np.isfinite(rates).any() else fps
        if rate is None:
            raise UsageError(f"source {keys[source]!r} has no clock (a frame folder); give --fps for its seconds")
        occurrence = labels.occurrence[block].astype(np.float64)
        intensity = None if labels.intensity is None else labels.intensity[block]
        table = events_table(np.where(occurrence >= 0, occurrence, np.nan), rate, au_names=labels.au_names, frames=frames,
                             timestamps=stamps, intensities=intensity, smooth=False)
        out.append(TrackEvents(keys[source], face_track, table))
    return out


def events_csv(tracks: Sequence[TrackEvents]) -> str:
    """All tracks' events as one CSV: ``source``, ``track``, then :data:`aucli.events.EVENT_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "track", *EVENT_COLUMNS])
    for item in tracks:
        for row in list(csv.reader(io.StringIO(item.table.to_csv())))[1:]:  # past the table's own header
            writer.writerow([item.source, item.track, *row])
    return buffer.getvalue()
