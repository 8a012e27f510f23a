"""extract_faces end to end on real videos, frame folders and images written by the tests."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from media_fixtures import (
    astronaut,
    background,
    render_frame,
    write_face_video,
    write_frame_folder,
    write_truncated_video,
    write_video,
)

from aucli.errors import MediaError, ModelError, UsageError
from aucli.faces import FaceOptions, extract_faces, face_template, make_face_detector
from aucli.faces.detect import Detections
from aucli.faces.track import box_iou
from aucli.media import MediaSource, discover_sources


def _source(path: Path) -> MediaSource:
    found = discover_sources([path])
    assert found.problems == []
    return found.sources[0]


@pytest.fixture(scope="module")
def detector():
    """CenterFace at the defaults (detect width 320, retry at full size)."""
    return make_face_detector(FaceOptions(detector="centerface", threads=2))


@pytest.fixture(scope="module")
def full_detector():
    return make_face_detector(FaceOptions(detector="centerface", detect_width=None, threads=2))


@pytest.fixture(scope="module")
def moving_face(tmp_path_factory):
    """640x360, 30 frames: the face grows from a 36 px box (too small for the 320-wide pass) to
    180 px while moving; no face on frames 5, 6 (a pair) and 17 (a lone frame between keyframes)."""
    return write_face_video(
        tmp_path_factory.mktemp("pipeline") / "moving.mp4", n_frames=30, size=(640, 360), no_face=(5, 6, 17), scale_range=(0.15, 0.75)
    )


def test_defaults_keep_a_face_wherever_full_resolution_detection_finds_one(moving_face, detector, full_detector) -> None:
    source = _source(moving_face.path)
    reference = list(extract_faces(source, FaceOptions(detector="centerface", detect_width=None, detect_every=1), detector=full_detector))
    default = list(extract_faces(source, FaceOptions(detector="centerface"), detector=detector))
    assert [r.frame_index for r in reference] == [r.frame_index for r in default] == list(range(30))
    found_full = [bool(r.faces) for r in reference]
    assert found_full == moving_face.has_face  # the reference itself sees what was drawn
    assert [bool(r.faces) for r in default] == found_full  # no face lost, none invented
    carried = [not r.faces[0].detected for r in default if r.faces]
    assert 8 <= sum(carried) <= 15  # about every other frame was interpolated
    for ref, got in zip(reference, default):
        if ref.faces:
            assert box_iou(ref.faces[0].box, got.faces[0].box)[0, 0] > 0.7, ref.frame_index
            eye_distance = np.linalg.norm(ref.faces[0].landmarks[0] - ref.faces[0].landmarks[1])
            assert np.linalg.norm(ref.faces[0].landmarks - got.faces[0].landmarks, axis=1).mean() < 0.15 * eye_distance


def test_faces_are_aligned_on_carried_frames_too(moving_face, detector, full_detector) -> None:
    """Re-detecting on each crop (detected and interpolated alike) finds the eyes where the
    template puts them."""
    results = list(extract_faces(_source(moving_face.path), FaceOptions(detector="centerface"), detector=detector))
    faces = [r.faces[0] for r in results if r.faces and r.faces[0].frame_index >= 8]  # boxes >= 70 px
    assert any(not f.detected for f in faces)
    on_crops = full_detector.detect([f.crop for f in faces])
    template = face_template()
    for face, found in zip(faces, on_crops):
        assert face.crop.shape == (256, 256, 3) and face.crop.dtype == np.uint8
        assert len(found) == 1
        assert np.abs(found.landmarks[0, :2] - template[:2]).max() < 14, (face.frame_index, face.detected)
        assert face.track_id == 0


def test_every_fps_start_frame_and_timestamps(tmp_path: Path, detector) -> None:
    plan = write_face_video(tmp_path / "clip.mp4", n_frames=12)
    source = _source(plan.path)
    every = list(extract_faces(source, FaceOptions(detector="centerface", every=3), detector=detector))
    assert [r.frame_index for r in every] == [0, 3, 6, 9]
    assert [r.timestamp for r in every] == pytest.approx([0.0, 0.12, 0.24, 0.36])
    assert all(r.faces and r.faces[0].frame_index == r.frame_index for r in every)
    at_10fps = list(extract_faces(source, FaceOptions(detector="centerface", fps=10), detector=detector))
    assert [r.frame_index for r in at_10fps] == [0, 3, 5, 8, 10]
    resumed = list(extract_faces(source, FaceOptions(detector="centerface"), detector=detector, start_frame=7))
    assert [r.frame_index for r in resumed] == [7, 8, 9, 10, 11]


def test_bp4d_frame_folder_keeps_file_name_numbers(tmp_path: Path, detector) -> None:
    folder = tmp_path / "BP4D" / "F001" / "T1"
    write_frame_folder(folder, (2440, 2441, 2442, 2443, 2444, 2445), no_face=(2442,))
    source = _source(folder)
    assert (source.kind, source.subject, source.recording) == ("frames", "F001", "T1")
    results = list(extract_faces(source, FaceOptions(detector="centerface"), detector=detector))
    assert [r.frame_index for r in results] == [2440, 2441, 2442, 2443, 2444, 2445]
    assert [len(r.faces) for r in results] == [1, 1, 0, 1, 1, 1]
    assert all(math.isnan(r.timestamp) for r in results)


def test_single_images_with_and_without_a_face(tmp_path: Path, detector) -> None:
    cv2.imwrite(str(tmp_path / "astronaut.png"), astronaut()[..., ::-1])
    cv2.imwrite(str(tmp_path / "wall.png"), background(320, 240)[..., ::-1])
    found = discover_sources([tmp_path / "*.png"])
    results = {s.key: list(extract_faces(s, FaceOptions(detector="centerface"), detector=detector)) for s in found.sources}
    face = results["astronaut.png"]
    assert len(face) == 1 and face[0].frame_index == 0 and len(face[0].faces) == 1
    assert face[0].faces[0].crop.shape == (256, 256, 3)
    wall = results["wall.png"]
    assert len(wall) == 1 and wall[0].frame_index == 0 and wall[0].faces == []


def test_several_faces_selection_and_track_ids(tmp_path: Path, detector) -> None:
    """The subject (big face, right of centre) and a smaller face near the centre, both moving."""
    frames = []
    for i in range(8):
        frames.append(
            render_frame(640, 360, centre=(450 + 3 * i, 190), scale=1.3, code=i, others=(((250 - 2 * i, 170), 0.8),))
        )
    source = _source(write_video(tmp_path / "two.mp4", frames))

    def run(**kwargs) -> list:
        return list(extract_faces(source, FaceOptions(detector="centerface", **kwargs), detector=detector))

    largest = run()
    assert all(len(r.faces) == 1 and r.faces[0].track_id == 0 and r.faces[0].box[0] > 330 for r in largest)
    central = run(select="central")
    assert all(len(r.faces) == 1 and r.faces[0].box[2] < 330 for r in central)
    both = run(select="all")
    assert all(len(r.faces) == 2 for r in both)
    assert all([f.track_id for f in r.faces] == [0, 1] for r in both)
    assert all(r.faces[0].box[0] > 330 and r.faces[1].box[2] < 330 for r in both)
    capped = run(select="largest", max_faces=2)
    assert [[f.track_id for f in r.faces] for r in capped] == [[0, 1]] * 8


def test_truncated_video_yields_good_frames_then_raises(tmp_path: Path, detector) -> None:
    source = _source(write_truncated_video(tmp_path / "cut.mp4", keep=0.5, faststart=True, n_frames=20))
    seen = []
    with pytest.raises(MediaError, match="but the file declares 20; the file is truncated or damaged"):
        for result in extract_faces(source, FaceOptions(detector="centerface"), detector=detector):
            seen.append(result.frame_index)
    assert seen == list(range(len(seen))) and 0 < len(seen) < 20


def test_already_cropped_corpus_with_detector_none(tmp_path: Path) -> None:
    folder = tmp_path / "crops" / "S01"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.resize(astronaut()[40:200, 145:305], (112, 112))[..., ::-1])
    source = _source(folder)
    results = list(extract_faces(source, FaceOptions(detector="none", crop_size=224)))
    assert [r.frame_index for r in results] == [0, 1, 2]
    face = results[0].faces[0]
    assert face.crop.shape == (224, 224, 3) and face.score == 1.0 and face.track_id == 0
    assert np.allclose(face.box, [0, 0, 112, 112])
    expected = cv2.resize(cv2.imread(str(folder / "000.png"))[..., ::-1], (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(face.crop.astype(int) - expected).max() <= 1


def test_closing_early_stops_the_decode_thread(moving_face, detector) -> None:
    before = {t.name for t in threading.enumerate()}
    results = extract_faces(_source(moving_face.path), FaceOptions(detector="centerface", batch_size=2), detector=detector)
    assert next(results).frame_index == 0
    assert any(t.name.startswith("aucli-faces-") for t in threading.enumerate())
    results.close()
    alive = [t for t in threading.enumerate() if t.name.startswith("aucli-") and t.name not in before]
    assert alive == []


def test_a_detector_error_reaches_the_caller(moving_face) -> None:
    class Failing:
        name = "failing"

        def __init__(self) -> None:
            self.calls = 0

        def detect(self, images):
            self.calls += 1
            if self.calls > 1:
                raise ModelError("the detector broke")
            return [Detections.empty() for _ in images]

    seen = []
    with pytest.raises(ModelError, match="the detector broke"):
        for result in extract_faces(_source(moving_face.path), FaceOptions(batch_size=4), detector=Failing()):
            seen.append(result.frame_index)
    assert seen == list(range(len(seen)))


def test_bad_options_are_usage_errors(moving_face) -> None:
    source = _source(moving_face.path)
    cases = [
        (FaceOptions(detect_every=0), "detect_every must be >= 1, got 0."),
        (FaceOptions(every=2, fps=5.0), "Use either every or fps, not both."),
        (FaceOptions(select="biggest"), "Unknown face selection 'biggest'; choose one of largest, central, all."),  # type: ignore[arg-type]
        (FaceOptions(max_faces=0), "max_faces must be >= 1, got 0."),
        (FaceOptions(margin=-0.1), "margin must be between 0 and 1, got -0.1."),
    ]
    for options, message in cases:
        with pytest.raises(UsageError) as error:
            next(extract_faces(source, options))
        assert str(error.value) == message
