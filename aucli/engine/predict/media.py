"""Media inputs (videos, frame folders, images): one table per input, written as soon as it is scored.

Two stages overlap, joined by a bounded queue (:class:`aucli.prefetch.Producer`):

1. a producer thread runs the preprocess face pipeline source after source
   (:func:`aucli.engine.predict.sources.face_stream`) and turns every face crop into the model's
   input view (the training evaluation transform);
2. the caller's thread batches faces across frames *and* sources
   (:class:`aucli.engine.predict.batching.Batcher`), runs the model, and writes each source's
   table as soon as its last face is scored.

So face extraction of the next video goes on while the model runs. Each table is written
atomically (:mod:`aucli.engine.predict.tables`), the manifest ``predictions.json`` is updated as
tables appear (:mod:`aucli.engine.predict.manifest`), and a rerun skips inputs whose table exists:
an interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aucli.console import progress, warn
from aucli.engine.predict.batching import Batcher, FrameItem, SourceEnd, SourceRows
from aucli.engine.predict.inference import Predictor, start_summary
from aucli.engine.predict.manifest import (
    MANIFEST_INTERVAL,
    MediaPlan,
    check_folder,
    check_out_folder,
    finish_manifest,
    new_manifest,
    plan_inputs,
    read_manifest,
    write_manifest,
)
from aucli.engine.predict.sources import expected_frames, face_stream, find_inputs, parse_shard, shard_of
from aucli.engine.predict.summary import InputOutcome, PredictSummary
from aucli.engine.predict.tables import check_table_format, table_names, write_table
from aucli.errors import MediaError, UsageError
from aucli.faces.pipeline import FaceOptions, make_face_detector
from aucli.media.sources import MediaSource, natural_key
from aucli.prefetch import Producer, Put

__all__ = ["predict_sources"]


def predict_sources(
    inputs: Sequence[str | Path],
    checkpoint: str | Path | Predictor,
    out_dir: str | Path,
    *,
    face_options: FaceOptions | None = None,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    table_format: str = "csv",
    shard: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    workers: int = 1,
    pattern: str | None = None,
    root: str | Path | None = None,
    backbone_weights: str | None = None,
    detector: Any = None,
    queue_frames: int | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """Predict AUs on every frame of videos, frame folders and images; one table per input.

    Args:
        inputs: videos, images, frame folders, folders to search, globs or list files (as
            ``aucli preprocess``).
        checkpoint: a checkpoint path or registry name, or a :class:`Predictor` already built.
        out_dir: the output folder (created): tables and ``predictions.json``.
        face_options: face detection, sampling and crop settings (default: those of ``aucli preprocess``).
        batch_size: faces per model call, across frames and inputs.
        device, precision, backbone_weights: see :class:`Predictor` (ignored when one is given).
        table_format: ``csv`` or ``parquet``.
        shard: ``"i/n"`` or ``(i, n)``: predict only every n-th input of the sorted key list,
            starting at the i-th (1-based).
        overwrite: predict inputs again although their table exists (and accept a folder made by
            another checkpoint or other options).
        workers: face extraction in this many processes (1: threads of this process).
        pattern, root: subject pattern and key root of the discovery (see
            :func:`aucli.media.discover_sources`).
        detector: a face detector built by the caller (default: built from ``face_options``).
        queue_frames: frames the extraction may run ahead of the model (default ``4 x batch_size``).
        show_progress: draw a progress bar (frames/s) on stderr.

    Returns:
        a :class:`PredictSummary`. An input that cannot be read is a warning and a ``failed``
        outcome; the other inputs go on.

    Raises:
        UsageError, ModelError, MediaError: before any work, for bad options, a missing or broken
            checkpoint, no usable input, or an output folder made differently (see ``overwrite``).
    """
    started = time.perf_counter()
    options = face_options if face_options is not None else FaceOptions()
    table_format, shard = _check_options(options, table_format, shard, batch_size, workers)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the prediction tables")
    previous = read_manifest(out) if out.is_dir() else None
    check_out_folder(out, previous)
    found = find_inputs(inputs, pattern=pattern, root=root)
    keys = found.keys
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    summary = start_summary(predictor, out=out, table_format=table_format, shard=shard)
    for problem in found.problems:
        warn(problem)
        summary.problems.append(problem)
    manifest = new_manifest(predictor, options, table_format=table_format, shard=shard, keys=keys, problems=found.problems, batch_size=batch_size)
    check_folder(out, previous, manifest, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    mine = [found.sources[j] for j in shard_of(keys, shard)]
    plan = plan_inputs(out, previous, manifest, mine, table_names(keys, table_format), overwrite=overwrite, summary=summary)
    write_manifest(out, manifest)
    try:
        if plan.todo:
            if detector is None and workers == 1:
                detector = make_face_detector(options)
            anchor = out / (f".predict-{shard[0]}-of-{shard[1]}" if shard else ".predict")
            run = _MediaRun(predictor, plan, _TableWriter(out, plan, manifest, predictor, summary), batch_size)
            run.run(_extraction(plan.todo, predictor, options, detector, workers, anchor), queue_frames or 4 * batch_size, show_progress, options)
    finally:  # also after Ctrl-C: the manifest records the tables written so far
        finish_manifest(out, manifest, summary, plan.entries)
    summary.outcomes.sort(key=lambda o: natural_key(o.key))
    summary.seconds = time.perf_counter() - started
    return summary


def _check_options(
    options: FaceOptions, table_format: str, shard: str | tuple[int, int] | None, batch_size: int, workers: int
) -> tuple[str, tuple[int, int] | None]:
    """Every option checked before any work; returns the table format and the shard, normalised."""
    options.validate()
    table_format = check_table_format(table_format)
    parsed = parse_shard(shard)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    return table_format, parsed


def _extraction(sources: list[MediaSource], predictor: Predictor, options: FaceOptions, detector: Any, workers: int, anchor: Path):
    """The producer's work: every frame of every source as a :class:`FrameItem` (faces as model
    views), then a :class:`SourceEnd` per source; a damaged source keeps the frames decoded before."""

    def produce(put: Put) -> None:
        for position, frames in face_stream(sources, options, detector, workers, anchor):
            failure = ""
            try:
                for frame_index, timestamp, faces in frames:
                    boxes = [(int(f.track_id), float(f.score), np.asarray(f.box, np.float32)) for f in faces]
                    images = [predictor.prepare(f.crop) for f in faces]
                    if not put(FrameItem(position, int(frame_index), float(timestamp), boxes, images)):
                        return
            except MediaError as error:  # frames decoded before the damage are kept
                failure = str(error)
            if not put(SourceEnd(position, failure)):
                return

    return produce


@dataclass
class _TableWriter:
    """Writes a finished input's table, its manifest entry and its outcome."""

    out: Path
    plan: MediaPlan
    manifest: dict[str, Any]
    predictor: Predictor
    summary: PredictSummary
    last_manifest: float = 0.0

    def finish(self, source: MediaSource, rows: SourceRows) -> None:
        entry, table = self.plan.entries[source.key], self.plan.names[source.key]
        outcome = InputOutcome(source.key, source.kind, "done", rows.n_frames, 0, table, subject=source.subject, path=str(source.path))
        if rows.failure and rows.n_frames == 0:
            outcome.status, outcome.table, outcome.message = "failed", "", rows.failure
            entry.update(status="failed", message=rows.failure)
        else:
            outcome.faces = self._write(source, table, rows)
            outcome.message = _problem(source, rows, outcome.faces)
            entry.update(status="done", frames=outcome.frames, faces=outcome.faces, message=outcome.message)
        if outcome.message:
            warn(outcome.message)
            self.summary.problems.append(outcome.message)
        self.summary.outcomes.append(outcome)
        self.summary.predicted_frames += rows.n_frames
        if time.perf_counter() - self.last_manifest > MANIFEST_INTERVAL:
            write_manifest(self.out, self.manifest)
            self.last_manifest = time.perf_counter()

    def _write(self, source: MediaSource, table: str, rows: SourceRows) -> int:
        """Write the table; returns its number of face rows."""
        identity, predictor = self.predictor.identity, self.predictor
        content = rows.table()
        metadata = {
            "key": source.key, "checkpoint": identity["name"], "weights_sha256": identity["weights_sha256"],
            "au_names": predictor.au_names, "thresholds": [float(t) for t in predictor.thresholds],
        }  # fmt: skip
        write_table(self.out / table, content, au_names=predictor.au_names, thresholds=predictor.thresholds,
                    table_format=self.summary.table_format, metadata=metadata)  # fmt: skip
        return content.n_faces


def _problem(source: MediaSource, rows: SourceRows, faces: int) -> str:
    """What to warn about a written table: a source damaged part-way, or one without a face."""
    if rows.failure:
        return f"{rows.failure} Kept the {rows.n_frames} frame(s) decoded before the damage."
    if faces == 0:
        what = "image" if source.kind == "image" else f"{rows.n_frames} sampled frame(s)"
        return f"{source.key}: no face found in the {what}"
    return ""


class _MediaRun:
    """The consumer: items from the extraction thread -> batches -> tables, with a progress bar."""

    def __init__(self, predictor: Predictor, plan: MediaPlan, writer: _TableWriter, batch_size: int) -> None:
        self.plan = plan
        self.writer = writer
        self.batcher = Batcher(predictor, batch_size)
        self.frames = 0

    def run(self, produce, queue_frames: int, show_progress: bool, options: FaceOptions) -> None:
        expected = {i: expected_frames(source, options) for i, source in enumerate(self.plan.todo)}
        producer = Producer("aucli-predict-faces", queue_frames, produce)
        bar = progress()
        bar.disable = not show_progress
        started = time.perf_counter()
        with bar:
            task = bar.add_task("predict", total=sum(expected.values()) or None, rate="")
            producer.start()
            try:
                for item in producer.drain():
                    self._take(item, bar, task, expected, started)
                self.batcher.run_batch()
                self._write_ready()
            finally:
                producer.stop()
                self.writer.summary.model_seconds += self.batcher.model_seconds
                bar.update(task, completed=self.frames, rate=_rate(self.frames, started, "frames"))

    def _take(self, item: FrameItem | SourceEnd, bar: Any, task: Any, expected: dict[int, int], started: float) -> None:
        if isinstance(item, FrameItem):
            self.batcher.add_frame(item)
            self.frames += 1
            if self.frames % 8 == 0:
                bar.update(task, completed=self.frames, rate=_rate(self.frames, started, "frames"))
        else:
            rows = self.batcher.end_source(item)
            key = self.plan.todo[item.source].key
            bar.update(task, description=key if len(key) <= 40 else "..." + key[-37:])
            if bar.tasks[task].total is not None and expected.get(item.source, 0) != rows.n_frames:
                bar.update(task, total=bar.tasks[task].total - expected[item.source] + rows.n_frames)
        self._write_ready()

    def _write_ready(self) -> None:
        for position, rows in self.batcher.take_ready():
            self.writer.finish(self.plan.todo[position], rows)


def _rate(count: int, started: float, unit: str) -> str:
    return f"{count / max(time.perf_counter() - started, 1e-9):.1f} {unit}/s"
