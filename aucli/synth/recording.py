"""One recording of a synthetic corpus: its timeline, nuisance and scene, its frames, label files and part files.

Every recording draws from four independent random streams of its own (timeline, nuisance, scene,
noise; :func:`recording_streams`), seeded by the corpus seed, the subject and the recording, so a
recording renders the same wherever and in whatever order it is rendered (a resumed or parallel
run gives byte-identical files). :func:`render_recording` writes the media, the label files as a
coder delivered them (with the injected noise) and the exact ones, and the part files
``parts/<id>.npz`` (ground truth) and ``parts/<id>.json`` (written last: the recording is done).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aucli.synth.events import MicroEvent, TimelineModel, extract_events, sample_micro_clip
from aucli.synth.facs import SYNTH_AUS
from aucli.synth.face import FaceModel
from aucli.synth.identity import Identity, sample_identity
from aucli.synth.noise import NoiseMix, inject_noise
from aucli.synth.render import FaceRenderer, Framing
from aucli.synth.scene import Nuisance, Scene, compose_frame, sample_nuisance, sample_scene
from aucli.synth.writers import FrameFolderWriter, VideoWriter, atomic_write_text, bp4d_csv, disfa_files, write_json, write_npz

__all__ = ["SUPERSAMPLE", "RecordingPlan", "calibrated_thresholds", "recording_streams", "render_recording", "subject_identity"]

#: Supersampling of the face canvas relative to the frame.
SUPERSAMPLE = 1.25


@dataclass(frozen=True)
class RecordingPlan:
    """One recording to render: who, what, and where its files go (paths relative to ``out``)."""

    index: int
    id: str
    subject_index: int
    subject: str
    recording: str  # task (T1), clip (EP01_01) or the DISFA stem
    tasks: tuple[str, ...]
    local_index: int  # recording number within the subject
    media: str
    media_kind: Literal["video", "frames"]
    labels: tuple[str, ...]  # the (noisy) label files, as a coder delivered them
    clean_labels: tuple[str, ...]  # the same format with the exact labels


def subject_identity(seed: int, subject_index: int, subject: str) -> Identity:
    """The identity of subject number ``subject_index`` of a corpus made with ``seed``."""
    return sample_identity(np.random.default_rng([seed, 0, subject_index]), subject)


@lru_cache(maxsize=4)
def _face(seed: int, subject_index: int, subject: str, r: float) -> FaceRenderer:
    return FaceRenderer(FaceModel(subject_identity(seed, subject_index, subject), r))


@lru_cache(maxsize=4)
def _timeline_model(tasks: tuple[str, ...], fps: float) -> TimelineModel:
    return TimelineModel(tasks, fps=fps)


def _propensity(settings: dict[str, Any], plan: RecordingPlan, rng_time: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A recording's latent AU propensities (the first draws of its timeline stream)."""
    model = _timeline_model(tuple(settings["tasks"]), settings["fps"])
    effects = model.subject_effects(np.random.default_rng([settings["seed"], 1, plan.subject_index]))
    tasks = list(plan.tasks)
    if len(tasks) > 1:
        tasks = [tasks[i] for i in rng_time.permutation(len(tasks))]
    return model.propensity(rng_time, settings["frames"], tasks if len(tasks) > 1 else tasks[0], effects)


def recording_streams(seed: int, plan: RecordingPlan) -> list[np.random.Generator]:
    """Independent random streams of one recording: timeline, nuisance, scene, noise."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 2, plan.subject_index, plan.local_index]).spawn(4)]


def calibrated_thresholds(settings: dict[str, Any], plans: Sequence[RecordingPlan]) -> list[float] | None:
    """Per-AU thresholds that give the corpus exactly the target rates (None for micro clips)."""
    if settings["layout"] == "casme2":
        return None
    model = _timeline_model(tuple(settings["tasks"]), settings["fps"])
    propensities = [_propensity(settings, plan, recording_streams(settings["seed"], plan)[0])[0] for plan in plans]
    return [round(float(t), 12) for t in model.calibrate(propensities)]


def render_recording(settings: dict[str, Any], out: str, plan: RecordingPlan, fingerprint: str, thresholds: list[float] | None) -> dict[str, Any]:
    """Render one recording, write its media, label files and part files; return its part record."""
    root = Path(out)
    seed, size, fps, layout, n = settings["seed"], settings["size"], settings["fps"], settings["layout"], settings["frames"]
    mix = NoiseMix.parse(settings["noise"])
    identity = subject_identity(seed, plan.subject_index, plan.subject)
    rng_time, rng_nuisance, rng_scene, rng_noise = recording_streams(seed, plan)
    timeline, micro = _timeline(settings, plan, identity, rng_time, thresholds)
    still = layout == "casme2"  # CASME II participants were asked to keep still
    nuisance = sample_nuisance(
        rng_nuisance, n, identity, fps=fps, size=size,
        occlusion_rate=0.0 if still else settings["occlusion"], pose_scale=0.3 * settings["pose_scale"] if still else settings["pose_scale"],
    )  # fmt: skip
    scene = sample_scene(rng_scene, identity, size)
    first = (int(rng_scene.integers(1, 300)) if layout == "casme2" else int(rng_scene.integers(1, 2000))) if plan.media_kind == "frames" else 0
    renderer = _face(seed, plan.subject_index, plan.subject, Framing.video(size).px_per_unit * SUPERSAMPLE)
    noise = inject_noise(timeline.levels, mix, rng_noise, fps=fps)
    truth, digest = _render_frames(root / plan.media, settings, plan, renderer, scene, nuisance, timeline.intensity, first)
    frame_numbers = np.arange(first, first + n, dtype=np.int64)
    _write_label_files(root, layout, plan, noise.levels, timeline.levels, frame_numbers)
    sheet_rows: list[dict[str, Any] | None] = [None, None]
    if micro is not None:
        sheet_rows = [
            _casme2_row(plan, micro, timeline.levels, noise.levels, first, mix, rng_noise),
            _casme2_row(plan, micro, timeline.levels, timeline.levels, first, NoiseMix(), rng_noise),
        ]
    arrays = {
        "intensity": timeline.intensity, "levels": timeline.levels, "noisy_levels": noise.levels, "noise_reason": noise.reason,
        "factors": timeline.factors, **truth, "frame_number": frame_numbers, **nuisance.arrays(),
    }  # fmt: skip
    write_npz(root / "parts" / f"{plan.id}.npz", arrays)
    nominal = np.max(timeline.intensity, axis=2)
    record = {
        "id": plan.id, "subject": plan.subject, "recording": plan.recording, "tasks": list(plan.tasks), "media": plan.media,
        "media_kind": plan.media_kind, "labels": list(plan.labels), "clean_labels": list(plan.clean_labels), "n_frames": n,
        "first_frame_number": first, "pixels_sha256": digest, "events": [e.to_dict() for e in extract_events(timeline.levels, nominal)],
        "noise_events": noise.events, "micro": micro.to_dict() if micro is not None else None, "casme2_rows": sheet_rows,
        "fingerprint": fingerprint,
    }  # fmt: skip
    write_json(root / "parts" / f"{plan.id}.json", record)
    return record


def _timeline(settings: dict[str, Any], plan: RecordingPlan, identity: Identity, rng_time: np.random.Generator,
              thresholds: list[float] | None) -> tuple[Any, MicroEvent | None]:
    """The recording's AU timeline (and its micro-expression for a CASME II clip)."""
    if settings["layout"] == "casme2":
        return sample_micro_clip(rng_time, settings["frames"], fps=settings["fps"])
    model = _timeline_model(tuple(settings["tasks"]), settings["fps"])
    z, factors = _propensity(settings, plan, rng_time)
    return model.timeline(rng_time, z, factors, expressivity=identity.expressivity, thresholds=np.asarray(thresholds)), None


def _render_frames(path: Path, settings: dict[str, Any], plan: RecordingPlan, renderer: FaceRenderer, scene: Scene, nuisance: Nuisance,
                   intensity: np.ndarray, first: int) -> tuple[dict[str, np.ndarray], str]:
    """Render and write every frame; returns the per-frame truth (landmarks, face box, occlusion) and the pixels' sha256."""
    n = settings["frames"]
    writer: Any
    if plan.media_kind == "video":
        writer = VideoWriter(path, settings["size"], settings["fps"], crf=settings["crf"])
    else:
        writer = FrameFolderWriter(path, prefix="img" if settings["layout"] == "casme2" else "", first_number=first)
    truth = {"landmarks": np.zeros((n, 5, 2), np.float32), "face_box": np.zeros((n, 4), np.float32), "occluded": np.zeros(n, np.float32)}
    digest = hashlib.sha256()
    try:
        for t in range(n):
            frame, frame_truth = compose_frame(renderer, scene, nuisance, t, intensity[t])
            writer.write(frame)
            digest.update(frame.tobytes())
            truth["landmarks"][t] = frame_truth.landmarks
            truth["face_box"][t] = frame_truth.box
            truth["occluded"][t] = frame_truth.occluded
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return truth, digest.hexdigest()


def _write_label_files(root: Path, layout: str, plan: RecordingPlan, noisy: np.ndarray, clean: np.ndarray, frame_numbers: np.ndarray) -> None:
    """The BP4D or DISFA label files, as a coder delivered them and exact (CASME II's sheet is the corpus's)."""
    for paths, levels in ((plan.labels, noisy), (plan.clean_labels, clean)):
        if layout == "bp4d":
            atomic_write_text(root / paths[0], bp4d_csv(levels, frame_numbers, SYNTH_AUS))
        elif layout == "disfa":
            for path, text in zip(paths, disfa_files(levels, SYNTH_AUS, plan.subject).values()):
                atomic_write_text(root / path, text)


def _casme2_row(plan: RecordingPlan, micro: MicroEvent, clean: np.ndarray, noisy: np.ndarray, first: int, mix: NoiseMix, rng: np.random.Generator) -> dict[str, Any] | None:
    """The clip's coding-sheet row from the noisy labels (None when the coder missed it entirely)."""
    partner = {a: b for a, b in mix.pairs} | {b: a for a, b in mix.pairs}
    lo, hi = max(micro.onset - 3, 0), min(micro.offset + 4, clean.shape[0])
    codes = []
    for au, side in micro.aus:
        for candidate in (au, partner.get(au)):
            if candidate is None:
                continue
            k = SYNTH_AUS.index(candidate)
            if (noisy[lo:hi, k] >= 1).any():
                code = f"{side or ''}{candidate}"
                if code not in codes:
                    codes.append(code)
    if not codes:
        return None
    clean_rows = np.nonzero((clean[lo:hi] >= 1).any(axis=1))[0]
    noisy_rows = np.nonzero((noisy[lo:hi] >= 1).any(axis=1))[0]
    onset, offset = micro.onset, micro.offset
    if clean_rows.size and noisy_rows.size:
        onset = max(onset + int(noisy_rows[0] - clean_rows[0]), 0)
        offset = max(offset + int(noisy_rows[-1] - clean_rows[-1]), onset)
    apex = min(max(micro.apex, onset), offset)
    apex_text = "/" if rng.random() < mix.noapex else str(first + apex)
    return {
        "Subject": plan.subject[3:],
        "Filename": plan.recording,
        "OnsetFrame": first + onset,
        "ApexFrame": apex_text,
        "OffsetFrame": first + offset,
        "Action Units": "+".join(codes),
        "Estimated Emotion": micro.emotion,
    }
