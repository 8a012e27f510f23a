"""The renderer: each AU changes its own region of the face, grows with intensity, follows the side;
pose moves the landmarks as a head turns; rendering is fast."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from aucli.synth.recording import SUPERSAMPLE, subject_identity
from aucli.synth.face import FaceModel
from aucli.synth.facs import AU_EFFECTS, SYNTH_AUS, anchors
from aucli.synth.render import FaceRenderer, Framing, Light, Pose
from aucli.synth.scene import compose_frame, neutral_nuisance, sample_nuisance, sample_scene

R = 60.0  # canvas pixels per face unit


@pytest.fixture(scope="module")
def renderer() -> FaceRenderer:
    return FaceRenderer(FaceModel(subject_identity(0, 0, "F001"), R))


def _canvas(renderer: FaceRenderer, au: int | None = None, level: float = 5.0, side: int | None = None) -> np.ndarray:
    intensity = np.zeros((len(SYNTH_AUS), 2), np.float32)
    if au is not None:
        k = SYNTH_AUS.index(au)
        if side is None:
            intensity[k] = level
        else:
            intensity[k, side] = level
    rgba, _ = renderer.render_canvas(intensity, light=Light())
    return rgba[..., :3]


def _change(renderer: FaceRenderer, au: int, **kw) -> np.ndarray:
    return np.abs(_canvas(renderer, au, **kw) - _canvas(renderer)).sum(axis=2)


def _mass_in(change: np.ndarray, renderer: FaceRenderer, x_range: tuple[float, float], y_range: tuple[float, float]) -> float:
    xs, ys = renderer.canvas.grid()
    inside = ((ys >= y_range[0]) & (ys <= y_range[1]))[:, None] & ((xs >= x_range[0]) & (xs <= x_range[1]))[None, :]
    return float(change[inside].sum() / change.sum())


def test_every_au_has_maps_on_both_sides_and_an_effect(renderer: FaceRenderer) -> None:
    for au in SYNTH_AUS:
        assert (au, 0) in renderer.model.au_maps and (au, 1) in renderer.model.au_maps, au
        assert _change(renderer, au).sum() > 0, f"AU{au} changes nothing"
    assert set(AU_EFFECTS) == set(SYNTH_AUS)


def test_each_au_changes_its_own_region(renderer: FaceRenderer) -> None:
    i = renderer.identity
    a = anchors(i)
    brow_y = i.eye_y - i.brow_gap
    upper = (-1.0, 1.0), (i.hairline_y - 0.05, i.eye_y + 0.06)  # brows, forehead and upper lids
    eyes = (-1.0, 1.0), (brow_y - 0.05, i.eye_y + 0.2)
    cheeks = (-1.0, 1.0), (brow_y - 0.05, i.mouth_y + 0.12)
    nose = (-0.35, 0.35), (brow_y - 0.08, i.mouth_y)  # AU9 also pulls the inner brows down
    mouth = (-0.55, 0.55), (a["nose_tip"][1] - 0.05, i.chin_y + 0.2)
    smile = (-0.6, 0.6), (i.eye_y + 0.1, i.chin_y)  # AU12 raises the cheeks too
    expected = {1: upper, 2: upper, 4: upper, 6: cheeks, 7: eyes, 9: nose, 10: mouth, 12: smile, 14: mouth, 15: mouth, 17: mouth, 23: mouth, 24: mouth, 25: mouth, 26: mouth}
    for au, (xr, yr) in expected.items():
        share = _mass_in(_change(renderer, au), renderer, xr, yr)
        assert share > 0.8, f"AU{au}: only {share:.2f} of its change lies in its region"


def test_au1_is_medial_and_au2_lateral(renderer: FaceRenderer) -> None:
    xs, _ = renderer.canvas.grid()
    centre = {}
    for au in (1, 2):
        change = _change(renderer, au)
        centre[au] = float((change.sum(axis=0) * np.abs(xs)).sum() / change.sum())
    assert centre[1] + 0.08 < centre[2], centre


def test_effect_grows_with_intensity(renderer: FaceRenderer) -> None:
    for au in (4, 12, 17, 26):
        sizes = [float(_change(renderer, au, level=level).sum()) for level in (1, 2, 3, 4, 5)]
        assert all(b > a for a, b in zip(sizes, sizes[1:])), (au, sizes)


def test_unilateral_au_moves_one_side(renderer: FaceRenderer) -> None:
    # side 0 is the subject's right: image left, x < 0
    right = _change(renderer, 12, side=0)
    left = _change(renderer, 12, side=1)
    assert _mass_in(right, renderer, (-2.0, 0.0), (-2.0, 2.0)) > 0.85
    assert _mass_in(left, renderer, (0.0, 2.0), (-2.0, 2.0)) > 0.85


def test_identity_changes_more_than_an_au() -> None:
    a = FaceRenderer(FaceModel(subject_identity(0, 0, "F001"), R))
    b = FaceRenderer(FaceModel(subject_identity(0, 1, "M011"), R))
    between = float(np.abs(_canvas(a) - _canvas(b)).sum(axis=2).mean())
    largest_au = max(float(_change(a, au).mean()) for au in SYNTH_AUS)
    assert between > 5 * largest_au, (between, largest_au)


def test_pose_moves_landmarks_like_a_turning_head(renderer: FaceRenderer) -> None:
    framing = Framing.video(224)
    zero = np.zeros((len(SYNTH_AUS), 2), np.float32)
    _, points = renderer.render_canvas(zero)
    frontal = renderer.project_points(points, Pose(), framing)
    eye_mid = frontal[:2].mean(axis=0)
    assert abs(frontal[2, 0] - eye_mid[0]) < 1.0  # nose below the eyes' midpoint
    assert abs(frontal[0, 1] - frontal[1, 1]) < 1.5  # eyes level
    turned = renderer.project_points(points, Pose(yaw=20.0), framing)
    assert turned[2, 0] - turned[:2].mean(axis=0)[0] > 3.0  # nose swings to the image right
    for roll in (-15.0, 12.0):
        rolled = renderer.project_points(points, Pose(roll=roll), framing)
        d = rolled[1] - rolled[0]
        assert np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(roll, abs=1.5)
    lifted = renderer.project_points(points, Pose(pitch=15.0), framing)
    assert lifted[2, 1] - lifted[:2, 1].mean() < frontal[2, 1] - frontal[:2, 1].mean() - 2.0  # nose nearer the eyes


def test_rendered_landmarks_sit_on_the_drawn_eyes(renderer: FaceRenderer) -> None:
    """The ground-truth eye landmarks land on dark pixels (iris/pupil), not on skin."""
    identity = renderer.identity
    scene = sample_scene(np.random.default_rng(1), identity, 224)
    still = neutral_nuisance(1, 224)
    frame, truth = compose_frame(renderer, scene, still, 0, np.zeros((len(SYNTH_AUS), 2), np.float32), camera_effects=False)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    face_level = float(np.median(grey[int(truth.box[1]) : int(truth.box[3]), int(truth.box[0]) : int(truth.box[2])]))
    for x, y in truth.landmarks[:2]:
        patch = grey[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2]
        assert patch.min() < face_level - 25


def test_a_112_px_sequence_renders_every_frame_with_its_face_inside() -> None:
    """60 frames of a moving, lit scene at 112 px (the rendering speed is bench/synth_stats.py's step 3)."""
    identity = subject_identity(0, 0, "F001")
    renderer = FaceRenderer(FaceModel(identity, Framing.video(112).px_per_unit * SUPERSAMPLE))
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, identity, 112)
    nuisance = sample_nuisance(rng, 60, identity, size=112)
    intensity = np.zeros((len(SYNTH_AUS), 2), np.float32)
    intensity[[3, 7, 13]] = 3.0
    frames = []
    for t in range(60):
        frame, truth = compose_frame(renderer, scene, nuisance, t, intensity)
        assert frame.shape == (112, 112, 3) and frame.dtype == np.uint8
        assert np.all((truth.landmarks >= 0) & (truth.landmarks < 112))
        frames.append(frame)
    assert len({frame.tobytes() for frame in frames}) > 30  # the head moves: the frames differ
