"""Helpers that WRITE real media for tests: videos with a moving face, frame folders, bad files.

Everything is built from ``skimage.data.astronaut()`` (a public-domain photo with one frontal
face) pasted onto a plain, face-free background (:mod:`benchlib.media`, which the speed
benchmarks use too), and written with PyAV (libx264) or OpenCV, so tests run the real decoders
and the real detector. All helpers are deterministic and fast (a 20-frame 320x180 video takes
about 0.1 s to write).

Each video frame carries its own index in a barcode strip (``CODE_BITS`` black/white blocks along
the top edge, outside the face), so a test can check that a decoded frame's index is the frame
that was written: :func:`read_frame_code`.

Typical use::

    from media_fixtures import write_face_video, write_frame_folder  # tests/ is on sys.path
    plan = write_face_video(tmp_path / "clip.mp4", n_frames=20, no_face=(5, 6))
    plan.has_face[5]  # False
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib.media import (
    CODE_BITS,
    astronaut,
    background,
    face_patch,
    paste_face,
    read_frame_code,
    render_frame,
    write_video,
)

__all__ = [
    "CODE_BITS",
    "VideoPlan",
    "astronaut",
    "background",
    "face_patch",
    "paste_face",
    "render_frame",
    "read_frame_code",
    "set_mp4_rotation",
    "write_corrupt_video",
    "write_face_video",
    "write_frame_folder",
    "write_not_media",
    "write_truncated_video",
    "write_video",
    "write_zero_byte",
]

@dataclass
class VideoPlan:
    """What a generated video shows: per written frame, whether a face is there, where and how big."""

    path: Path
    width: int
    height: int
    fps: float
    has_face: list[bool]
    centres: list[tuple[float, float] | None]
    scales: list[float]
    timestamps: list[float]

    @property
    def n_frames(self) -> int:
        return len(self.has_face)


def set_mp4_rotation(path: Path, rotation: int) -> Path:
    """Write a display rotation into an mp4's track header (as phones do for portrait video):
    the decoder reports ``rotation`` (degrees counter-clockwise, a multiple of 90) and a player
    rotates the stored picture by it. Patches the tkhd matrix in place."""
    import struct

    path = Path(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    if at < 0:
        raise ValueError(f"{path}: no tkhd box (not an mp4 file?)")
    version = data[at + 4]
    offset = at + 8 + (32 if version == 1 else 20) + 8 + 8  # skip times, ids, layer/group/volume
    one = 0x10000
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1), -90: (0, -1)}[rotation]
    # ffmpeg reads rotation = atan2(b, a) for matrix [a b 0; c d 0; 0 0 1] and reports minus it
    a, b, c, d = cos * one, -sin * one, sin * one, cos * one
    data[offset : offset + 36] = struct.pack(">9I", *(v & 0xFFFFFFFF for v in (a, b, 0, c, d, 0, 0, 0, 0x40000000)))
    path.write_bytes(bytes(data))
    return path


def write_face_video(
    path: Path,
    *,
    n_frames: int = 20,
    size: tuple[int, int] = (320, 180),
    fps: float = 25.0,
    no_face: tuple[int, ...] = (),
    scale_range: tuple[float, float] = (0.55, 0.75),
    timestamps: list[float] | None = None,
    codec: str = "libx264",
    faststart: bool = False,
    rotation: int = 0,
) -> VideoPlan:
    """A video of the astronaut's face moving left to right and growing, with no face on the frames
    listed in ``no_face``; every frame carries its index as a barcode. ``scale_range`` is relative
    to a 180-pixel-high frame (0.55..0.75: face box about 66..90 px high at 320x180, 132..180 at
    640x360). ``rotation`` (mp4 only) stores each picture turned by ``-rotation`` degrees and
    marks the file with display rotation ``rotation``, like a phone's portrait video: decoded and
    rotated for display, the frames are the upright ones the plan describes."""
    width, height = size
    unit = height / 360.0
    has_face, centres, scales, images = [], [], [], []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        scale = (scale_range[0] + (scale_range[1] - scale_range[0]) * t) * unit * 2.0
        centre = (width * (0.35 + 0.3 * t), height * (0.5 + 0.05 * np.sin(6 * t)))
        present = i not in no_face
        images.append(render_frame(width, height, centre=centre if present else None, scale=scale, code=i))
        has_face.append(present)
        centres.append(centre if present else None)
        scales.append(scale)
    if rotation:
        images = [np.ascontiguousarray(np.rot90(image, k=-rotation // 90)) for image in images]
    write_video(path, images, fps=fps, codec=codec, timestamps=timestamps, faststart=faststart)
    if rotation:
        set_mp4_rotation(path, rotation)
    stamps = timestamps if timestamps is not None else [i / fps for i in range(n_frames)]
    return VideoPlan(Path(path), width, height, fps, has_face, centres, scales, list(stamps))


def write_frame_folder(
    folder: Path,
    numbers: list[int] | tuple[int, ...] = (2440, 2441, 2442, 2443, 2444),
    *,
    size: tuple[int, int] = (320, 240),
    ext: str = ".jpg",
    no_face: tuple[int, ...] = (),
    digits: int = 0,
) -> list[Path]:
    """A BP4D-style frame folder (e.g. ``F001/T1/2440.jpg``): one image per frame number, named by
    that number (zero-padded to ``digits``), each with the face (except numbers in ``no_face``)
    and the number as barcode. Returns the written files in number order."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    files = []
    for k, number in enumerate(numbers):
        centre = None if number in no_face else (width * (0.45 + 0.02 * k), height * 0.55)
        image = render_frame(width, height, centre=centre, scale=height / 240.0, code=number % (1 << CODE_BITS))
        file = folder / f"{number:0{digits}d}{ext}"
        cv2.imwrite(str(file), image[..., ::-1])
        files.append(file)
    return files


def write_truncated_video(path: Path, *, keep: float = 0.5, faststart: bool = True, n_frames: int = 20) -> Path:
    """A face video cut to ``keep`` of its bytes. With ``faststart`` the index survives, the file
    opens, and fewer frames decode than it declares; without it the index (at the end) is lost."""
    path = Path(path)
    write_face_video(path, n_frames=n_frames, faststart=faststart)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_corrupt_video(path: Path, *, n_frames: int = 20) -> Path:
    """A face video whose bytes after the first 48 are overwritten with fixed random garbage, so
    that neither container nor codec can make sense of it."""
    path = Path(path)
    write_face_video(path, n_frames=n_frames)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    data[48:] = rng.integers(0, 256, size=len(data) - 48, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def write_zero_byte(path: Path) -> Path:
    """An empty file (for example ``empty.mp4``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_not_media(path: Path) -> Path:
    """A text file; give it a media extension (``notes.mp4``) to test decoding, or another one
    (``notes.csv``) to test discovery."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("frame,AU12\n0,1\n1,0\nthis is not a video\n")
    return path
