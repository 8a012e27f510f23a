"""Face detectors and alignment on real photos: the real CenterFace model, a tiny SCRFD-signature
ONNX model for the insightface path, and the ArcFace-template alignment with its margin."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from media_fixtures import astronaut, background

from aucli.errors import ModelError, UsageError
from aucli.faces import align_face, face_template, make_detector
from aucli.faces.align import ARCFACE_TEMPLATE, similarity_transform
from aucli.faces.detect import CenterFaceDetector, Detections, InsightFaceDetector, WholeImageDetector, find_insightface_model

#: Hand-annotated on skimage's astronaut photo (pixels): pupils, mouth corners, the top edge of
#: both brows, and the lowest point of the chin.
EYES = np.array([[202.5, 101.7], [245.8, 103.3]])
MOUTH = np.array([[201.7, 145.0], [240.0, 146.0]])
BROW_TOPS = np.array([[192, 92], [205, 89], [213, 90], [238, 91], [250, 91], [260, 94]], float)
CHIN = np.array([[223, 179]], float)


@pytest.fixture(scope="module")
def centerface_full() -> CenterFaceDetector:
    return make_detector("centerface", detect_width=None, threads=2)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return make_detector("centerface", threads=2)  # type: ignore[return-value]


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


# ---------------------------------------------------------------------------------------------
# CenterFace


@pytest.mark.parametrize("detect_width", [None, 320, 256])
def test_centerface_finds_the_astronaut(detect_width: int | None) -> None:
    detector = make_detector("centerface", detect_width=detect_width, threads=2)
    found = detector.detect([astronaut()])[0]
    assert len(found) == 1
    assert found.scores[0] > 0.8
    x1, y1, x2, y2 = found.boxes[0]
    assert 170 < x1 < 195 and 45 < y1 < 75 and 255 < x2 < 285 and 165 < y2 < 190
    landmarks = found.landmarks[0]
    # ArcFace order: image-left eye, image-right eye, nose, image-left mouth corner, image-right one
    assert np.abs(landmarks[:2] - EYES).max() < 6
    assert np.abs(landmarks[3:] - MOUTH).max() < 6
    assert landmarks[0, 1] < landmarks[2, 1] < landmarks[3, 1]
    assert x1 < landmarks[2, 0] < x2


def test_downscaled_detection_maps_back_to_full_resolution(centerface, centerface_full) -> None:
    canvas = background(1280, 720)
    canvas[150:662, 600:1112] = astronaut()  # a 1280x720 frame, the face about 120 px high
    small = centerface.detect([canvas])[0]  # detected at 320x180 (padded to 320x192)
    full = centerface_full.detect([canvas])[0]
    assert len(small) == len(full) == 1
    offset = np.array([600, 150])
    assert np.abs(full.landmarks[0, :2] - (EYES + offset)).max() < 6
    assert np.abs(small.landmarks[0, :2] - (EYES + offset)).max() < 8
    assert np.abs(small.boxes[0] - full.boxes[0]).max() < 12


def test_sizes_not_multiple_of_32_and_mixed_batches(centerface_full) -> None:
    odd = np.ascontiguousarray(astronaut()[5:338, 100:350])  # 333 x 250
    alone = [centerface_full.detect([image])[0] for image in (astronaut(), odd)]
    together = centerface_full.detect([astronaut(), odd])
    for single, batched in zip(alone, together):
        assert len(single) == len(batched) == 1
        assert np.abs(single.boxes - batched.boxes).max() < 2
        assert np.abs(single.landmarks - batched.landmarks).max() < 2
    # the crop's face is the astronaut's, shifted by the crop offset
    assert np.abs(together[1].landmarks[0, :2] - (EYES - [100, 5])).max() < 6


def test_no_face_on_a_plain_backdrop(centerface, centerface_full) -> None:
    for detector in (centerface, centerface_full):
        assert [len(d) for d in detector.detect([background(640, 360), background(200, 150)])] == [0, 0]
    assert centerface.detect([]) == []


def test_make_detector_rejects_bad_values() -> None:
    with pytest.raises(UsageError, match="Unknown detector 'retina'; choose one of auto, centerface, insightface, none."):
        make_detector("retina")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="threshold must be between 0 and 1, got 1.5."):
        make_detector("centerface", threshold=1.5)
    with pytest.raises(UsageError, match="detect_width must be at least 32"):
        make_detector("centerface", detect_width=8)


# ---------------------------------------------------------------------------------------------
# alignment


def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = np.deg2rad(17), 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = ARCFACE_TEMPLATE @ (scale * rotation).T + shift
    matrix = similarity_transform(ARCFACE_TEMPLATE, dst)
    assert np.allclose(matrix[:, :2], scale * rotation, atol=1e-6) and np.allclose(matrix[:, 2], shift, atol=1e-4)


def test_face_template_geometry() -> None:
    plain = face_template(112, 0.0, centre_y=56.0)
    assert np.allclose(plain, ARCFACE_TEMPLATE, atol=1e-4)
    template = face_template(256, 0.25)
    unit = 256 / (112 * 1.5)
    assert np.allclose(template[1, 0] - template[0, 0], (73.5318 - 38.2946) * unit, atol=1e-3)
    assert abs((template[0, 0] + template[1, 0]) / 2 - 128) < 0.5  # eyes centred horizontally


def test_align_face_puts_landmarks_on_the_template(centerface_full) -> None:
    landmarks = centerface_full.detect([astronaut()])[0].landmarks[0]
    crop, matrix = align_face(astronaut(), landmarks)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    moved = _transform(landmarks, matrix)
    # least squares: centroids coincide; the smiling mouth leaves a few pixels of residual
    assert np.allclose(moved.mean(0), face_template().mean(0), atol=1e-3)
    assert np.abs(moved - face_template()).max() < 6
    small, _ = align_face(astronaut(), landmarks, size=112, margin=0.0, centre_y=56.0)
    assert small.shape == (112, 112, 3)


@pytest.mark.parametrize("detect_width", [None, 320])
def test_margin_keeps_brows_and_chin_inside_every_random_224_crop(detect_width: int | None, centerface_full) -> None:
    """A random 224 crop of 256 keeps the band [32, 224] in both axes whatever its offset: the
    hand-annotated brow tops and chin must land there, and the face re-detected on the aligned
    crop must fit there too. The plain ArcFace crop (margin 0) fails both checks."""
    detector = make_detector("centerface", detect_width=detect_width, threads=2)
    landmarks = detector.detect([astronaut()])[0].landmarks[0]

    def keeps_face(margin: float, centre_y: float) -> bool:
        crop, matrix = align_face(astronaut(), landmarks, size=256, margin=margin, centre_y=centre_y)
        points = _transform(np.vstack([BROW_TOPS, CHIN]), matrix)
        found = centerface_full.detect([crop])[0]
        assert len(found) == 1
        box = found.boxes[0]
        return bool(np.all((points >= 32) & (points <= 224)) and np.all((box >= 32) & (box <= 224)))

    assert keeps_face(0.25, 66.0)  # the defaults
    assert not keeps_face(0.0, 56.0)  # ArcFace's own template cuts the chin
    assert not keeps_face(0.25, 56.0)  # the margin alone, centred on ArcFace's square, still does


# ---------------------------------------------------------------------------------------------
# insightface (SCRFD signature)


def _export_tiny_scrfd(path: Path) -> Path:
    """A tiny ONNX network with SCRFD-10g's input/output signature (input (1, 3, ?, ?); 9 outputs:
    scores (N, 1), boxes (N, 4), keypoints (N, 10) at strides 8, 16, 32 with 2 anchors per cell,
    N = H/s * W/s * 2). It 'finds a face' at every stride-32 cell whose mean grey is bright
    (score 1), nowhere else, with box distances 1.5 strides on each side and fixed keypoint
    offsets, so the expected output on a crafted image is known exactly."""
    import onnx
    import torch
    import torch.nn.functional as F

    keypoints = torch.tensor([[-0.5, -0.4, 0.5, -0.4, 0.0, 0.1, -0.4, 0.6, 0.4, 0.6]])
    distances = torch.tensor([[1.5, 1.5, 1.5, 1.5]])

    class TinySCRFD(torch.nn.Module):
        def forward(self, x: torch.Tensor):
            grey = x.mean(1, keepdim=True)  # SCRFD's input is (pixel - 127.5) / 128: white ~ 1
            scores, boxes, kps = [], [], []
            for stride in (8, 16, 32):
                cell = F.avg_pool2d(grey, stride, stride)
                logit = 20 * (cell - 0.5) if stride == 32 else cell * 0 - 20
                score = torch.sigmoid(logit).permute(0, 2, 3, 1).reshape(-1, 1)
                score = torch.stack([score, score], 1).reshape(-1, 1)  # 2 anchors per cell
                scores.append(score)
                boxes.append(score * 0 + distances)
                kps.append(score * 0 + keypoints)
            return (*scores, *boxes, *kps)

    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            TinySCRFD(),
            (torch.zeros(1, 3, 128, 160),),
            str(path),
            input_names=["input.1"],
            output_names=names,
            dynamic_axes={"input.1": {2: "height", 3: "width"}, **{name: {0: f"n_{name}"} for name in names}},
            opset_version=13,
            dynamo=False,
        )
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    for output, width in zip(model.graph.output, [1] * 3 + [4] * 3 + [10] * 3):
        output.type.tensor_type.shape.dim[1].dim_value = width
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def insightface_home(tmp_path_factory) -> Path:
    """A folder laid out like ~/.insightface/models with a buffalo_l pack holding the tiny SCRFD."""
    models = tmp_path_factory.mktemp("insightface") / "models"
    (models / "buffalo_l").mkdir(parents=True)
    _export_tiny_scrfd(models / "buffalo_l" / "det_10g.onnx")
    return models


def _bright_square_image() -> np.ndarray:
    """640x512 black image with a white 64x64 square at x 256..320, y 192..256. At detect width
    320 (scale 0.5) that square is the stride-32 cell (4, 3), whose anchor is (128, 96)."""
    image = np.zeros((512, 640, 3), np.uint8)
    image[192:256, 256:320] = 255
    return image


def test_insightface_scrfd_end_to_end(insightface_home: Path) -> None:
    detector = make_detector("insightface", models_dir=insightface_home, detect_width=320, threads=1)
    assert isinstance(detector, InsightFaceDetector)
    assert detector.model_path == insightface_home / "buffalo_l" / "det_10g.onnx"
    assert type(detector.model).__name__ == "SCRFD" and detector.model.use_kps  # insightface's own class
    found = detector.detect([_bright_square_image(), np.zeros((512, 640, 3), np.uint8)])
    assert [len(d) for d in found] == [1, 0]
    # anchor (128, 96) at detection scale, +-1.5 strides of 32 -> (80, 48, 176, 144); x2 to full size
    assert np.allclose(found[0].boxes[0], [160, 96, 352, 288], atol=1e-3)
    assert found[0].scores[0] > 0.99
    expected = (np.array([128, 96]) + np.array([[-0.5, -0.4], [0.5, -0.4], [0.0, 0.1], [-0.4, 0.6], [0.4, 0.6]]) * 32) * 2
    assert np.allclose(found[0].landmarks[0], expected, atol=1e-3)


def test_insightface_model_locations(insightface_home: Path) -> None:
    file = insightface_home / "buffalo_l" / "det_10g.onnx"
    assert find_insightface_model(insightface_home) == file  # a folder of packs
    assert find_insightface_model(insightface_home / "buffalo_l") == file  # a pack folder
    assert find_insightface_model(file) == file  # the file itself
    assert find_insightface_model(insightface_home / "nothing_here") is None


def test_auto_prefers_insightface_and_falls_back_to_centerface(insightface_home: Path, tmp_path: Path, monkeypatch) -> None:
    assert make_detector("auto", models_dir=insightface_home).name == "insightface"
    monkeypatch.setenv("HOME", str(insightface_home.parent))  # ~/.insightface/models -> nothing there
    assert find_insightface_model() is None
    assert make_detector("auto").name == "centerface"
    home = tmp_path / "home"
    (home / ".insightface").mkdir(parents=True)
    (home / ".insightface" / "models").symlink_to(insightface_home, target_is_directory=True)
    monkeypatch.setenv("HOME", str(home))
    assert make_detector("auto").name == "insightface"


def test_missing_insightface_pack_fails_at_once_without_network(tmp_path: Path, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the detector tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".insightface" / "models" / "buffalo_l").mkdir(parents=True)  # an existing, empty pack
    with pytest.raises(ModelError) as error:
        make_detector("insightface")
    where = tmp_path / ".insightface" / "models"
    assert str(error.value) == (
        f"No insightface detector model found under {where} (looked for det_*.onnx or scrfd*.onnx in it and in "
        f"its pack folders such as {where / 'buffalo_l'}). Unzip an insightface model pack there, for example "
        f"buffalo_l.zip from https://github.com/deepinsight/insightface/releases so that "
        f"{where / 'buffalo_l' / 'det_10g.onnx'} exists, or pass the folder or .onnx file with --detector-models, "
        f"or use --detector centerface (built in, no download)."
    )
    with pytest.raises(ModelError, match="No insightface detector model found under"):
        make_detector("auto", models_dir=tmp_path / "elsewhere")


def test_insightface_rejects_a_file_that_is_not_a_detector(tmp_path: Path) -> None:
    broken = tmp_path / "det_broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot be loaded as an insightface detector"):
        make_detector("insightface", models_dir=broken)


# ---------------------------------------------------------------------------------------------
# none


def test_none_detector_is_the_whole_image() -> None:
    detector = make_detector("none")
    assert isinstance(detector, WholeImageDetector)
    found = detector.detect([np.zeros((100, 80, 3), np.uint8)])[0]
    assert isinstance(found, Detections) and len(found) == 1
    assert np.allclose(found.boxes[0], [0, 0, 80, 100]) and found.scores[0] == 1.0
    assert np.allclose(found.landmarks[0], ARCFACE_TEMPLATE / 112 * [80, 100])
