"""``aucli predict``: AU probabilities and decisions for videos, frame folders, images and stores.

Media inputs (:func:`predict_sources`) go through two overlapping stages joined by a bounded queue:

1. a producer thread runs the preprocess face pipeline (:func:`aucli.faces.pipeline.extract_faces`,
   itself decoding and detecting in threads of its own; or ``workers`` processes, as
   ``aucli preprocess --workers``) source after source, and turns every face crop into the model's
   input view (the training evaluation transform, :class:`aucli.engine.data.FaceTransform`);
2. the caller's thread fills batches of ``batch_size`` faces across frames *and* sources, runs the
   model (``inference_mode``; bf16 autocast on GPU, fp32 on CPU), and writes each source's table as
   soon as its last face is scored.

So face extraction of the next video goes on while the model runs. Each table is written
atomically (see :mod:`aucli.engine.predict_tables` for the columns and the output folder), the
manifest ``predictions.json`` is updated as tables appear, and a rerun skips inputs whose table
exists: an interrupted run is resumed by running the same command again. ``shard=(i, n)`` keeps
every n-th source of the sorted key list (starting at the i-th), so that n processes or machines
split a corpus; :func:`aucli.engine.predict_merge.merge_predictions` joins their folders.

A store input (:func:`predict_store`) is scored row by row from its stored crops, and the result is
written atomically into the store as ``/predictions/<run>``::

    probs       (n_faces, n_aus) float32   probability per face row and AU
    decisions   (n_faces, n_aus) int8      1 where probs >= the AU's threshold
    thresholds  (n_aus,) float64
    au_names    (n_aus,) str
    attributes  checkpoint (name, path, sha256 of both files, method, backbone), au_names,
                thresholds, precision, batch_size, device, n_faces (store rows when written)
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aucli.engine.predict_tables import (
    MANIFEST_FORMAT,
    PredictionTable,
    check_table_format,
    keys_digest,
    read_manifest,
    table_columns,
    table_counts,
    table_names,
    utc_now,
    write_manifest,
    write_table,
)
from aucli.errors import MediaError, StoreError, UsageError

__all__ = [
    "STORE_SUFFIXES",
    "InputOutcome",
    "PredictSummary",
    "Predictor",
    "checkpoint_identity",
    "is_store_path",
    "parse_shard",
    "predict_sources",
    "predict_store",
    "render_predict_summary",
    "run_predict",
    "shard_of",
]

#: Inputs with these suffixes are corpus stores (scored from their crops), not media.
STORE_SUFFIXES = (".h5", ".hdf5")
#: Face options that change which frames and crops a table is made of; a folder predicted with
#: other values is not resumed (without ``overwrite``).
IDENTITY_FACE_OPTIONS = (
    "detector",
    "crop_size",
    "margin",
    "detect_width",
    "retry_full",
    "detect_every",
    "max_faces",
    "select",
    "every",
    "fps",
    "threshold",
)
PRECISIONS = ("auto", "bf16", "fp32")
#: Seconds between two rewrites of the manifest while tables are being written.
MANIFEST_INTERVAL = 2.0


# ------------------------------------------------------------------------------------ the model
def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(name: str | Path, meta_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a checkpoint across machines: both files' sha256, plus what it detects."""
    from aucli.model.checkpoint import checkpoint_paths

    weights_path, meta_path = checkpoint_paths(meta_path)
    return {
        "name": str(name),
        "path": str(meta_path.resolve()),
        "weights_sha256": _sha256(weights_path),
        "config_sha256": _sha256(meta_path),
        "method": str(meta.get("method", "auformer")),
        "backbone": str(meta.get("recipe", {}).get("model", {}).get("backbone", "")),
        "au_names": list(meta["au_names"]),
        "thresholds": [float(t) for t in meta["thresholds"]],
    }


def same_checkpoint(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two identities name the same checkpoint files (paths may differ between machines)."""
    if not a or not b:
        return False
    return a.get("weights_sha256") == b.get("weights_sha256") and a.get("config_sha256") == b.get("config_sha256")


class Predictor:
    """A checkpoint ready for inference: the model on its device, the evaluation view, thresholds.

    Args:
        checkpoint: a checkpoint (``NAME.safetensors``, ``NAME.json`` or ``NAME``) of any training
            method, or a name in the checkpoint registry (:mod:`aucli.model.registry`).
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``bf16`` or ``fp32``.
        backbone_weights: the backbone weight file, when the one the checkpoint records has moved.

    Attributes:
        au_names: the AUs, in probability column order.
        thresholds: (n_aus,) float64 per-AU decision thresholds of the checkpoint.
        image_size: side of the model's input; crops are resized to ``transform.resize`` and centre
            cropped to it, exactly as training evaluates.
        identity: see :func:`checkpoint_identity`.
    """

    def __init__(
        self, checkpoint: str | Path, *, device: str = "auto", precision: str = "auto", backbone_weights: str | None = None
    ) -> None:
        from aucli.model.checkpoint import load_model_checkpoint
        from aucli.engine.data import FaceTransform
        from aucli.engine.distributed import resolve_device
        from aucli.model.registry import resolve_checkpoint

        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        meta_path = resolve_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.precision = precision
        loaded = load_model_checkpoint(meta_path, device=self.device, backbone_weights=backbone_weights)
        self.model = loaded.model.eval()
        self.meta = loaded.meta
        self.au_names: list[str] = list(loaded.au_names)
        self.thresholds = np.asarray(loaded.thresholds, dtype=np.float64)
        data_config = loaded.data_config
        self.mean = [float(v) for v in data_config["mean"]]
        self.std = [float(v) for v in data_config["std"]]
        self.image_size = int(data_config["input_size"][-1])
        self.transform = FaceTransform.from_config(loaded.recipe.data, self.image_size, train=False)
        self.identity = checkpoint_identity(checkpoint, meta_path, loaded.meta)

    @property
    def uses_bf16(self) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and self.device.type == "cuda")

    def describe(self) -> str:
        """One line: the checkpoint, its method and backbone, and the AUs it detects."""
        ident = self.identity
        return (
            f"checkpoint {ident['name']} ({ident['method']}, {ident['backbone']}, {self.image_size}px): "
            f"{len(self.au_names)} AUs {' '.join(self.au_names)}; device {self.device}, {'bf16' if self.uses_bf16 else 'fp32'}"
        )

    def prepare(self, crop: np.ndarray) -> torch.Tensor:
        """An aligned face crop ``(S, S, 3) uint8 RGB`` -> the model's view ``(3, H, W) uint8``."""
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
        return self.transform(tensor)[0]

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W) uint8`` model views -> ``(B, n_aus) float32`` probabilities (main head)."""
        from aucli.engine.data import normalize
        from aucli.engine.evaluate import autocast_for

        if images.shape[0] == 0:
            return np.zeros((0, len(self.au_names)), np.float32)
        if self.device.type == "cuda":
            images = images.pin_memory()
        with torch.inference_mode(), autocast_for(self.device, "bf16" if self.uses_bf16 else "fp32"):
            x = normalize(images, self.mean, self.std, device=self.device)
            logits = self.model(x).logits
        return torch.sigmoid(logits.float()).cpu().numpy()


# ------------------------------------------------------------------------------------ outcomes
@dataclass
class InputOutcome:
    """What happened to one input.

    ``status``: ``done`` (predicted now), ``skipped`` (its table or store run was already there),
    ``failed`` (nothing written). ``table``: the table's path relative to the output folder, or
    ``/predictions/<run>`` for a store.
    """

    key: str
    kind: str
    status: str
    frames: int = 0
    faces: int = 0
    table: str = ""
    message: str = ""
    subject: str = ""
    path: str = ""


@dataclass
class PredictSummary:
    """The end-of-run report of :func:`predict_sources` / :func:`predict_store` / :func:`run_predict`."""

    out: Path | None
    checkpoint: dict[str, Any]
    au_names: list[str]
    thresholds: list[float]
    device: str = "cpu"
    precision: str = "fp32"
    table_format: str = "csv"
    shard: tuple[int, int] | None = None
    outcomes: list[InputOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    predicted_frames: int = 0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes if o.status == "done")

    @property
    def faces(self) -> int:
        return sum(o.faces for o in self.outcomes if o.status == "done")

    @property
    def frames_per_second(self) -> float:
        """Sampled frames (store inputs: faces) predicted in this run per wall-clock second."""
        return self.predicted_frames / self.seconds if self.seconds > 0 else 0.0

    def merge(self, other: PredictSummary) -> None:
        """Add another part of the same run (a store next to media inputs)."""
        self.outcomes.extend(other.outcomes)
        self.problems.extend(other.problems)
        self.seconds += other.seconds
        self.model_seconds += other.model_seconds
        self.predicted_frames += other.predicted_frames
        self.out = self.out or other.out

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out) if self.out else None,
            "checkpoint": dict(self.checkpoint),
            "au_names": list(self.au_names),
            "thresholds": list(self.thresholds),
            "device": self.device,
            "precision": self.precision,
            "format": self.table_format,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "inputs": {s: self.count(s) for s in ("done", "skipped", "failed")},
            "frames": self.frames,
            "faces": self.faces,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
            "problems": list(self.problems),
        }


# ------------------------------------------------------------------------------------ sharding
def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``: the 2nd of 4 shards (numbered 1..n); None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if match is None:
            raise UsageError(f"--shard must look like i/n (e.g. 2/4: the 2nd of 4 shards), got {shard!r}")
        index, count = int(match.group(1)), int(match.group(2))
    else:
        index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {index}/{count}: shards are numbered 1..n with n >= 1 (e.g. 1/{max(count, 2)})")
    return index, count


def shard_of(keys: Sequence[str], shard: tuple[int, int] | None) -> list[int]:
    """Positions in ``keys`` (sorted, as discovered) that belong to ``shard``: every n-th from the i-th."""
    if shard is None:
        return list(range(len(keys)))
    index, count = shard
    return [j for j in range(len(keys)) if j % count == index - 1]


# ------------------------------------------------------------------------------------ threads
_END = object()


class _Producer(threading.Thread):
    """A daemon thread running ``produce(put)`` into a bounded queue; its error reaches the consumer."""

    def __init__(self, name: str, maxsize: int, produce: Callable[[Callable[[object], bool]], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.items: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stopped = threading.Event()
        self._produce = produce

    def put(self, item: object) -> bool:
        """Queue ``item``; False once the consumer has stopped (the producer should return)."""
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._produce(self.put)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self.put(error)
            return
        self.put(_END)

    def drain(self) -> Iterator[Any]:
        while True:
            item = self.items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


@dataclass
class _FrameItem:
    source: int
    frame: int
    timestamp: float
    faces: list[tuple[int, float, np.ndarray]]  # (track id, score, box)
    images: list[torch.Tensor]


@dataclass
class _SourceEnd:
    source: int
    failure: str


class _SourceRows:
    """Rows of one source's table as they arrive; probabilities filled in when their batch runs."""

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
        """Add a frame's rows; returns the row numbers of its faces (to be scored)."""
        self.n_frames += 1
        empty = np.full(4, np.nan, np.float32)
        if not faces:
            self._row(frame, timestamp, -1, np.nan, empty, np.full(self.n_aus, np.nan, np.float32))
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


# ------------------------------------------------------------------------------------ media inputs
def _face_options_dict(options) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}


def _check_folder(out: Path, previous: dict[str, Any] | None, manifest: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume a folder made by another checkpoint, format, face options or corpus split."""
    if previous is None or overwrite:
        return
    differences = []
    if not same_checkpoint(previous.get("checkpoint"), manifest["checkpoint"]):
        differences.append(
            f"checkpoint {previous.get('checkpoint', {}).get('name')} -> {manifest['checkpoint']['name']} (other files)"
        )
    if previous.get("table_format") != manifest["table_format"]:
        differences.append(f"format {previous.get('table_format')} -> {manifest['table_format']}")
    before, now = previous.get("face_options") or {}, manifest["face_options"]
    differences.extend(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in IDENTITY_FACE_OPTIONS if before.get(k) != now.get(k))
    if previous.get("shard") != manifest["shard"]:
        differences.append(f"shard {_shard_text(previous.get('shard'))} -> {_shard_text(manifest['shard'])}")
    elif manifest["shard"] is not None and previous.get("corpus", {}).get("keys_sha256") != manifest["corpus"]["keys_sha256"]:
        differences.append("the corpus' input list (a shard's share depends on the whole list)")
    if differences:
        raise UsageError(
            f"{out} holds predictions made differently ({'; '.join(differences)}); use another --out, or --overwrite to predict again"
        )


def _shard_text(shard: Any) -> str:
    if not shard:
        return "none"
    return f"{shard['index']}/{shard['count']}"


def _expected_frames(source, options) -> int:
    from aucli.preprocess import _expected_frames as expected  # the same estimate preprocess shows

    return expected(source, options)


def predict_sources(
    inputs: Sequence[str | Path],
    checkpoint: str | Path | Predictor,
    out_dir: str | Path,
    *,
    face_options=None,
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
    detector=None,
    queue_frames: int | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """Predict AUs on every frame of videos, frame folders and images; one table per input.

    Args:
        inputs: videos, images, frame folders, folders to search, globs or list files (as
            ``aucli preprocess``).
        checkpoint: a checkpoint path or registry name, or a :class:`Predictor` already built.
        out_dir: the output folder (created): tables and ``predictions.json``.
        face_options: an :class:`aucli.faces.pipeline.FaceOptions` (default: its defaults, the
            same as ``aucli preprocess``).
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
    from aucli.console import warn
    from aucli.faces.pipeline import FaceOptions, make_face_detector
    from aucli.media.sources import discover_sources
    from aucli.preprocess import _rekey

    started = time.perf_counter()
    options = face_options if face_options is not None else FaceOptions()
    options.validate()
    table_format = check_table_format(table_format)
    shard = parse_shard(shard)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the prediction tables")
    previous = read_manifest(out) if out.is_dir() else None

    found = discover_sources(inputs, pattern=pattern, root=root)
    if root is None:
        found = _rekey(found, inputs)
    if not found.sources:
        detail = (
            f": {found.problems[0]}" + (f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else "")
            if found.problems
            else ""
        )
        raise MediaError(f"no usable input: the inputs name no video, image or frame folder{detail}")
    sources = sorted(found.sources, key=lambda s: _natural(s.key))  # shards and merge rely on this order
    keys = [s.key for s in sources]
    mine = [sources[j] for j in shard_of(keys, shard)]

    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    )
    names = table_names(keys, table_format)
    summary = PredictSummary(
        out=out,
        checkpoint=predictor.identity,
        au_names=predictor.au_names,
        thresholds=[float(t) for t in predictor.thresholds],
        device=str(predictor.device),
        precision="bf16" if predictor.uses_bf16 else "fp32",
        table_format=table_format,
        shard=shard,
    )
    for problem in found.problems:
        warn(problem)
        summary.problems.append(problem)

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "table_format": table_format,
        "columns": table_columns(predictor.au_names),
        "checkpoint": predictor.identity,
        "au_names": predictor.au_names,
        "thresholds": [float(t) for t in predictor.thresholds],
        "face_options": _face_options_dict(options),
        "parameters": {
            "batch_size": batch_size,
            "precision": summary.precision,
            "device": summary.device,
            "image_size": predictor.image_size,
        },
        "shard": {"index": shard[0], "count": shard[1]} if shard else None,
        "corpus": {"n_sources": len(keys), "keys_sha256": keys_digest(keys)},
        "inputs": [],
        "problems": list(found.problems),
        "created_at": utc_now(),
        "created_by": _created_by(),
        "complete": False,
    }
    _check_folder(out, previous, manifest, overwrite)
    out.mkdir(parents=True, exist_ok=True)

    # entries: this run's inputs, plus (unsharded, same predictions) inputs of earlier runs into this folder
    recorded = {e["key"]: e for e in (previous or {}).get("inputs", [])} if previous is not None else {}
    if previous is not None and not overwrite and shard is None:
        taken = {e["table"].lower(): k for k, e in recorded.items() if e.get("table")}
        for key in keys:
            if key not in recorded and taken.get(names[key].lower(), key) != key:
                names[key] = key.strip("/") + "." + table_format  # an earlier input already has that name
    entries: dict[str, dict[str, Any]] = {}
    if shard is None and previous is not None and not overwrite:
        entries.update({k: e for k, e in recorded.items() if k not in set(keys)})
        manifest["corpus"] = {
            "n_sources": len(set(keys) | set(entries)),
            "keys_sha256": keys_digest(sorted(set(keys) | set(entries), key=_natural)),
        }
    plan = []
    for source in mine:
        table = names[source.key]
        entry = {
            "key": source.key,
            "path": str(source.path),
            "kind": source.kind,
            "subject": source.subject,
            "recording": source.recording,
            "table": table,
            "status": "pending",
            "frames": 0,
            "faces": 0,
            "message": "",
        }
        old = recorded.get(source.key)
        if (out / table).is_file() and not overwrite:
            if old is not None and old.get("status") == "done" and old.get("table") == table:
                frames, faces = int(old.get("frames", 0)), int(old.get("faces", 0))
            else:
                frames, faces = table_counts(out / table)  # written just before an interruption
            entry.update(status="done", frames=frames, faces=faces, message=(old or {}).get("message", ""))
            summary.outcomes.append(
                InputOutcome(
                    source.key, source.kind, "skipped", frames, faces, table, subject=source.subject, path=str(source.path)
                )
            )
        else:
            if overwrite and old is not None and old.get("table") and old["table"] != table:
                (out / old["table"]).unlink(missing_ok=True)  # our own table of the earlier run, under another name
            plan.append(source)
        entries[source.key] = entry
    ordered = sorted(entries.values(), key=lambda e: _natural(e["key"]))
    manifest["inputs"] = ordered
    write_manifest(out, manifest)

    try:
        if plan:
            if detector is None and workers == 1:
                detector = make_face_detector(options)
            _run_media(
                plan,
                predictor,
                options,
                detector,
                out,
                names,
                entries,
                manifest,
                summary,
                batch_size,
                workers,
                queue_frames,
                show_progress,
                shard,
            )
    finally:  # also after Ctrl-C: the manifest records the tables written so far
        manifest["complete"] = all(e["status"] != "pending" for e in entries.values())
        manifest["updated_at"] = utc_now()
        manifest["problems"] = summary.problems
        write_manifest(out, manifest)
    summary.outcomes.sort(key=lambda o: _natural(o.key))
    summary.seconds = time.perf_counter() - started
    return summary


def _natural(key: str) -> tuple:
    from aucli.media.sources import natural_key

    return natural_key(key)


def _created_by() -> str:
    from aucli import __version__

    return f"aucli {__version__}"


def _media_stream(
    plan: list, options, detector, workers: int, out: Path, shard: tuple[int, int] | None
) -> Iterator[tuple[int, Iterable]]:
    """``(position in plan, frames)`` per source, frames as ``(frame_index, timestamp, faces)``."""
    if workers > 1 and len(plan) > 1:
        from aucli.preprocess_workers import parallel_extractions

        anchor = out / (f".predict-{shard[0]}-of-{shard[1]}" if shard else ".predict")
        for position, (_source, frames) in enumerate(parallel_extractions(plan, options, workers, anchor)):
            yield position, frames
        return
    from aucli.faces.pipeline import extract_faces

    for position, source in enumerate(plan):
        yield position, ((r.frame_index, r.timestamp, r.faces) for r in extract_faces(source, options, detector=detector))


def _run_media(
    plan,
    predictor: Predictor,
    options,
    detector,
    out: Path,
    names,
    entries,
    manifest,
    summary: PredictSummary,
    batch_size: int,
    workers: int,
    queue_frames: int | None,
    show_progress: bool,
    shard,
) -> None:
    from aucli.console import progress, warn

    def produce(put: Callable[[object], bool]) -> None:
        for position, frames in _media_stream(plan, options, detector, workers, out, shard):
            failure = ""
            try:
                for frame_index, timestamp, faces in frames:
                    meta = [(int(f.track_id), float(f.score), np.asarray(f.box, np.float32)) for f in faces]
                    images = [predictor.prepare(f.crop) for f in faces]
                    if not put(_FrameItem(position, int(frame_index), float(timestamp), meta, images)):
                        return
            except MediaError as error:  # frames decoded before the damage are kept
                failure = str(error)
            if not put(_SourceEnd(position, failure)):
                return

    rows: dict[int, _SourceRows] = {}
    batch_images: list[torch.Tensor] = []
    batch_slots: list[tuple[int, int]] = []
    expected = {i: _expected_frames(source, options) for i, source in enumerate(plan)}
    last_manifest = time.perf_counter()

    def run_batch() -> None:
        if not batch_images:
            return
        tick = time.perf_counter()
        probs = predictor.probabilities(torch.stack(batch_images))
        summary.model_seconds += time.perf_counter() - tick
        for (position, row), p in zip(batch_slots, probs):
            rows[position].score(row, p)
        batch_images.clear()
        batch_slots.clear()

    def finish(position: int) -> None:
        nonlocal last_manifest
        source, acc = plan[position], rows.pop(position)
        entry = entries[source.key]
        table = names[source.key]
        outcome = InputOutcome(
            source.key, source.kind, "done", acc.n_frames, 0, table, subject=source.subject, path=str(source.path)
        )
        if acc.failure and acc.n_frames == 0:
            outcome.status, outcome.table, outcome.message = "failed", "", acc.failure
            entry.update(status="failed", message=acc.failure)
        else:
            rows_table = acc.table()
            write_table(
                out / table,
                rows_table,
                au_names=predictor.au_names,
                thresholds=predictor.thresholds,
                table_format=summary.table_format,
                metadata={
                    "key": source.key,
                    "checkpoint": predictor.identity["name"],
                    "weights_sha256": predictor.identity["weights_sha256"],
                    "au_names": predictor.au_names,
                    "thresholds": [float(t) for t in predictor.thresholds],
                },
            )
            outcome.faces = rows_table.n_faces
            if acc.failure:
                outcome.message = f"{acc.failure} Kept the {acc.n_frames} frame(s) decoded before the damage."
            elif outcome.faces == 0:
                what = "image" if source.kind == "image" else f"{acc.n_frames} sampled frame(s)"
                outcome.message = f"{source.key}: no face found in the {what}"
            entry.update(status="done", frames=outcome.frames, faces=outcome.faces, message=outcome.message)
        if outcome.message:
            warn(outcome.message)
            summary.problems.append(outcome.message)
        summary.outcomes.append(outcome)
        summary.predicted_frames += acc.n_frames
        if time.perf_counter() - last_manifest > MANIFEST_INTERVAL:
            write_manifest(out, manifest)
            last_manifest = time.perf_counter()

    def finish_ready() -> None:
        for position in [p for p, a in rows.items() if a.ready]:
            finish(position)

    producer = _Producer("aucli-predict-faces", max(int(queue_frames or 4 * batch_size), 1), produce)
    bar = progress()
    bar.disable = not show_progress
    done_frames = 0
    tick = time.perf_counter()
    with bar:
        task = bar.add_task("predict", total=sum(expected.values()) or None, rate="")
        producer.start()
        try:
            for item in producer.drain():
                if isinstance(item, _FrameItem):
                    acc = rows.setdefault(item.source, _SourceRows(len(predictor.au_names)))
                    for row, image in zip(acc.add_frame(item.frame, item.timestamp, item.faces), item.images):
                        batch_images.append(image)
                        batch_slots.append((item.source, row))
                    if len(batch_images) >= batch_size:
                        run_batch()
                        finish_ready()
                    done_frames += 1
                    if done_frames % 8 == 0:
                        bar.update(
                            task,
                            completed=done_frames,
                            rate=f"{done_frames / max(time.perf_counter() - tick, 1e-9):.1f} frames/s",
                        )
                    continue
                acc = rows.setdefault(item.source, _SourceRows(len(predictor.au_names)))
                acc.ended, acc.failure = True, item.failure
                source = plan[item.source]
                label = source.key if len(source.key) <= 40 else "..." + source.key[-37:]
                bar.update(task, description=label)
                if bar.tasks[task].total is not None and expected.get(item.source, 0) != acc.n_frames:
                    bar.update(task, total=bar.tasks[task].total - expected[item.source] + acc.n_frames)
                finish_ready()
            run_batch()
            finish_ready()
        finally:
            producer.stop()
            bar.update(task, completed=done_frames, rate=f"{done_frames / max(time.perf_counter() - tick, 1e-9):.1f} frames/s")


# ------------------------------------------------------------------------------------ store inputs
def is_store_path(path: str | Path) -> bool:
    """Whether an input names a corpus store (an ``.h5``/``.hdf5`` file)."""
    return Path(path).suffix.lower() in STORE_SUFFIXES


def default_run_name(identity: dict[str, Any]) -> str:
    """A run name from the checkpoint: its stem, with its folder's name for generic stems (``fold1-best``)."""
    path = Path(identity.get("path") or identity["name"])
    stem = path.stem
    if stem in ("best", "last", "final", "checkpoint", "model") and path.parent.name:
        stem = f"{path.parent.name}-{stem}"
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.") or "predictions"
    if not name[0].isalnum():
        name = "p" + name
    return name[:100]


def predict_store(
    store_path: str | Path,
    checkpoint: str | Path | Predictor,
    *,
    run_name: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    backbone_weights: str | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """Predict every face row of a store and write ``/predictions/<run>`` into it, atomically.

    Args:
        store_path: a corpus store made by ``aucli preprocess``.
        checkpoint: a checkpoint path or registry name, or a :class:`Predictor`.
        run_name: the run's name (default: from the checkpoint, see :func:`default_run_name`).
        batch_size, device, precision, backbone_weights: as :func:`predict_sources`.
        overwrite: replace a run of that name (by default an existing run of the same checkpoint
            over the same rows is kept and the store is skipped; a default-named run of another
            checkpoint gets a free name, ``NAME-2``).

    Returns:
        a :class:`PredictSummary` with one outcome (``table`` = ``/predictions/<run>``).
    """
    from aucli.console import progress
    from aucli.store.schema import check_name
    from aucli.store.store import CorpusStore

    started = time.perf_counter()
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if run_name is not None:
        check_name(run_name, "run name")
    store_path = Path(store_path).expanduser()
    with CorpusStore.open(store_path, "r"):
        pass  # a missing or foreign store fails before the model is loaded
    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    )
    summary = PredictSummary(
        out=None,
        checkpoint=predictor.identity,
        au_names=predictor.au_names,
        thresholds=[float(t) for t in predictor.thresholds],
        device=str(predictor.device),
        precision="bf16" if predictor.uses_bf16 else "fp32",
        table_format="store",
    )
    key = str(store_path)
    with CorpusStore.open(store_path, "r") as store:
        n_faces = store.n_faces
        n_frames = n_faces + store.n_noface
        name = run_name or default_run_name(predictor.identity)
        existing = store.runs("predictions")
        if name in existing:
            attrs = store.run_attrs("predictions", name)
            current = same_checkpoint(attrs.get("checkpoint"), predictor.identity) and int(attrs.get("n_faces", -1)) == n_faces
            if current and not overwrite:
                summary.outcomes.append(
                    InputOutcome(key, "store", "skipped", n_frames, n_faces, f"/predictions/{name}", path=key)
                )
                summary.seconds = time.perf_counter() - started
                return summary
            if not overwrite:
                if run_name is not None:
                    why = (
                        "another checkpoint"
                        if not same_checkpoint(attrs.get("checkpoint"), predictor.identity)
                        else "fewer faces (the store grew since)"
                    )
                    raise StoreError(
                        f"{store_path} already has predictions run {name!r} made with {why}; pass --overwrite to replace it or choose another --run-name"
                    )
                name = store.unique_run_name("predictions", name)
        probs = np.zeros((n_faces, len(predictor.au_names)), np.float32)
        transform = predictor.prepare

        def produce(put: Callable[[object], bool]) -> None:
            for start in range(0, n_faces, batch_size):
                stop = min(start + batch_size, n_faces)
                crops = store.images(slice(start, stop))
                if not put((start, torch.stack([transform(c) for c in crops]))):
                    return

        producer = _Producer("aucli-predict-store", 4, produce)
        bar = progress()
        bar.disable = not show_progress
        tick = time.perf_counter()
        with bar:
            task = bar.add_task(store_path.name, total=n_faces or None, rate="")
            producer.start()
            try:
                for start, images in producer.drain():
                    model_tick = time.perf_counter()
                    probs[start : start + images.shape[0]] = predictor.probabilities(images)
                    summary.model_seconds += time.perf_counter() - model_tick
                    done = start + images.shape[0]
                    bar.update(task, completed=done, rate=f"{done / max(time.perf_counter() - tick, 1e-9):.1f} faces/s")
            finally:
                producer.stop()
    decisions = (np.round(probs.astype(np.float64), 6) >= predictor.thresholds[None, :]).astype(np.int8)
    attrs = {
        "kind": "aucli predict",
        "checkpoint": predictor.identity,
        "au_names": predictor.au_names,
        "thresholds": [float(t) for t in predictor.thresholds],
        "precision": summary.precision,
        "device": summary.device,
        "batch_size": batch_size,
        "image_size": predictor.image_size,
    }
    arrays = {
        "probs": probs,
        "decisions": decisions,
        "thresholds": predictor.thresholds.astype(np.float64),
        "au_names": np.asarray(predictor.au_names, dtype=object),
    }
    with CorpusStore.open(store_path, "a") as store:
        if overwrite and name in store.runs("predictions"):
            temporary = store.unique_run_name("predictions", f"{name}-new")
            store.write_run("predictions", temporary, arrays, attrs)
            store.delete_run("predictions", name)
            store.rename_run("predictions", temporary, name)
        else:
            store.write_run("predictions", name, arrays, attrs)
    summary.outcomes.append(InputOutcome(key, "store", "done", n_frames, n_faces, f"/predictions/{name}", path=key))
    summary.predicted_frames += n_faces
    summary.seconds = time.perf_counter() - started
    return summary


# ------------------------------------------------------------------------------------ both
def run_predict(
    inputs: Sequence[str | Path],
    checkpoint: str | Path,
    out_dir: str | Path | None,
    *,
    run_name: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    backbone_weights: str | None = None,
    show_progress: bool = True,
    announce: Callable[[str], None] | None = None,
    **media_options: Any,
) -> PredictSummary:
    """``aucli predict``: stores (``.h5``) get ``/predictions/<run>``; media go to ``out_dir`` tables.

    The checkpoint is loaded once for all inputs. ``media_options`` are those of
    :func:`predict_sources` (face_options, table_format, shard, overwrite, workers, pattern, root).
    ``announce`` receives one line describing the checkpoint (its AU set) before any work.
    """
    stores = [Path(i) for i in inputs if is_store_path(i)]
    media = [i for i in inputs if not is_store_path(i)]
    missing = [s for s in stores if not s.is_file()]
    if missing:
        raise StoreError(f"{missing[0]}: no such store; create one with `aucli preprocess INPUTS --out {missing[0]}`")
    if media and out_dir is None:
        raise UsageError("videos, images and frame folders need --out DIR for their prediction tables")
    if stores and media_options.get("shard") is not None:
        raise UsageError("--shard splits media inputs; a store is predicted whole (give stores without --shard)")
    if out_dir is not None and not media:
        raise UsageError(
            "--out is the folder of media tables; a store's predictions go into the store (drop --out, or add media inputs)"
        )
    if run_name is not None and not stores:
        raise UsageError("--run-name names the /predictions run of a store input; no store (.h5) was given")
    if media:
        check_table_format(media_options.get("table_format", "csv"))
        parse_shard(media_options.get("shard"))
    predictor = Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    if announce is not None:
        announce(predictor.describe())
    summary: PredictSummary | None = None
    if media:
        summary = predict_sources(media, predictor, out_dir, batch_size=batch_size, show_progress=show_progress, **media_options)  # type: ignore[arg-type]
    for store in stores:
        part = predict_store(
            store,
            predictor,
            run_name=run_name,
            batch_size=batch_size,
            overwrite=bool(media_options.get("overwrite")),
            show_progress=show_progress,
        )
        if summary is None:
            summary = part
        else:
            summary.merge(part)
    assert summary is not None  # inputs is never empty (the CLI requires one)
    return summary


# ------------------------------------------------------------------------------------ rendering
def render_predict_summary(summary: PredictSummary) -> None:
    """Print the end-of-run summary: totals, the inputs of this run (up to 30), problems."""
    from rich.table import Table

    from aucli.console import console

    where = str(summary.out) if summary.out else "stores"
    shard = f", shard {summary.shard[0]}/{summary.shard[1]}" if summary.shard else ""
    totals = Table(title=f"Predict: {where}{shard}", show_header=True, header_style="bold")
    for column in ("inputs done", "skipped", "failed", "frames", "faces", "frames/s", "seconds"):
        totals.add_column(column, justify="right")
    totals.add_row(
        str(summary.count("done")),
        str(summary.count("skipped")),
        str(summary.count("failed")),
        str(summary.frames),
        str(summary.faces),
        f"{summary.frames_per_second:.1f}",
        f"{summary.seconds:.1f}",
    )
    console.print(totals)
    shown = [o for o in summary.outcomes if o.status != "skipped"]
    if shown and len(shown) <= 30:
        table = Table(show_header=True, header_style="bold")
        for column, justify in (
            ("input", "left"),
            ("status", "left"),
            ("frames", "right"),
            ("faces", "right"),
            ("written to", "left"),
            ("problem", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for o in shown:
            status = "[red]failed[/red]" if o.status == "failed" else o.status
            table.add_row(o.key, status, str(o.frames), str(o.faces), o.table, o.message, style=None)
        console.print(table)
    listed = {o.message for o in shown} if shown and len(shown) <= 30 else set()
    others = [p for p in summary.problems if p not in listed]
    if others:
        console.print(f"[yellow]{len(others)} problem(s):[/yellow]")
        for problem in others:
            console.print(f"  - {problem}", highlight=False, markup=False)
    console.print(
        f"AUs: {' '.join(summary.au_names)} (thresholds {', '.join(f'{t:.2f}' for t in summary.thresholds)})", highlight=False
    )
