"""Media discovery and decoding on real files written by PyAV and OpenCV (tests/media_fixtures.py)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from media_fixtures import (
    read_frame_code,
    render_frame,
    write_corrupt_video,
    write_face_video,
    write_frame_folder,
    write_not_media,
    write_truncated_video,
    write_video,
    write_zero_byte,
)

from aucli.errors import MediaError, UsageError
from aucli.media import discover_sources, file_digest, iter_frames, probe
from aucli.media.sources import natural_key


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames, 320x180, 25 fps, libx264 with B-frames; each frame carries its index."""
    return write_face_video(tmp_path_factory.mktemp("media") / "clip.mp4", n_frames=20).path


# ---------------------------------------------------------------------------------------------
# discovery


def test_discover_mixed_inputs_with_keys_subjects_and_problems(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_frame_folder(root / "BP4D" / "F001" / "T1", (1, 2))
    write_frame_folder(root / "BP4D" / "M007" / "T8", (5,))
    write_face_video(root / "DISFA" / "LeftVideoSN001_comp.avi", n_frames=3, codec="mpeg4")
    write_frame_folder(root / "CASME2" / "sub01" / "EP02_01f", (46, 47), digits=0)
    (root / "empty_folder").mkdir()
    write_zero_byte(root / "loose" / "zero.mp4")
    write_not_media(root / "loose" / "notes.csv")

    found = discover_sources(
        [
            str(root / "BP4D"),
            str(root / "DISFA" / "*.avi"),
            str(root / "CASME2"),
            str(root / "empty_folder"),
            str(root / "loose" / "zero.mp4"),
            str(root / "loose" / "notes.csv"),
            str(root / "missing.mp4"),
            str(root / "nothing" / "*.mov"),
        ]
    )
    by_key = {s.key: s for s in found.sources}
    assert sorted(by_key) == ["BP4D/F001/T1", "BP4D/M007/T8", "CASME2/sub01/EP02_01f", "DISFA/LeftVideoSN001_comp.avi"]
    assert (by_key["BP4D/F001/T1"].kind, by_key["BP4D/F001/T1"].subject, by_key["BP4D/F001/T1"].recording) == ("frames", "F001", "T1")
    assert (by_key["BP4D/M007/T8"].subject, by_key["BP4D/M007/T8"].recording) == ("M007", "T8")
    disfa = by_key["DISFA/LeftVideoSN001_comp.avi"]
    assert (disfa.kind, disfa.subject, disfa.recording) == ("video", "SN001", "LeftVideoSN001_comp")
    casme = by_key["CASME2/sub01/EP02_01f"]
    assert (casme.subject, casme.recording) == ("sub01", "EP02_01f")
    assert found.root == root.resolve()

    problems = "\n".join(found.problems)
    assert len(found.problems) == 5, problems
    assert f"{root / 'empty_folder'}: folder holds no frame images or videos" in problems
    assert f"{root / 'loose' / 'zero.mp4'}: empty file (0 bytes), skipped" in problems
    assert f"{root / 'loose' / 'notes.csv'}: not a video or image (extension '.csv'" in problems
    assert f"{root / 'missing.mp4'}: no such file or folder" in problems
    assert f"{root / 'nothing' / '*.mov'}: the pattern matched no file or folder" in problems


def test_discover_list_file_single_images_and_fallback_names(tmp_path: Path) -> None:
    import cv2

    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "alice.png"), render_frame(160, 120, centre=(80, 60), scale=0.5)[..., ::-1])
    write_face_video(tmp_path / "clips" / "bob.mp4", n_frames=2)
    listing = tmp_path / "inputs.txt"
    listing.write_text("# my corpus\nphotos/alice.png\n\nclips/*.mp4\nphotos/alice.png\n")

    found = discover_sources([listing])
    assert [(s.key, s.kind, s.subject, s.recording) for s in found.sources] == [
        ("clips/bob.mp4", "video", "bob", "bob"),
        ("photos/alice.png", "image", "alice", "alice"),
    ]
    assert found.problems == []


def test_discover_user_pattern_and_root(tmp_path: Path) -> None:
    write_face_video(tmp_path / "study" / "P07" / "session2.mp4", n_frames=2)
    write_face_video(tmp_path / "study" / "other" / "x.mp4", n_frames=2)
    found = discover_sources(
        [tmp_path / "study"], pattern=r"(?P<subject>P\d+)/(?P<recording>[^/]+)\.mp4$", root=tmp_path
    )
    assert [(s.key, s.subject, s.recording) for s in found.sources] == [("study/P07/session2.mp4", "P07", "session2")]
    assert len(found.problems) == 1
    assert found.problems[0].startswith(f"{(tmp_path / 'study' / 'other' / 'x.mp4').resolve()}: the subject pattern ")
    assert found.problems[0].endswith("does not match this path, skipped")

    with pytest.raises(UsageError, match="has no named group 'subject'"):
        discover_sources([tmp_path], pattern=r"P\d+")
    with pytest.raises(UsageError, match="not a valid regular expression"):
        discover_sources([tmp_path], pattern=r"(?P<subject>")


def test_natural_sort() -> None:
    names = ["img10.jpg", "img2.jpg", "img1.jpg", "Img3.jpg"]
    assert sorted(names, key=natural_key) == ["img1.jpg", "img2.jpg", "Img3.jpg", "img10.jpg"]


# ---------------------------------------------------------------------------------------------
# decoding


def test_video_indices_are_exact_decode_order(clip: Path) -> None:
    frames = list(iter_frames(clip))
    assert [f.index for f in frames] == list(range(20))
    assert [read_frame_code(f.image) for f in frames] == list(range(20))
    assert frames[0].image.shape == (180, 320, 3) and frames[0].image.dtype == np.uint8
    assert [round(f.timestamp, 6) for f in frames] == [round(i / 25, 6) for i in range(20)]
    # RGB order: the backdrop is bluer on the left than red (gradient in media_fixtures.background)
    left = frames[0].image[100:170, 5:30].reshape(-1, 3).mean(0)
    assert left[2] > left[0] + 20


def test_every_fps_and_start(clip: Path) -> None:
    every = list(iter_frames(clip, every=3))
    assert [f.index for f in every] == [0, 3, 6, 9, 12, 15, 18]
    assert [read_frame_code(f.image) for f in every] == [0, 3, 6, 9, 12, 15, 18]
    at_5fps = list(iter_frames(clip, fps=5))
    assert [f.index for f in at_5fps] == [0, 5, 10, 15]
    resumed = list(iter_frames(clip, every=2, start=7))
    assert [f.index for f in resumed] == [8, 10, 12, 14, 16, 18]
    with pytest.raises(UsageError, match="either every or fps"):
        list(iter_frames(clip, every=2, fps=5))
    with pytest.raises(UsageError, match="every must be >= 1"):
        list(iter_frames(clip, every=0))


def test_variable_frame_rate_video(tmp_path: Path) -> None:
    stamps = [0.0, 0.04, 0.08, 0.20, 0.24, 0.50, 0.52, 0.56, 1.00, 1.04]
    plan = write_face_video(tmp_path / "vfr.mp4", n_frames=len(stamps), timestamps=stamps)
    frames = list(iter_frames(plan.path))
    assert [f.index for f in frames] == list(range(len(stamps)))
    assert [read_frame_code(f.image) for f in frames] == list(range(len(stamps)))
    assert np.allclose([f.timestamp for f in frames], stamps, atol=1e-3)
    # 5 frames/s: the first frame at or after 0, 0.2, 0.4, ... s
    assert [f.index for f in iter_frames(plan.path, fps=5)] == [0, 3, 5, 8]


def test_probe(clip: Path, tmp_path: Path) -> None:
    info = probe(clip)
    assert (info.n_frames, info.n_frames_exact, info.fps, info.width, info.height) == (20, True, 25.0, 320, 180)
    write_frame_folder(tmp_path / "F001" / "T1", (2440, 2441, 2442), size=(160, 120))
    folder = probe(tmp_path / "F001" / "T1")
    assert (folder.n_frames, folder.fps, folder.width, folder.height, folder.numbering) == (3, None, 160, 120, "file-name")


def test_frame_folder_index_is_number_in_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "F001" / "T1"
    write_frame_folder(folder, (2440, 2441, 2442, 2450), size=(160, 120))
    frames = list(iter_frames(folder))
    assert [f.index for f in frames] == [2440, 2441, 2442, 2450]
    assert [read_frame_code(f.image) for f in frames] == [n % 1024 for n in (2440, 2441, 2442, 2450)]
    assert all(math.isnan(f.timestamp) for f in frames)
    assert [f.index for f in iter_frames(folder, every=2)] == [2440, 2442]
    assert [f.index for f in iter_frames(folder, start=2442)] == [2442, 2450]
    with pytest.raises(UsageError, match="fps sampling needs a video"):
        list(iter_frames(folder, fps=5))


def test_frame_folder_natural_order_casme_names(tmp_path: Path) -> None:
    folder = tmp_path / "sub01" / "EP02_01f"
    write_frame_folder(folder, (9, 10, 46, 100), size=(96, 64))
    for file in folder.iterdir():
        file.rename(folder / f"img{int(file.stem)}.jpg")
    assert [f.index for f in iter_frames(folder)] == [9, 10, 46, 100]


def test_frame_folder_without_numbers_uses_position(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_frame_folder(folder, (1, 2), size=(96, 64))
    (folder / "1.jpg").rename(folder / "first.jpg")
    (folder / "2.jpg").rename(folder / "second.jpg")
    assert [f.index for f in iter_frames(folder)] == [0, 1]
    assert probe(folder).numbering == "position"


def test_single_image_is_frame_zero(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "still.png"
    cv2.imwrite(str(path), render_frame(96, 64, centre=None, scale=0.3)[..., ::-1])
    frames = list(iter_frames(path))
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].image.shape == (64, 96, 3)
    assert probe(path).numbering == "single"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: write_zero_byte(p / "empty.mp4"), "empty file (0 bytes), not a video"),
        (lambda p: write_not_media(p / "notes.mp4"), "not a readable video"),
        (lambda p: write_corrupt_video(p / "corrupt.mp4"), "not a readable video"),
        (lambda p: write_truncated_video(p / "cut.mp4", faststart=False), "not a readable video"),
        (lambda p: write_not_media(p / "fake.jpg"), "not a decodable image"),
        (lambda p: write_zero_byte(p / "empty.png"), "empty file (0 bytes), not an image"),
        (lambda p: (p / "no_frames").mkdir() or p / "no_frames", "folder holds no frame images"),
    ],
    ids=["zero-byte-video", "text-as-video", "corrupt-video", "truncated-no-index", "text-as-image", "zero-byte-image", "empty-folder"],
)
def test_bad_inputs_raise_media_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(MediaError, match=re.escape(message)) as error:
        list(iter_frames(path))
    assert str(path) in str(error.value)


def test_truncated_video_with_index_raises_after_good_frames(tmp_path: Path) -> None:
    path = write_truncated_video(tmp_path / "cut.mp4", keep=0.5, faststart=True, n_frames=20)
    decoded = []
    with pytest.raises(MediaError, match=r"decoded \d+ frames but the file declares 20; the file is truncated"):
        for frame in iter_frames(path):
            decoded.append(frame.index)
    assert 0 < len(decoded) < 20
    assert decoded == list(range(len(decoded)))


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    plan = write_face_video(tmp_path / "phone.mp4", n_frames=4, rotation=rotation)
    frames = list(iter_frames(plan.path))
    assert [f.image.shape for f in frames] == [(180, 320, 3)] * 4  # upright, as recorded
    assert [read_frame_code(f.image) for f in frames] == [0, 1, 2, 3]
    assert (probe(plan.path).width, probe(plan.path).height) == (320, 180)


def test_mpeg4_avi_and_mkv(tmp_path: Path) -> None:
    frames = [render_frame(160, 96, centre=None, scale=0.3, code=i) for i in range(6)]
    for name, codec in (("a.avi", "mpeg4"), ("b.mkv", "libx264")):
        path = write_video(tmp_path / name, frames, codec=codec)
        decoded = list(iter_frames(path))
        assert [read_frame_code(f.image) for f in decoded] == list(range(6))
        assert probe(path).n_frames == 6


def test_file_digest(tmp_path: Path, clip: Path) -> None:
    small = tmp_path / "a.bin"
    small.write_bytes(b"x" * 1000)
    assert file_digest(small).startswith("sha256:") and file_digest(small) == file_digest(small)
    big = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 6 << 20, dtype=np.uint8).tobytes())
    big.write_bytes(bytes(data))
    first = file_digest(big)
    assert first.startswith("sampled-sha256:")
    data[-10] ^= 0xFF  # inside the sampled last block
    big.write_bytes(bytes(data))
    assert file_digest(big) != first
    folder = tmp_path / "F001" / "T1"
    write_frame_folder(folder, (1, 2, 3), size=(64, 48))
    before = file_digest(folder)
    assert before.startswith("folder-sha256:") and file_digest(folder) == before
    write_frame_folder(folder, (4,), size=(64, 48))
    assert file_digest(folder) != before
    assert file_digest(clip) != file_digest(small)


def test_a_named_frame_folder_is_keyed_by_its_own_name(tmp_path: Path) -> None:
    from aucli.preprocess import _rekey

    folder = tmp_path / "sub01" / "EP02_01f"
    write_frame_folder(folder, (1, 2), size=(96, 64))
    for named in (folder, tmp_path / "sub01"):
        found = _rekey(discover_sources([named]), [named])
        assert [s.key for s in found.sources] == ["EP02_01f"]
