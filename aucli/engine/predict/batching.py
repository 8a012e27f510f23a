"""Batches across frames and inputs: faces go to the model ``batch_size`` at a time, rows back to their table.

The face extraction thread sends one :class:`FrameItem` per sampled frame and one
:class:`SourceEnd` per input. :class:`Batcher` adds every frame's rows to its input's
:class:`SourceRows` (a frame without a face is one row without probabilities), queues the faces'
model views, and scores a batch as soon as ``batch_size`` faces wait, whichever frames and inputs
they come from. An input is *ready* once it has ended and all its faces are scored: its table can
be written while later inputs are still being extracted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from aucli.engine.predict.inference import Predictor
from aucli.engine.predict.tables import PredictionTable

__all__ = ["Batcher", "FrameItem", "SourceEnd", "SourceRows"]


@dataclass
class FrameItem:
    """One sampled frame of the input at ``source`` (its position in the run's plan)."""

    source: int
    frame: int
    timestamp: float
    faces: list[tuple[int, float, np.ndarray]]  # (track id, score, box x1 y1 x2 y2)
    images: list[torch.Tensor]  # the faces' model views, (3, H, W) uint8, in the order of faces


@dataclass
class SourceEnd:
    """The input at ``source`` has no more frames; ``failure``: why it stopped early ("" when it did not)."""

    source: int
    failure: str


class SourceRows:
    """Rows of one input's table as they arrive; probabilities filled in when their batch runs."""

    def __init__(self, n_aus: int) -> None:
        self.n_aus = n_aus
        self.frame: list[int] = []
        self.timestamp: list[float] = []
        self.face_id: list[int] = []
        self.confidence: list[float] = []
        self.box: list[np.ndarray] = []
        self.probs: list[np.ndarray | None] = []
        self.unscored = 0
        self.ended = False
        self.failure = ""
        self.n_frames = 0

    def add_frame(self, frame: int, timestamp: float, faces: list[tuple[int, float, np.ndarray]]) -> list[int]:
        """Add a frame's rows (faces by track id); returns the row numbers of its faces (to be scored)."""
        self.n_frames += 1
        if not faces:
            self._row(frame, timestamp, -1, np.nan, np.full(4, np.nan, np.float32), np.full(self.n_aus, np.nan, np.float32))
            return []
        rows = []
        for track, score, box in sorted(faces, key=lambda f: f[0]):
            rows.append(self._row(frame, timestamp, track, score, np.asarray(box, np.float32).reshape(4), None))
            self.unscored += 1
        return rows

    def _row(self, frame: int, timestamp: float, face_id: int, score: float, box: np.ndarray, probs: np.ndarray | None) -> int:
        self.frame.append(int(frame))
        self.timestamp.append(float(timestamp))
        self.face_id.append(int(face_id))
        self.confidence.append(float(score))
        self.box.append(box)
        self.probs.append(probs)
        return len(self.frame) - 1

    def score(self, row: int, probs: np.ndarray) -> None:
        self.probs[row] = probs
        self.unscored -= 1

    @property
    def ready(self) -> bool:
        return self.ended and self.unscored == 0

    def table(self) -> PredictionTable:
        face_id = np.asarray(self.face_id, dtype=np.int64)
        n = face_id.size
        return PredictionTable(
            frame=np.asarray(self.frame, dtype=np.int64),
            timestamp=np.asarray(self.timestamp, dtype=np.float64),
            face_id=face_id,
            success=(face_id >= 0).astype(np.int8),
            confidence=np.asarray(self.confidence, dtype=np.float32),
            box=np.stack(self.box).astype(np.float32) if n else np.zeros((0, 4), np.float32),
            probs=np.stack(self.probs).astype(np.float32) if n else np.zeros((0, self.n_aus), np.float32),  # type: ignore[arg-type]
        )


class Batcher:
    """Faces of every input in one queue, scored ``batch_size`` at a time by ``predictor``.

    Attributes:
        rows: position -> the rows of each input not yet handed out by :meth:`take_ready`.
        model_seconds: time spent in the model so far.
    """

    def __init__(self, predictor: Predictor, batch_size: int) -> None:
        self.predictor = predictor
        self.batch_size = batch_size
        self.rows: dict[int, SourceRows] = {}
        self.model_seconds = 0.0
        self._images: list[torch.Tensor] = []
        self._slots: list[tuple[int, int]] = []  # (input position, row) of each queued image

    def _rows(self, position: int) -> SourceRows:
        return self.rows.setdefault(position, SourceRows(len(self.predictor.au_names)))

    def add_frame(self, item: FrameItem) -> None:
        """Queue a frame's faces; runs a batch when ``batch_size`` faces wait."""
        rows = self._rows(item.source).add_frame(item.frame, item.timestamp, item.faces)
        for row, image in zip(rows, item.images):
            self._images.append(image)
            self._slots.append((item.source, row))
        if len(self._images) >= self.batch_size:
            self.run_batch()

    def end_source(self, end: SourceEnd) -> SourceRows:
        """Mark an input as ended; returns its rows (``n_frames`` is then final)."""
        rows = self._rows(end.source)
        rows.ended, rows.failure = True, end.failure
        return rows

    def run_batch(self) -> None:
        """Score every queued face (fewer than ``batch_size`` at the end of a run)."""
        if not self._images:
            return
        tick = time.perf_counter()
        probs = self.predictor.probabilities(torch.stack(self._images))
        self.model_seconds += time.perf_counter() - tick
        for (position, row), p in zip(self._slots, probs):
            self.rows[position].score(row, p)
        self._images.clear()
        self._slots.clear()

    def take_ready(self) -> list[tuple[int, SourceRows]]:
        """The inputs whose every face is scored, removed from :attr:`rows`, in input order."""
        ready = sorted(position for position, rows in self.rows.items() if rows.ready)
        return [(position, self.rows.pop(position)) for position in ready]
