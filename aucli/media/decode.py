"""Decode frames from videos, frame folders and single images, with exact frame indices.

Frame-index conventions (labels are matched to frames by these numbers):
- video: 0-based position in the decoder's output order, counting every decoded frame (also the
  ones ``every``/``fps`` skip), so index k is the (k+1)-th frame of the file whatever its frame
  rate, variable frame rates included. ``timestamp`` is ``pts * time_base`` in seconds. A display
  rotation in the file (phones' portrait videos) is applied, so frames come out upright, as a
  player shows them; ``probe`` reports the upright width and height.
- frame folder: the number in the file name (BP4D ``2440.jpg`` -> 2440, CASME II ``img46.jpg`` ->
  46; the last digit run of the stem), when every frame file has one and they are unique;
  otherwise the 0-based position in natural order. ``timestamp`` is NaN (a folder has no clock).
- single image: index 0, timestamp NaN.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from aucli.errors import MediaError, UsageError
from aucli.media.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaSource, list_frame_files

__all__ = ["Frame", "MediaInfo", "file_digest", "frame_numbers", "iter_frames", "probe", "read_image"]

_LAST_DIGITS = re.compile(r"(\d+)(?!.*\d)")


@dataclass
class Frame:
    """One decoded frame: ``image`` is (H, W, 3) uint8 RGB."""

    index: int
    timestamp: float
    image: np.ndarray


@dataclass
class MediaInfo:
    """What ``probe`` learns without decoding everything.

    ``n_frames`` is exact when ``n_frames_exact`` (frame folders, images, most mp4/mov files) and
    an estimate from duration x rate otherwise; ``fps`` is None where there is no clock.
    ``numbering`` says how frame indices are made (see the module docstring).
    """

    n_frames: int
    n_frames_exact: bool
    fps: float | None
    width: int
    height: int
    numbering: Literal["decode-order", "file-name", "position", "single"]


def _as_path_kind(source: MediaSource | str | Path) -> tuple[Path, str]:
    if isinstance(source, MediaSource):
        return Path(source.path), source.kind
    path = Path(source)
    if path.is_dir():
        return path, "frames"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return path, "image"
    if suffix in VIDEO_EXTENSIONS:
        return path, "video"
    raise MediaError(f"{path}: not a video, image or frame folder (extension {suffix or 'none'!r}).")


# ----------------------------------------------------------------------------------------------
# images and frame folders


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey and alpha are converted).

    Raises:
        MediaError: the file is missing, empty or not a decodable image.
    """
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise MediaError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if data.size == 0:
        raise MediaError(f"{path}: empty file (0 bytes), not an image.")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{path}: not a decodable image (corrupt, truncated or not an image file).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frame_numbers(files: list[Path]) -> tuple[list[int], Literal["file-name", "position"]]:
    """Frame index of each file of a frame folder: the number in its name, else its position."""
    numbers = []
    for file in files:
        match = _LAST_DIGITS.search(file.stem)
        if match is None:
            return list(range(len(files))), "position"
        numbers.append(int(match.group(1)))
    if len(set(numbers)) != len(numbers):
        return list(range(len(files))), "position"
    return numbers, "file-name"


def _frame_folder(path: Path) -> tuple[list[Path], list[int], str]:
    if not path.is_dir():
        raise MediaError(f"{path}: frame folder not found.")
    files = list_frame_files(path)
    if not files:
        raise MediaError(f"{path}: folder holds no frame images (expected {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    numbers, numbering = frame_numbers(files)
    order = np.argsort(numbers, kind="stable")
    return [files[i] for i in order], [numbers[i] for i in order], numbering


# ----------------------------------------------------------------------------------------------
# video


def _open_video(path: Path):
    import av

    if not path.is_file():
        raise MediaError(f"{path}: video file not found.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes), not a video.")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise MediaError(
            f"{path}: not a readable video ({_ffmpeg_message(error)}); the file is corrupt, truncated or not a video."
        ) from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: the file has no video stream.")
    return container


def _ffmpeg_message(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip().rstrip(".") or type(error).__name__


def _video_info(path: Path) -> MediaInfo:
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        n_frames, exact = int(stream.frames or 0), bool(stream.frames)
        if not exact:
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            n_frames = int(round(duration * fps)) if duration and fps else 0
        width, height = _first_frame_size(container, stream) or (stream.codec_context.width, stream.codec_context.height)
    finally:
        container.close()
    return MediaInfo(n_frames, exact, fps, int(width), int(height), "decode-order")


def _upright(frame) -> np.ndarray:
    """The decoded picture as (H, W, 3) uint8 RGB, turned by the file's display rotation."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _first_frame_size(container, stream) -> tuple[int, int] | None:
    """Upright (width, height) of the first decodable frame, or None."""
    try:
        for frame in container.decode(stream):
            turns = round(getattr(frame, "rotation", 0) / 90) % 4
            return (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    except Exception:  # probe stays best-effort; iter_frames reports decoding errors properly
        return None
    return None


def _iter_video(path: Path, every: int, fps: float | None, start: int) -> Iterator[Frame]:
    import av

    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base or Fraction(1, 1)
        next_time: float | None = None
        first_time: float | None = None
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if frame.pts is not None:
                    timestamp = float(frame.pts * time_base)
                else:
                    timestamp = index / float(rate) if rate else math.nan
                if first_time is None:
                    first_time = timestamp
                if fps is not None:
                    # keep the first frame at or after each tick of the requested clock (VFR-safe)
                    relative = timestamp - first_time
                    if next_time is not None and relative + 1e-6 < next_time:
                        continue
                    next_time = (math.floor(relative * fps + 1e-6) + 1) / fps
                elif index % every:
                    continue
                if index < start:
                    continue
                yield Frame(index, timestamp, _upright(frame))
        except av.FFmpegError as error:
            raise MediaError(
                f"{path}: decoding failed after frame {index} ({_ffmpeg_message(error)}); the file is corrupt or truncated."
            ) from None
        if index < 0:
            raise MediaError(f"{path}: no frame could be decoded; the file is corrupt or truncated.")
        if declared and index + 1 < declared:
            raise MediaError(
                f"{path}: decoded {index + 1} frames but the file declares {declared}; the file is truncated or damaged."
            )
    finally:
        container.close()


# ----------------------------------------------------------------------------------------------
# public API


def probe(source: MediaSource | str | Path) -> MediaInfo:
    """Frame count, rate and size of a source without decoding it all.

    Raises:
        MediaError: the source cannot be opened.
    """
    path, kind = _as_path_kind(source)
    if kind == "video":
        return _video_info(path)
    if kind == "image":
        image = read_image(path)
        return MediaInfo(1, True, None, image.shape[1], image.shape[0], "single")
    files, _numbers, numbering = _frame_folder(path)
    image = read_image(files[0])
    return MediaInfo(len(files), True, None, image.shape[1], image.shape[0], numbering)  # type: ignore[arg-type]


def iter_frames(
    source: MediaSource | str | Path,
    *,
    every: int = 1,
    fps: float | None = None,
    start: int = 0,
) -> Iterator[Frame]:
    """Yield frames in index order.

    Args:
        source: a MediaSource or a path (video, image or frame folder).
        every: keep frames whose index is a multiple of ``every`` (frame folders: every
            ``every``-th file, counted by position).
        fps: keep about ``fps`` frames per second of video time: the first frame at or after each
            tick ``k / fps`` after the first frame (works with variable frame rates). Videos only;
            exclusive with ``every``.
        start: skip frames with index < ``start`` (resuming); videos still decode them, so indices
            stay exact.

    Raises:
        MediaError: missing, empty, corrupt or truncated input (a truncated video raises after its
            last good frame, when fewer frames decode than the file declares).
        UsageError: bad ``every``/``fps``.
    """
    if every < 1:
        raise UsageError(f"every must be >= 1, got {every}.")
    if fps is not None and fps <= 0:
        raise UsageError(f"fps must be > 0, got {fps}.")
    if fps is not None and every != 1:
        raise UsageError("Use either every or fps, not both.")
    path, kind = _as_path_kind(source)
    if fps is not None and kind != "video":
        raise UsageError(f"{path}: fps sampling needs a video ({kind} sources have no clock); use every instead.")
    if kind == "video":
        yield from _iter_video(path, every, fps, start)
    elif kind == "image":
        if start <= 0:
            yield Frame(0, math.nan, read_image(path))
    else:
        files, numbers, _numbering = _frame_folder(path)
        for position, (file, number) in enumerate(zip(files, numbers)):
            if position % every or number < start:
                continue
            yield Frame(number, math.nan, read_image(file))


def file_digest(path: str | Path, *, block: int = 1 << 20) -> str:
    """A fast content fingerprint of a file or frame folder, for resumable, idempotent runs.

    Files up to 4 blocks (4 MiB) are hashed whole (``sha256:<hex>``). Larger files hash their size
    and 4 blocks of 1 MiB at the start, 1/3, 2/3 and end (``sampled-sha256:<hex>``): it catches
    a replaced, re-encoded, truncated or appended file, not a change confined to unsampled bytes.
    A frame folder hashes its file names and sizes plus the sampled digests of its first, middle
    and last frames (``folder-sha256:<hex>``).
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        digest = hashlib.sha256()
        for file in files:
            # the name's own bytes: the same as its UTF-8 for a UTF-8 name, and never an error
            digest.update(os.fsencode(file.name) + f"\0{file.stat().st_size}\n".encode())
        for file in sorted({files[0], files[len(files) // 2], files[-1]}) if files else []:
            digest.update(file_digest(file, block=block).encode())
        return "folder-sha256:" + digest.hexdigest()
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= 4 * block:
            while chunk := handle.read(block):
                digest.update(chunk)
            return "sha256:" + digest.hexdigest()
        digest.update(str(size).encode())
        for offset in (0, size // 3, 2 * size // 3, size - block):
            handle.seek(offset)
            digest.update(handle.read(block))
    return "sampled-sha256:" + digest.hexdigest()
