"""Measured properties of the synthetic corpus (the issue's gates), shared by tests and the bench.

- :func:`occurrence_table`: occurrence rate per AU against the target (BP4D's table), and
  conditional rates P(b | a) against the unconditional P(b) for the co-occurring pairs;
- :func:`identity_dominance`: on aligned face crops, the mean pixel distance between the neutral
  faces of different subjects against the mean distance between one subject's neutral and apex
  frames (every AU at intensity 5, one at a time), same pose, light and background;
- :func:`detection_rate`: share of frames where a face detector (CenterFace) finds a face, and how
  far its landmarks are from the ground truth (in interocular distances).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aucli.synth.events import TARGET_RATES
from aucli.synth.facs import SYNTH_AUS

__all__ = [
    "CO_OCCURRING",
    "OccurrenceRow",
    "occurrence_table",
    "conditional_table",
    "IdentityDominance",
    "identity_dominance",
    "DetectionReport",
    "detection_rate",
]

#: (given, then) pairs whose conditional rate should be well above the unconditional one.
CO_OCCURRING: tuple[tuple[int, int], ...] = ((6, 12), (1, 2), (4, 7), (17, 24), (12, 6), (10, 12))


@dataclass(frozen=True)
class OccurrenceRow:
    au: int
    rate: float
    target: float

    @property
    def error(self) -> float:
        return self.rate - self.target


def occurrence_table(levels: np.ndarray, aus: Sequence[int] = SYNTH_AUS) -> list[OccurrenceRow]:
    """Occurrence (level >= 1) per AU over all frames; ``levels`` (n_frames, n_aus)."""
    present = np.asarray(levels) >= 1
    return [OccurrenceRow(au, float(present[:, k].mean()), TARGET_RATES[au]) for k, au in enumerate(aus)]


def conditional_table(levels: np.ndarray, pairs: Sequence[tuple[int, int]] = CO_OCCURRING, aus: Sequence[int] = SYNTH_AUS) -> list[tuple[int, int, float, float]]:
    """Rows (a, b, P(b | a), P(b)) for each pair."""
    present = np.asarray(levels) >= 1
    col = {au: k for k, au in enumerate(aus)}
    rows = []
    for a, b in pairs:
        given = present[:, col[a]]
        conditional = float(present[given, col[b]].mean()) if given.any() else float("nan")
        rows.append((a, b, conditional, float(present[:, col[b]].mean())))
    return rows


@dataclass
class IdentityDominance:
    """Mean absolute pixel differences (0-255) on aligned crops."""

    between_subjects: float  # neutral vs neutral, all pairs of different subjects
    within_subject: float  # neutral vs apex, mean over subjects and AUs
    within_by_au: dict[int, float] = field(default_factory=dict)
    n_subjects: int = 0

    @property
    def ratio(self) -> float:
        return self.between_subjects / max(self.within_subject, 1e-9)

    @property
    def worst_ratio(self) -> float:
        """Against the AU that changes a face most."""
        return self.between_subjects / max(max(self.within_by_au.values()), 1e-9)


def _gate_scene(identity, size: int):
    from aucli.synth.render import Framing, Light
    from aucli.synth.scene import Scene

    return Scene(
        size=size,
        framing=Framing.video(size),
        background=np.full((size, size, 3), 0.45, np.float32),
        light=Light(),
        gain=1.0,
        contrast=1.0,
        gamma=1.0,
        cast=np.ones(3, np.float32),
        noise_sigma=0.0,
        blur_sigma=0.0,
        noise_bank=np.zeros((1, size + 16, size + 16, 3), np.float32),
    )


def identity_dominance(n_subjects: int = 8, *, seed: int = 0, frame_size: int = 224, crop_size: int = 112) -> IdentityDominance:
    """Render neutral and apex faces of ``n_subjects`` subjects, align them, compare pixels.

    Frames are frontal, with the same light and a plain background for everyone, so only identity
    (between) or the AU (within) differs. Crops go through :func:`aucli.faces.align.align_face`
    with the ground-truth landmarks (25% margin), as the store's crops would.
    """
    from aucli.faces.align import align_face
    from aucli.synth.recording import SUPERSAMPLE, subject_identity
    from aucli.synth.face import FaceModel
    from aucli.synth.identity import subject_ids
    from aucli.synth.render import FaceRenderer, Framing
    from aucli.synth.scene import compose_frame, neutral_nuisance

    if n_subjects < 2:
        raise ValueError("identity dominance needs at least two subjects")
    still = neutral_nuisance(1, frame_size)
    neutral_crops = []
    within: dict[int, list[float]] = {au: [] for au in SYNTH_AUS}
    for s, subject in enumerate(subject_ids(n_subjects)):
        identity = subject_identity(seed, s, subject)
        renderer = FaceRenderer(FaceModel(identity, Framing.video(frame_size).px_per_unit * SUPERSAMPLE))
        scene = _gate_scene(identity, frame_size)
        zero = np.zeros((len(SYNTH_AUS), 2), np.float32)
        frame, truth = compose_frame(renderer, scene, still, 0, zero, camera_effects=False)
        crop, _ = align_face(frame, truth.landmarks, size=crop_size)
        neutral = crop.astype(np.float32)
        neutral_crops.append(neutral)
        for k, au in enumerate(SYNTH_AUS):
            apex = zero.copy()
            apex[k] = 5.0
            frame_a, truth_a = compose_frame(renderer, scene, still, 0, apex, camera_effects=False)
            # same alignment as the neutral frame: the AU must not move the crop itself
            crop_a, _ = align_face(frame_a, truth.landmarks, size=crop_size)
            within[au].append(float(np.abs(crop_a.astype(np.float32) - neutral).mean()))
    between = [float(np.abs(a - b).mean()) for i, a in enumerate(neutral_crops) for b in neutral_crops[i + 1 :]]
    by_au = {au: float(np.mean(v)) for au, v in within.items()}
    return IdentityDominance(float(np.mean(between)), float(np.mean(list(by_au.values()))), by_au, n_subjects)


@dataclass
class DetectionReport:
    frames: int
    found: int
    landmark_error: float  # median distance to the ground truth, in interocular distances
    missed_occluded: int  # missed frames with an occluder over the face

    @property
    def rate(self) -> float:
        return self.found / max(self.frames, 1)


def detection_rate(frames: Sequence[np.ndarray], landmarks: np.ndarray, occluded: np.ndarray, detector, *, batch: int = 8) -> DetectionReport:
    """Run ``detector`` (an :mod:`aucli.faces.detect` detector) on RGB ``frames``.

    ``landmarks`` (n, 5, 2) ground truth, ``occluded`` (n,) occluded fraction of the face box.
    """
    found = 0
    errors = []
    missed_occluded = 0
    for start in range(0, len(frames), batch):
        results = detector.detect(list(frames[start : start + batch]))
        for offset, result in enumerate(results):
            i = start + offset
            if len(result):
                found += 1
                truth = landmarks[i]
                iod = float(np.linalg.norm(truth[1] - truth[0]))
                errors.append(float(np.linalg.norm(result.landmarks[0] - truth, axis=1).mean()) / max(iod, 1e-6))
            elif occluded[i] > 0.02:
                missed_occluded += 1
    return DetectionReport(len(frames), found, float(np.median(errors)) if errors else float("nan"), missed_occluded)
