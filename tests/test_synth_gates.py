"""The issue's measured gates on small samples: identity dominates AU changes on aligned crops, and the
real CenterFace detector finds the rendered faces."""

from __future__ import annotations

import numpy as np

from aucli.faces.detect import make_detector
from aucli.synth.recording import SUPERSAMPLE, subject_identity
from aucli.synth.face import FaceModel
from aucli.synth.facs import SYNTH_AUS
from benchlib.synth_gates import detection_rate, identity_dominance
from aucli.synth.identity import subject_ids
from aucli.synth.render import FaceRenderer, Framing
from aucli.synth.scene import compose_frame, sample_nuisance, sample_scene


def test_identity_dominates_au_changes() -> None:
    result = identity_dominance(4, seed=1, frame_size=160, crop_size=112)
    assert result.n_subjects == 4 and set(result.within_by_au) == set(SYNTH_AUS)
    assert all(v > 0 for v in result.within_by_au.values()), result.within_by_au
    assert result.ratio >= 2.0, result
    assert result.worst_ratio >= 2.0, result  # even against the AU that changes a face most


def test_centerface_finds_rendered_faces() -> None:
    """Frames as the corpus makes them (random pose, light, background, blur, noise, occluders)."""
    detector = make_detector("centerface", threads=2)
    frames, landmarks, occluded = [], [], []
    for s, subject in enumerate(subject_ids(4)):
        identity = subject_identity(7, s, subject)
        rng = np.random.default_rng([7, s])
        renderer = FaceRenderer(FaceModel(identity, Framing.video(224).px_per_unit * SUPERSAMPLE))
        scene = sample_scene(rng, identity, 224)
        nuisance = sample_nuisance(rng, 60, identity, size=224)
        for t in range(0, 60, 10):
            intensity = np.zeros((len(SYNTH_AUS), 2), np.float32)
            intensity[rng.choice(len(SYNTH_AUS), 3, replace=False)] = rng.uniform(1, 5)
            frame, truth = compose_frame(renderer, scene, nuisance, t, intensity)
            frames.append(frame)
            landmarks.append(truth.landmarks)
            occluded.append(truth.occluded)
    report = detection_rate(frames, np.stack(landmarks), np.array(occluded), detector)
    assert report.frames == 24
    assert report.rate >= 0.9, report
    assert report.landmark_error < 0.25, report  # CenterFace's landmarks agree with the ground truth
