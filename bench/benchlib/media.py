"""A synthetic face video for the speed benchmarks (``bench/predict_speed.py``, ``bench/preprocess_speed.py``).

Frames are ``skimage.data.astronaut()`` (a public-domain photo with one frontal face) pasted onto a
plain, face-free background and encoded with PyAV (libx264), so the real decoders and the real
detector run on them. Each frame can carry its own index in a barcode strip along the top edge
(:func:`read_frame_code`). The tests write their media with the same functions
(``tests/media_fixtures.py``).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "CODE_BITS",
    "astronaut",
    "background",
    "face_patch",
    "paste_face",
    "read_frame_code",
    "render_frame",
    "write_bench_video",
    "write_video",
]

#: Bits of the frame-index barcode drawn along the top edge of every generated video frame.
CODE_BITS = 10
_CODE_HEIGHT = 8


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    """skimage's astronaut photo, (512, 512, 3) uint8 RGB; one face, box about (181, 58)-(270, 178)."""
    from skimage import data

    image = data.astronaut()
    image.setflags(write=False)
    return image


@lru_cache(maxsize=1)
def face_patch() -> np.ndarray:
    """The astronaut's head and shoulders, (240, 200, 3) uint8 RGB; face centre near (95, 100)."""
    patch = astronaut()[10:250, 125:325].copy()
    patch.setflags(write=False)
    return patch


def background(width: int, height: int) -> np.ndarray:
    """A smooth, face-free backdrop (H, W, 3) uint8: a colour gradient with fixed noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    image = np.stack([90 + 60 * x / width, 110 + 40 * y / height, 140 - 50 * x / width], axis=2)
    image += rng.normal(0, 4, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_code(image: np.ndarray, number: int) -> None:
    width = image.shape[1]
    block = width // CODE_BITS
    for bit in range(CODE_BITS):
        value = 255 if (number >> bit) & 1 else 0
        image[:_CODE_HEIGHT, bit * block : (bit + 1) * block] = value


def read_frame_code(image: np.ndarray) -> int:
    """The frame number a generated frame carries in its top barcode (robust to compression)."""
    width = image.shape[1]
    block = width // CODE_BITS
    number = 0
    for bit in range(CODE_BITS):
        cell = image[1 : _CODE_HEIGHT - 1, bit * block + 2 : (bit + 1) * block - 2]
        if cell.mean() > 127:
            number |= 1 << bit
    return number


def paste_face(frame: np.ndarray, centre: tuple[float, float], scale: float) -> np.ndarray:
    """Paste the face patch scaled by ``scale`` (face box about 120*scale px high) into ``frame``
    (in place) with the face centred at ``centre`` (x, y); returns the frame."""
    import cv2

    height, width = frame.shape[:2]
    patch = cv2.resize(np.asarray(face_patch()), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ph, pw = patch.shape[:2]
    x0 = int(round(centre[0] - 95 * scale))
    y0 = int(round(centre[1] - 100 * scale))
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + pw, width), min(y0 + ph, height)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return frame


def render_frame(
    width: int,
    height: int,
    *,
    centre: tuple[float, float] | None,
    scale: float,
    code: int | None = None,
    others: tuple[tuple[tuple[float, float], float], ...] = (),
) -> np.ndarray:
    """One frame: the face patch scaled by ``scale`` (face box about 120*scale px high) with its
    face centred at ``centre`` (x, y) pixels, or no face when ``centre`` is None; more faces as
    ``others`` ((centre, scale), ...) pasted first; optional barcode."""
    frame = background(width, height)
    for other_centre, other_scale in others:
        paste_face(frame, other_centre, other_scale)
    if centre is not None:
        paste_face(frame, centre, scale)
    if code is not None:
        _draw_code(frame, code)
    return frame


def write_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    timestamps: list[float] | None = None,
    faststart: bool = False,
) -> Path:
    """Encode RGB frames with PyAV. ``timestamps`` (seconds, increasing) make a variable-frame-rate
    file (time base 1/1000). ``faststart`` puts the mp4 index first (then a truncated file still
    opens and decodes its first frames)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "veryfast"}
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if timestamps is not None:
                frame.pts = int(round(timestamps[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_bench_video(path: Path, n_frames: int, width: int, height: int) -> int:
    """The speed benchmarks' video: a face that grows (box about 100 -> 180 px at 360 px high) and
    drifts across the frame, absent from every 10th frame; returns the number of frames with a face."""
    frames, with_face = [], 0
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        scale = (0.85 + 0.65 * t) * height / 360
        centre = (width * (0.3 + 0.4 * t), height * (0.5 + 0.06 * np.sin(12 * t)))
        present = i % 10 != 9
        with_face += present
        frames.append(render_frame(width, height, centre=centre if present else None, scale=scale))
    write_video(path, frames, fps=25.0)
    return with_face
