"""``make_corpus``: a synthetic AU corpus with exact ground truth, in the layout of a real one.

Layouts (``CorpusConfig.layout``):

- ``bp4d``: subjects F001, M011, ... (official BP4D ids, balanced over the official folds), one
  recording per subject and task (T1..T8): ``videos/F001_T1.mp4`` (or, with ``frame_folders``,
  BP4D-style ``BP4D/F001/T1/2440.jpg`` numbered from a random start as BP4D's coded segments are)
  and ``BP4D/AUCoding/AU_OCC/F001_T1.csv``.
- ``disfa``: subjects SN002, SN013, ... (official DISFA ids), one recording per subject walking
  through the tasks: ``DISFA/Videos_LeftCamera/LeftVideoSN001_comp.mp4`` and
  ``DISFA/ActionUnit_Labels/SN001/SN001_au1.txt`` ... (every rendered AU).
- ``casme2`` (``--micro``): subjects sub01, ..., clips of neutral face with one micro-expression
  each: ``CASME2/CASME2_RAW/sub01/EP01_01/img46.jpg`` and ``CASME2/CASME2-coding.csv``.

Always: ``manifest.json`` (configuration, subjects with identity parameters and protocol
partition, recordings with their files, events and noise events, statistics), ``groundtruth.npz``
(per frame: continuous intensity per side, clean and noisy levels, noise reason, pose, landmarks,
face box, occlusion, ...) and ``noise_log.csv`` (every changed label). See :class:`CorpusManifest`.

Each recording is committed on its own (``parts/<id>.json`` written last), so an interrupted run
resumes where it stopped; the same configuration and seed give byte-identical label files,
manifest and ground truth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aucli import __version__
from aucli.aus import au_name
from aucli.errors import UsageError
from aucli.protocols import BP4D_PARTITIONS, DISFA_PARTITIONS, balanced_partitions
from aucli.synth.events import TARGET_RATES, TASKS
from aucli.synth.facs import SYNTH_AUS
from aucli.synth.identity import subject_ids
from aucli.synth.noise import REASONS, NoiseMix
from aucli.synth.recording import RecordingPlan, calibrated_thresholds, render_recording, subject_identity
from aucli.synth.writers import atomic_write_text, casme2_sheet, read_npz, write_json, write_npz

__all__ = ["CorpusConfig", "CorpusManifest", "SCHEMA_VERSION", "STORE_LABEL_SETS", "corpus_to_store", "make_corpus", "plan_recordings"]

SCHEMA_VERSION = 1
Layout = Literal["bp4d", "disfa", "casme2"]
_DEFAULT_FRAMES = {"bp4d": 250, "disfa": 1000, "casme2": 40}
#: How the corpus's files read (``manifest.json``'s ``conventions``).
CONVENTIONS = {
    "sides": "intensity[..., 0] is the subject's right (image left), [..., 1] the subject's left (CASME II R/L)",
    "levels": "FACS level 0-5 (1 = A, trace .. 5 = E); occurrence (BP4D) is level >= 1, DISFA's convention is level >= 2",
    "frame_number": "BP4D: the image number, or the 0-based video frame index for videos; DISFA: line k is video frame k-1; CASME II: the image number",
    "landmarks": "frame pixels, pixel centres at integers; image-left eye, image-right eye, nose tip, image-left and image-right mouth corner",
    "pose": "degrees; yaw > 0 turns the face towards the image right, pitch > 0 lifts the chin, roll > 0 is clockwise",
}


@dataclass
class CorpusConfig:
    """What to make. ``frames`` is per recording (BP4D: per task; DISFA: per subject; CASME II: per clip)."""

    out: Path
    subjects: int = 24
    seed: int = 0
    layout: Layout = "bp4d"
    tasks: tuple[str, ...] = tuple(TASKS)
    frames: int | None = None
    clips: int = 4
    size: int = 224
    fps: float = 25.0
    noise: str = "none"
    frame_folders: bool = False
    occlusion: float = 0.25
    pose_scale: float = 1.0
    crf: int = 18
    workers: int = 1

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.tasks = tuple(self.tasks)

    @property
    def n_frames(self) -> int:
        return int(self.frames if self.frames is not None else _DEFAULT_FRAMES[self.layout])

    def validate(self) -> NoiseMix:
        """Check every field; returns the parsed noise mix. Raises UsageError."""
        if self.layout not in _DEFAULT_FRAMES:
            raise UsageError(f"unknown layout {self.layout!r}; choose bp4d, disfa or casme2")
        if self.subjects < 1:
            raise UsageError(f"--subjects must be at least 1, got {self.subjects}")
        if self.size < 64 or self.size % 2:
            raise UsageError(f"--size must be an even number of pixels, at least 64, got {self.size}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise UsageError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise UsageError(f"--tasks names a task twice: {', '.join(self.tasks)}")
        minimum = 20 if self.layout == "casme2" else 2
        if self.n_frames < minimum:
            raise UsageError(f"--frames must be at least {minimum} for the {self.layout} layout, got {self.n_frames}")
        if self.clips < 1:
            raise UsageError(f"--clips must be at least 1, got {self.clips}")
        if not 1.0 <= self.fps <= 240.0:
            raise UsageError(f"--fps must be between 1 and 240, got {self.fps}")
        if not 0.0 <= self.occlusion <= 1.0:
            raise UsageError(f"occlusion rate must be between 0 and 1, got {self.occlusion}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.frame_folders and self.layout != "bp4d":
            raise UsageError("--frame-folders applies to the bp4d layout (casme2 always writes frame folders, disfa videos)")
        return NoiseMix.parse(self.noise)

    def settings(self) -> dict[str, Any]:
        """Everything that changes the output (not ``out`` nor ``workers``), JSON-ready."""
        d = dataclasses.asdict(self)
        d.pop("out")
        d.pop("workers")
        d["tasks"] = list(self.tasks)
        d["frames"] = self.n_frames
        d["noise"] = NoiseMix.parse(self.noise).to_spec()
        if self.layout == "casme2":
            d.pop("tasks")
        else:
            d.pop("clips")
        return d

    def fingerprint(self) -> str:
        payload = json.dumps({"settings": self.settings(), "schema": SCHEMA_VERSION, "version": __version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan_recordings(config: CorpusConfig) -> list[RecordingPlan]:
    """The recordings of a corpus, in manifest order."""
    ids = subject_ids(config.subjects, style=config.layout)
    plans: list[RecordingPlan] = []
    for s, subject in enumerate(ids):
        if config.layout == "bp4d":
            for k, task in enumerate(config.tasks):
                rid = f"{subject}_{task}"
                media = f"BP4D/{subject}/{task}" if config.frame_folders else f"videos/{rid}.mp4"
                kind: Literal["video", "frames"] = "frames" if config.frame_folders else "video"
                plans.append(
                    RecordingPlan(len(plans), rid, s, subject, task, (task,), k, media, kind, (f"BP4D/AUCoding/AU_OCC/{rid}.csv",), (f"BP4D/AUCoding/AU_OCC_clean/{rid}.csv",))
                )
        elif config.layout == "disfa":
            labels = tuple(f"DISFA/ActionUnit_Labels/{subject}/{subject}_au{au}.txt" for au in SYNTH_AUS)
            clean = tuple(f"DISFA/ActionUnit_Labels_clean/{subject}/{subject}_au{au}.txt" for au in SYNTH_AUS)
            stem = f"LeftVideo{subject}_comp"
            plans.append(RecordingPlan(len(plans), subject, s, subject, stem, config.tasks, 0, f"DISFA/Videos_LeftCamera/{stem}.mp4", "video", labels, clean))
        else:
            for c in range(config.clips):
                clip = f"EP{c + 1:02d}_01"
                plans.append(
                    RecordingPlan(
                        len(plans), f"{subject}_{clip}", s, subject, clip, (), c, f"CASME2/CASME2_RAW/{subject}/{clip}", "frames",
                        ("CASME2/CASME2-coding.csv",), ("CASME2/CASME2-coding-clean.csv",),
                    )
                )  # fmt: skip
    return plans


def _partitions(config: CorpusConfig, ids: Sequence[str]) -> tuple[list[list[str]], str]:
    official = {"bp4d": BP4D_PARTITIONS, "disfa": DISFA_PARTITIONS}.get(config.layout)
    if official is not None and set(ids) <= {s for p in official for s in p}:
        return [[s for s in p if s in ids] for p in official], f"{config.layout} official 3-fold partitions"
    if len(ids) >= 3:
        return [list(p) for p in balanced_partitions(ids, 3, seed=config.seed)], "balanced 3-fold partitions (aucli.protocols.balanced_partitions)"
    return [list(ids)], "too few subjects for folds"


@dataclass
class CorpusManifest:
    """A corpus on disk: ``manifest.json`` as ``data`` and lazily ``groundtruth.npz`` arrays.

    ``data`` keys: ``format``, ``schema_version``, ``aucli_version``, ``settings``, ``fingerprint``,
    ``aus``, ``layout``, ``fps``, ``size``, ``label_format``, ``subjects`` (id, sex, partition,
    identity), ``protocol``, ``recordings`` (id, subject, recording, tasks, media, media_kind,
    labels, n_frames, first_frame_number, rows [start, stop) in the arrays, pixels_sha256, events,
    noise_events, micro), ``statistics``, ``noise``, ``files``.

    Ground-truth arrays (rows = frames of all recordings in manifest order): ``recording`` (n,),
    ``frame`` (n,) 0-based index in its recording, ``frame_number`` (n,) the label files' frame
    number, ``intensity`` (n, n_aus, 2) float32 per side (subject's right, left), ``levels`` (n,
    n_aus) clean FACS level 0-5, ``noisy_levels`` (n, n_aus) as written to the label files (-1
    uncoded), ``noise_reason`` (n, n_aus) index into ``data["noise"]["reasons"]``, ``factors``
    (n, 6), ``pose`` (n, 3) yaw/pitch/roll degrees, ``translation`` (n, 3) dx/dy/scale,
    ``gaze`` (n, 2), ``blink`` (n,), ``occluder`` (n, 6), ``occluded`` (n,) fraction of the face
    box, ``landmarks`` (n, 5, 2) frame pixels (ArcFace order), ``face_box`` (n, 4) x1 y1 x2 y2.
    """

    root: Path
    data: dict[str, Any]
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)
    #: seconds spent rendering in the make_corpus call that returned this manifest (0 when loaded)
    render_seconds: float = 0.0
    #: recordings rendered by that call (the others were kept from an interrupted earlier run)
    rendered: int = 0

    @classmethod
    def load(cls, root: str | Path) -> CorpusManifest:
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise UsageError(f"{root} holds no synthetic corpus (no manifest.json); make one with `aucli synth --out {root}`")
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    @property
    def aus(self) -> list[str]:
        return list(self.data["aus"])

    @property
    def recordings(self) -> list[dict[str, Any]]:
        return list(self.data["recordings"])

    @property
    def subjects(self) -> list[dict[str, Any]]:
        return list(self.data["subjects"])

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            from aucli.synth.writers import read_npz

            self._arrays = read_npz(self.root / self.data["files"]["groundtruth"])
        return self._arrays

    def label_paths(self, *, clean: bool = False) -> list[Path]:
        """Every label file of the corpus (absolute), without duplicates: as written, or the exact ones."""
        key = "clean_labels" if clean else "labels"
        seen = dict.fromkeys(p for r in self.recordings for p in r[key])
        return [self.root / p for p in seen]

    def media_paths(self) -> list[Path]:
        return [self.root / r["media"] for r in self.recordings]


def _statistics(levels: np.ndarray, noisy: np.ndarray) -> dict[str, Any]:
    present = levels >= 1
    noisy_present = noisy >= 1
    known = noisy >= 0
    col = {au: k for k, au in enumerate(SYNTH_AUS)}

    def conditional(a: int, b: int) -> float | None:
        given = present[:, col[a]]
        return round(float(present[given, col[b]].mean()), 4) if given.any() else None

    pairs = [(6, 12), (1, 2), (4, 7), (17, 24), (12, 6), (2, 1), (23, 24), (25, 26)]
    return {
        "frames": int(levels.shape[0]),
        "occurrence": {au_name(au): round(float(present[:, k].mean()), 4) for au, k in col.items()},
        "occurrence_noisy": {
            au_name(au): round(float(noisy_present[known[:, k], k].mean()), 4) if known[:, k].any() else None for au, k in col.items()
        },
        "target": {au_name(au): TARGET_RATES[au] for au in SYNTH_AUS},
        "conditional": {f"P(AU{b}|AU{a})": conditional(a, b) for a, b in pairs},
    }


def _prepare_out(config: CorpusConfig, overwrite: bool) -> None:
    out = config.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    manifest = out / "manifest.json"
    parts = out / "parts"
    existing = None
    if manifest.is_file():
        existing = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
    elif parts.is_dir():
        fingerprints = {json.loads(p.read_text(encoding="utf-8")).get("fingerprint") for p in sorted(parts.glob("*.json"))[:1]}
        existing = next(iter(fingerprints), None)
    if existing is not None and existing != config.fingerprint():
        if not overwrite:
            raise UsageError(
                f"{out} holds a corpus made with other settings; use another --out, the same settings to resume, or --overwrite"
            )
        for name in ("manifest.json", "groundtruth.npz", "noise_log.csv", "parts", "videos", "BP4D", "DISFA", "CASME2"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def make_corpus(
    config: CorpusConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusManifest:
    """Render the corpus described by ``config`` into ``config.out`` and return its manifest.

    Resumes an interrupted run with the same settings (recordings already committed are kept);
    refuses a folder holding another corpus unless ``overwrite`` (which removes only the corpus's
    own files). ``progress(done, total)`` is called after each recording.
    """
    mix = config.validate()
    _prepare_out(config, overwrite)
    config.out.mkdir(parents=True, exist_ok=True)
    settings, fingerprint = config.settings(), config.fingerprint()
    plans = plan_recordings(config)
    records = _committed_records(config, plans, fingerprint)
    todo = [plan for plan in plans if plan.id not in records]
    started = time.perf_counter()
    thresholds = calibrated_thresholds(settings, plans)
    _render_all(config, todo, records, len(plans), thresholds, progress)
    render_seconds = time.perf_counter() - started
    arrays, recordings = _assemble(config, plans, records)
    data = _manifest_data(config, mix, thresholds, recordings, arrays)
    write_json(config.out / "manifest.json", data)
    return CorpusManifest(config.out, data, arrays, render_seconds, len(todo))


def _committed_records(config: CorpusConfig, plans: list[RecordingPlan], fingerprint: str) -> dict[str, dict[str, Any]]:
    """The part records of recordings an earlier run with the same settings committed, with their files present."""
    records: dict[str, dict[str, Any]] = {}
    for plan in plans:
        part = config.out / "parts" / f"{plan.id}.json"
        if not (part.is_file() and (config.out / plan.media).exists()):
            continue
        record = json.loads(part.read_text(encoding="utf-8"))
        files = [p for p in record["labels"] + record["clean_labels"] if "CASME2-coding" not in p]
        if record.get("fingerprint") == fingerprint and all((config.out / p).exists() for p in files):
            records[plan.id] = record
    return records


def _render_all(config: CorpusConfig, todo: list[RecordingPlan], records: dict[str, dict[str, Any]], total: int,
                thresholds: list[float] | None, progress: Callable[[int, int], None] | None) -> None:
    """Render ``todo`` (in ``config.workers`` processes), adding each part record to ``records``."""
    settings, fingerprint, out = config.settings(), config.fingerprint(), str(config.out)
    done = len(records)
    if progress:
        progress(done, total)
    if config.workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            futures = [pool.submit(render_recording, settings, out, plan, fingerprint, thresholds) for plan in todo]
            finished = ((plan, future.result()) for plan, future in zip(todo, futures))
            for plan, record in finished:
                records[plan.id] = record
                done += 1
                if progress:
                    progress(done, total)
        return
    for plan in todo:
        records[plan.id] = render_recording(settings, out, plan, fingerprint, thresholds)
        done += 1
        if progress:
            progress(done, total)


def _assemble(config: CorpusConfig, plans: list[RecordingPlan], records: dict[str, dict[str, Any]]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Ground truth, noise ledger and (CASME II) coding sheets from the parts; returns the arrays and the recordings."""
    chunks: dict[str, list[np.ndarray]] = {}
    recordings = []
    log_lines = ["recording,frame,frame_number,au,clean,noisy,reason"]
    rows = 0
    sheets: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for index, plan in enumerate(plans):
        record = dict(records[plan.id])
        part = read_npz(config.out / "parts" / f"{plan.id}.npz")
        n = int(record["n_frames"])
        part["recording"] = np.full(n, index, np.int32)
        part["frame"] = np.arange(n, dtype=np.int32)
        for key, value in part.items():
            chunks.setdefault(key, []).append(value)
        clean, noisy, reason = part["levels"], part["noisy_levels"], part["noise_reason"]
        frames, cols = np.nonzero(clean != noisy)
        for f, c in zip(frames, cols):
            log_lines.append(f"{plan.id},{f},{part['frame_number'][f]},{au_name(SYNTH_AUS[c])},{clean[f, c]},{noisy[f, c]},{REASONS[reason[f, c]]}")
        for sheet, row in zip(sheets, record.pop("casme2_rows")):
            if row:
                sheet.append(row)
        record.pop("fingerprint", None)
        record["rows"] = [rows, rows + n]
        rows += n
        recordings.append(record)
    arrays = {k: np.concatenate(v) for k, v in chunks.items()}
    write_npz(config.out / "groundtruth.npz", arrays)
    atomic_write_text(config.out / "noise_log.csv", "\n".join(log_lines) + "\n")
    if config.layout == "casme2":
        atomic_write_text(config.out / "CASME2" / "CASME2-coding.csv", casme2_sheet(sheets[0]))
        atomic_write_text(config.out / "CASME2" / "CASME2-coding-clean.csv", casme2_sheet(sheets[1]))
    return arrays, recordings


def _manifest_data(config: CorpusConfig, mix: NoiseMix, thresholds: list[float] | None, recordings: list[dict[str, Any]],
                   arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``manifest.json``: settings, conventions, protocol, subjects, recordings, statistics, noise (see :class:`CorpusManifest`)."""
    ids = subject_ids(config.subjects, style=config.layout)
    partitions, protocol_source = _partitions(config, ids)
    partition_of = {s: k for k, p in enumerate(partitions) for s in p}
    subjects = []
    for s, subject in enumerate(ids):
        identity = subject_identity(config.seed, s, subject)
        subjects.append({"id": subject, "sex": identity.sex, "partition": partition_of.get(subject), "identity": identity.to_dict()})
    changed = arrays["noisy_levels"] != arrays["levels"]
    by_reason = {name: int((arrays["noise_reason"][changed] == k).sum()) for k, name in enumerate(REASONS) if k > 0}
    calibration = None if thresholds is None else {
        "note": "per-AU thresholds on the latent propensity, set so that this corpus's clean occurrence rates equal the targets",
        "thresholds": {au_name(au): t for au, t in zip(SYNTH_AUS, thresholds)},
    }  # fmt: skip
    return {
        "format": "aucli-synth", "schema_version": SCHEMA_VERSION, "aucli_version": __version__, "settings": config.settings(),
        "fingerprint": config.fingerprint(), "layout": config.layout, "label_format": config.layout,
        "aus": [au_name(au) for au in SYNTH_AUS], "fps": config.fps, "size": config.size, "conventions": CONVENTIONS,
        "protocol": {"source": protocol_source, "partitions": partitions}, "calibration": calibration, "subjects": subjects,
        "recordings": recordings, "statistics": _statistics(arrays["levels"], arrays["noisy_levels"]),
        "noise": {"mix": mix.to_spec(), "changed_labels": int(changed.sum()), "by_reason": by_reason, "reasons": list(REASONS)},
        "files": {"groundtruth": "groundtruth.npz", "noise_log": "noise_log.csv"},
    }  # fmt: skip


#: Label set names a corpus gets in a store: the files as written (noisy) and the exact labels.
STORE_LABEL_SETS = ("synth", "synth_clean")


def corpus_to_store(
    manifest: CorpusManifest,
    store: str | Path,
    *,
    detector: str = "centerface",
    crop_size: int | None = None,
    show_progress: bool = True,
) -> Any:
    """Put a corpus into an HDF5 store through ``aucli.preprocess.run_preprocess``.

    The media are detected (``detector``: centerface, auto, insightface or none) and aligned as any
    real corpus; the label files as written become label set ``synth`` and the exact labels
    ``synth_clean`` (every rendered AU; DISFA's occurrence threshold 2). Returns the preprocess
    summary (with the ``synth`` import report); the second import's report is ``summary.clean_labels``.
    """
    from aucli.faces.pipeline import FaceOptions
    from aucli.labels.importer import import_labels
    from aucli.preprocess import run_preprocess
    from aucli.store.store import CorpusStore

    layout = manifest.data["layout"]
    options = FaceOptions(detector=detector) if crop_size is None else FaceOptions(detector=detector, crop_size=crop_size)
    aus = None if layout == "casme2" else manifest.aus
    noisy_name, clean_name = STORE_LABEL_SETS
    summary = run_preprocess(
        [str(p) for p in manifest.media_paths()],
        store,
        face_options=options,
        labels=[str(p) for p in manifest.label_paths()],
        label_format=layout,
        label_set_name=noisy_name,
        label_aus=aus,
        show_progress=show_progress,
    )
    with CorpusStore.open(store, "a") as opened:
        present = clean_name in opened.label_sets()
        summary.clean_labels = None if present else import_labels(opened, [str(p) for p in manifest.label_paths(clean=True)], layout, clean_name, au_names=aus)
    return summary
