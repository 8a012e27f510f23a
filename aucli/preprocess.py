"""``run_preprocess``: media in, a resumable HDF5 corpus store out (with an optional label import).

The run, in order (every fatal check happens before any work):
1. options and label files are validated (a label file that breaks its format stops the run);
2. the output path is checked (a folder, a missing or read-only folder: fatal), an existing store
   is opened (another schema version, not an aucli store, in use: fatal);
3. inputs are discovered; unusable ones (not media, zero bytes, empty folders) are warnings; no
   usable input at all is fatal; the detector is built (missing model files: fatal);
4. each source is processed and committed on its own: a source already stored with the same
   content is skipped; a source whose file changed since it was stored is reported and skipped
   (its stored faces, and any labels on them, stay; preprocess into a new store to replace it);
   a source that cannot be decoded at all is recorded as failed (retried by a later run once the
   file changes, or with ``retry_failed``); a
   video that breaks after some frames keeps the frames decoded before the damage;
5. labels, if given, are matched to the stored faces and written as a new label set.

An interrupted run (Ctrl-C, ``kill -9``) loses only the source in progress; rerunning the same
command completes the store, with no frame stored twice.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.errors import AucliError, LabelFormatError, MediaError, StoreError, UsageError

__all__ = ["PreprocessSummary", "SourceOutcome", "check_stored_any", "render_preprocess_summary", "run_preprocess"]

#: Options that change what a face crop looks like; a resumed run that differs gets a warning.
_CROP_OPTIONS = ("detector", "crop_size", "margin", "select", "max_faces", "every", "fps")


@dataclass
class SourceOutcome:
    """What happened to one source in this run.

    ``status``: ``done`` (processed now), ``skipped`` (already stored), ``changed`` (stored, but
    the file differs now: skipped), ``failed`` (nothing stored).
    """

    key: str
    kind: str
    subject: str
    status: str
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    message: str = ""


@dataclass
class PreprocessSummary:
    """The end-of-run report of :func:`run_preprocess`."""

    store: Path
    outcomes: list[SourceOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    store_sources: int = 0
    store_faces: int = 0
    labels: Any = None  # aucli.labels.importer.ImportReport when labels were imported
    label_note: str = ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes if o.status in ("done", "failed"))

    @property
    def faces(self) -> int:
        return sum(o.faces for o in self.outcomes if o.status == "done")

    @property
    def frames_per_second(self) -> float:
        busy = sum(o.seconds for o in self.outcomes if o.status in ("done", "failed"))
        return self.frames / busy if busy > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "sources": {s: self.count(s) for s in ("done", "skipped", "changed", "failed")},
            "frames": self.frames,
            "faces": self.faces,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "store_sources": self.store_sources,
            "store_faces": self.store_faces,
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
            "problems": self.problems,
            "labels": self.labels.as_dict() if self.labels is not None else None,
            "label_note": self.label_note,
        }


def _stat(path: Path, kind: str) -> tuple[int, int]:
    """(size in bytes, mtime in ns) of a file, or of a frame folder's frame files."""
    if kind == "frames":
        from aucli.media.sources import list_frame_files

        stats = [f.stat() for f in list_frame_files(path)]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _expected_frames(source, options) -> int:
    """Frames the run will sample from a source (an estimate for videos without a frame count)."""
    from aucli.media.decode import probe
    from aucli.media.sources import list_frame_files

    if source.kind == "image":
        return 1
    if source.kind == "frames":
        return int(math.ceil(len(list_frame_files(Path(source.path))) / options.every))
    try:
        info = probe(source)
    except AucliError:
        return 0
    if options.fps is not None and info.fps:
        return max(1, int(math.ceil(info.n_frames * min(1.0, options.fps / info.fps))))
    return int(math.ceil(info.n_frames / options.every))


def _rekey(found, inputs: Sequence[str | Path]):
    """Keys relative to the folder the user named: ``preprocess CASME2/`` keys ``sub01/EP02_01f``
    even when the folder holds one clip (discovery's default root is the sources' common parent).
    Kept as discovered when a source lies outside the named folders."""
    folders = []
    for item in inputs:
        path = Path(os.path.expanduser(str(item)))
        if path.is_dir():
            folders.append(path.resolve())
        elif path.is_file() and path.suffix.lower() not in (".txt", ".lst"):
            folders.append(path.resolve().parent)
        else:
            return found  # globs and list files: the discovered root is the best guess
    if not folders or not found.sources:
        return found
    root = Path(os.path.commonpath([str(f) for f in folders]))
    if root == found.root or not all(Path(s.path).is_relative_to(root) for s in found.sources):
        return found
    sources = [dataclasses.replace(s, key=Path(s.path).relative_to(root).as_posix()) for s in found.sources]
    if any(s.key == "." for s in sources):
        return found  # the named folder is itself a frame folder: its key is its own name
    if len({s.key for s in sources}) != len(sources):
        return found
    return dataclasses.replace(found, sources=sources, root=root)


def _options_dict(options) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}


def run_preprocess(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    face_options=None,
    compression: str = "none",
    labels: Sequence[str | Path] | None = None,
    label_format: str | None = None,
    label_set_name: str | None = None,
    label_aus: Sequence[str] | None = None,
    label_threshold: float | None = None,
    pattern: str | None = None,
    detector=None,
    retry_failed: bool = False,
    workers: int = 1,
    show_progress: bool = True,
) -> PreprocessSummary:
    """Detect, align and store the faces of ``inputs`` in the store ``out`` (created if needed).

    Args:
        inputs: videos, images, frame folders, globs or list files (see aucli.media.sources).
        out: the store file (``.h5``).
        face_options: an ``aucli.faces.FaceOptions`` (default: its defaults).
        compression: ``none`` (default: fastest random reads), ``lzf`` or ``gzip`` for the crops
            of a new store (an existing store keeps its own).
        labels, label_format, label_set_name: label files, their format (bp4d, disfa, openface,
            casme2, csv) and the label set name (default: the format's name).
        label_aus, label_threshold: AUs to import (default: the format's) and DISFA's threshold.
        pattern: regex with a ``subject`` group (and optionally ``recording``) for the paths.
        detector: a detector built by the caller (default: built from ``face_options``).
        retry_failed: process again sources that failed before although unchanged since (by
            default they are reported and skipped: a corrupt file stays corrupt).
        workers: extract this many sources at once in worker processes (each with its own
            detector and ``cpu_count // workers`` detector threads); the store is written by this
            process only, in input order, so the result is that of a one-process run.
        show_progress: draw a progress bar on stderr.

    Returns:
        a :class:`PreprocessSummary` (per-source outcomes, problems, totals, label report).

    Raises:
        StoreError, UsageError, MediaError, ModelError, LabelFormatError: fatal problems (see the
            module docstring); per-source problems are warnings and lines in ``problems``.
    """
    from aucli.console import warn
    from aucli.faces.pipeline import FaceOptions, make_face_detector
    from aucli.labels.importer import check_label_set_free, read_label_files
    from aucli.media.sources import discover_sources
    from aucli.store.schema import check_compression
    from aucli.store.store import CorpusStore, check_output_path

    started = time.perf_counter()
    options = face_options if face_options is not None else FaceOptions()
    options.validate()
    compression = check_compression(compression)
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    table = None
    if labels:
        if not label_format:
            raise UsageError("--labels needs --label-format (bp4d, disfa, openface, casme2 or csv)")
        label_set_name = label_set_name or label_format
        table = read_label_files(labels, label_format, au_names=label_aus, threshold=label_threshold)
    elif label_format or label_set_name:
        raise UsageError("--label-format and --as need --labels FILES")

    out = check_output_path(out)
    store = CorpusStore.open(out, "a") if out.exists() else None
    try:
        if store is not None and store.crop_size != options.crop_size:
            raise StoreError(
                f"{out}: holds {store.crop_size}x{store.crop_size} crops, but --crop-size is {options.crop_size}; "
                f"use --crop-size {store.crop_size} or another --out"
            )
        label_kept = False
        if table is not None and store is not None and label_set_name in store.label_sets():
            existing = store.label_attrs(label_set_name)
            if existing.get("format") == table.format and sorted(existing.get("files", [])) == sorted(table.files):
                label_kept = True
            else:
                check_label_set_free(store, label_set_name)  # raises: a different set has that name

        root = store.root if store is not None and store.root is not None and store.root.is_dir() else None
        found = discover_sources(inputs, pattern=pattern, root=root)
        if root is None:
            found = _rekey(found, inputs)
        summary = PreprocessSummary(out)
        for problem in found.problems:
            warn(problem)
            summary.problems.append(problem)
        if not found.sources:
            detail = (
                f": {found.problems[0]}" + (f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else "")
                if found.problems
                else ""
            )
            raise MediaError(f"no usable input: the inputs name no video, image or frame folder{detail}")
        if detector is None:
            detector = make_face_detector(options)

        if store is None:
            store = CorpusStore.create(
                out, crop_size=options.crop_size, compression=compression, root=found.root, preprocess=_options_dict(options)
            )
        else:
            if compression != "none" and compression != store.compression:
                warn(f"{out} keeps its crops {store.compression}-compressed; --compression applies to new stores only")
            stored = store.attrs.get("preprocess") or {}
            current = _options_dict(options)
            differ = [f"{k} {stored[k]!r} -> {current[k]!r}" for k in _CROP_OPTIONS if k in stored and stored[k] != current[k]]
            if differ:
                message = (
                    f"{out} was created with other face options ({', '.join(differ)}); new sources will differ from stored ones"
                )
                warn(message)
                summary.problems.append(message)

        _process_sources(store, found.sources, options, detector, summary, show_progress, retry_failed, workers)

        if table is not None:
            _import_after(store, table, label_set_name, label_kept, summary)
        summary.store_sources = len(store.sources())
        summary.store_faces = store.n_faces
    finally:
        if store is not None:
            store.close()
    summary.seconds = time.perf_counter() - started
    return summary


def check_stored_any(summary: PreprocessSummary) -> None:
    """Raise when no input of the run is in the store now (every one failed): the command exits
    non-zero after printing its summary. A source without a face counts as stored (its sampled
    frames are recorded), and so does a changed one (its earlier version stays)."""
    if any(o.status != "failed" for o in summary.outcomes):
        return
    raise MediaError(f"no input was stored ({summary.count('failed')} failed); see the problems above")


def _import_after(store, table, name: str, kept: bool, summary: PreprocessSummary) -> None:
    from aucli.console import warn
    from aucli.labels.importer import write_label_table

    if kept:
        new_faces = sum(o.faces for o in summary.outcomes if o.status == "done")
        if new_faces:
            message = (
                f"label set {name!r} was imported from these files before; it does not cover the {new_faces} face(s) "
                f"added now: import again under a new name (`aucli labels import {store.path} FILES --as NEW`)"
            )
            warn(message)
            summary.problems.append(message)
        summary.label_note = f"label set {name!r} is already in the store (same files); kept as it is"
        return
    try:
        report = write_label_table(store, table, name)
    except LabelFormatError as error:
        raise LabelFormatError(
            f"{error}. The faces are stored; fix the labels and run "
            f"`aucli labels import {store.path} FILES --format {table.format} --as {name}`"
        ) from None
    summary.labels = report
    for problem in report.problems():
        warn(problem)
        summary.problems.append(problem)


def _process_sources(
    store, sources, options, detector, summary: PreprocessSummary, show_progress: bool, retry_failed: bool, workers: int
) -> None:
    from aucli.console import progress, warn
    from aucli.media.decode import file_digest
    from aucli.store.store import SourceInfo

    latest = {record.key: record for record in store.sources()}
    plan = []
    for source in sources:
        try:
            size, mtime_ns = _stat(Path(source.path), source.kind)
        except OSError as error:
            message = f"{source.key}: cannot be read ({error.strerror or error}), skipped"
            warn(message)
            summary.problems.append(message)
            summary.outcomes.append(SourceOutcome(source.key, source.kind, source.subject, "failed", message=message))
            continue
        stored = latest.get(source.key)
        if stored is not None:
            same = stored.size == size and stored.mtime_ns == mtime_ns
            if not same and stored.size == size:  # touched but maybe not changed: compare contents
                same = file_digest(source.path) == stored.digest
            if same and stored.status == "done":
                summary.outcomes.append(
                    SourceOutcome(source.key, source.kind, source.subject, "skipped", stored.n_frames, stored.n_faces)
                )
                continue
            if same and not retry_failed:
                # failed before and unchanged since: it would fail the same way
                message = f"{stored.message} (failed before, unchanged since: not retried)"
                warn(message)
                summary.problems.append(message)
                summary.outcomes.append(SourceOutcome(source.key, source.kind, source.subject, "failed", message=message))
                continue
            if stored.status == "done" and not same:
                message = (
                    f"{source.key}: changed since it was stored ({stored.processed_at}); the stored faces are kept and "
                    "the new file is not processed (preprocess into a new store to use it)"
                )
                warn(message)
                summary.problems.append(message)
                summary.outcomes.append(SourceOutcome(source.key, source.kind, source.subject, "changed", message=message))
                continue
        plan.append((source, size, mtime_ns))

    if not plan:
        return
    expected = {source.key: _expected_frames(source, options) for source, _, _ in plan}
    stats = {source.key: (size, mtime_ns) for source, size, mtime_ns in plan}
    if workers > 1 and len(plan) > 1:
        from aucli.preprocess_workers import parallel_extractions

        stream = parallel_extractions([source for source, _, _ in plan], options, workers, store.path)
    else:
        stream = ((source, _frames(source, options, detector)) for source, _, _ in plan)
    bar = progress()
    bar.disable = not show_progress
    with bar:
        task = bar.add_task("preprocess", total=sum(expected.values()) or None, rate="")
        done_frames, busy = 0, 0.0
        started = time.perf_counter()
        for source, frames in stream:
            label = source.key if len(source.key) <= 40 else "..." + source.key[-37:]
            bar.update(task, description=label)
            size, mtime_ns = stats[source.key]
            info = SourceInfo(
                key=source.key,
                path=str(source.path),
                kind=source.kind,
                subject=source.subject,
                recording=source.recording,
                size=size,
                mtime_ns=mtime_ns,
                digest=file_digest(source.path),
            )
            writer = store.begin_source(info)
            failure: str = ""
            try:
                for frame_index, timestamp, faces in frames:
                    writer.add_frame(frame_index, timestamp, faces)
                    done_frames += 1
                    if writer.n_frames % 8 == 0:
                        elapsed = busy + time.perf_counter() - started
                        bar.update(task, completed=done_frames, rate=f"{done_frames / max(elapsed, 1e-9):.1f} frames/s")
            except MediaError as error:
                failure = str(error)
            except BaseException:
                writer.abort()
                raise
            seconds = time.perf_counter() - started
            busy += seconds
            started = time.perf_counter()
            outcome = SourceOutcome(source.key, source.kind, source.subject, "done", writer.n_frames, writer.n_faces, seconds)
            if failure and writer.n_frames == 0:
                writer.abort()
                store.record_failure(info, failure)
                outcome.status, outcome.faces, outcome.message = "failed", 0, failure
            else:
                if failure:
                    outcome.message = f"{failure} Kept the {writer.n_frames} frame(s) decoded before the damage."
                elif writer.n_faces == 0:
                    what = "image" if source.kind == "image" else f"{writer.n_frames} sampled frame(s)"
                    outcome.message = f"{source.key}: no face found in the {what}"
                writer.commit(outcome.message)
            if outcome.message:
                warn(outcome.message)
                summary.problems.append(outcome.message)
            summary.outcomes.append(outcome)
            # the bar's total was an estimate (probe); move it to what was really decoded
            expected_here = expected.get(source.key, 0)
            if expected_here != writer.n_frames and bar.tasks[task].total is not None:
                bar.update(task, total=bar.tasks[task].total - expected_here + writer.n_frames)
            bar.update(task, completed=done_frames, rate=f"{done_frames / max(busy, 1e-9):.1f} frames/s")


def _frames(source, options, detector) -> Iterator[tuple[int, float, list]]:
    """``(frame_index, timestamp, faces)`` of one source, extracted in this process."""
    from aucli.faces.pipeline import extract_faces

    for result in extract_faces(source, options, detector=detector):
        yield result.frame_index, result.timestamp, result.faces


def render_preprocess_summary(summary: PreprocessSummary) -> None:
    """Print the end-of-run summary: totals, the sources of this run, problems, the label import."""
    from rich.table import Table

    from aucli.console import console

    totals = Table(title=f"Preprocess: {summary.store}", show_header=True, header_style="bold")
    for column in ("sources done", "skipped", "changed", "failed", "frames", "faces", "frames/s", "seconds"):
        totals.add_column(column, justify="right")
    totals.add_row(
        str(summary.count("done")),
        str(summary.count("skipped")),
        str(summary.count("changed")),
        str(summary.count("failed")),
        str(summary.frames),
        str(summary.faces),
        f"{summary.frames_per_second:.1f}",
        f"{summary.seconds:.1f}",
    )
    console.print(totals)
    processed = [o for o in summary.outcomes if o.status != "skipped"]
    if processed and len(processed) <= 30:
        table = Table(show_header=True, header_style="bold")
        for column, justify in (
            ("source", "left"),
            ("subject", "left"),
            ("status", "left"),
            ("frames", "right"),
            ("faces", "right"),
            ("problem", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for o in processed:
            style = {"failed": "red", "changed": "yellow"}.get(o.status, "")
            table.add_row(
                o.key, o.subject, f"[{style}]{o.status}[/{style}]" if style else o.status, str(o.frames), str(o.faces), o.message
            )
        console.print(table)
    shown = {o.message for o in processed} if processed and len(processed) <= 30 else set()
    others = [p for p in summary.problems if p not in shown]
    if others:
        console.print(
            f"[yellow]{len(others)} other problem(s):[/yellow]" if shown else f"[yellow]{len(others)} problem(s):[/yellow]"
        )
        for problem in others:
            console.print(f"  - {problem}", highlight=False, markup=False)
    if summary.labels is not None:
        report = summary.labels
        console.print(
            f"Label set [bold]{report.name}[/bold] ({report.format}): {report.n_matched} face(s) labelled from "
            f"{report.n_labelled} labelled frame(s); AUs: {', '.join(report.au_names)}",
            highlight=False,
        )
    elif summary.label_note:
        console.print(summary.label_note, highlight=False)
    console.print(f"Store: {summary.store_sources} source(s), {summary.store_faces} face(s).", highlight=False)
