"""Frames in, aligned faces out: decode, detect, select, track and align one media source.

``extract_faces`` runs three stages at once, joined by bounded queues: a decode thread; a face
thread doing batched detection, selection, tracking and alignment; and the caller's thread, which
receives one :class:`FrameResult` per sampled frame, in frame order (frames without a face
included), and can store it while the next frames are decoded and detected.

Detecting on every k-th frame (``detect_every``, videos and frame folders): frames at sampled
positions 0, k, 2k, ... and the last frame are *keyframes*, detected in batches. Between two
keyframes whose kept faces agree (same number, same rank order, each pair of boxes with IoU >=
0.5), boxes and landmarks are interpolated linearly in frame index (score: the lower of the two);
otherwise (a face appears, leaves, moves fast or changes rank) every frame in between is detected
too. A face present on both keyframes is therefore never dropped in between, and a face that
appears or leaves is found on the exact frame where the detector finds it. An interpolated face is
also checked against the picture: its box region, shrunk to a 16x16 grey thumbnail, must match the
blend of the keyframes' thumbnails (mean absolute difference <= ``CARRY_MAX_DIFF`` grey levels;
measured: 1-4 for a moving face, 47 for a frame where the face is gone); a frame that fails is
detected, so a one-frame cut or dropout between two keyframes gets no invented face.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from aucli.errors import UsageError
from aucli.faces.align import DEFAULT_CROP_SIZE, DEFAULT_MARGIN, align_face, resize_face
from aucli.faces.detect import DEFAULT_DETECT_WIDTH, DEFAULT_THRESHOLD, Detections, FaceDetector, make_detector
from aucli.faces.track import SELECT_POLICIES, FaceTracker, box_iou, select_faces
from aucli.media.decode import Frame, iter_frames
from aucli.media.sources import MediaSource
from aucli.prefetch import Producer, Put

__all__ = ["DEFAULT_DETECT_EVERY", "FaceOptions", "FaceRecord", "FrameResult", "extract_faces", "make_face_detector"]

#: Detect on every k-th sampled frame of a video or frame folder, interpolating in between.
DEFAULT_DETECT_EVERY = 2
#: Two keyframes' faces "agree" (interpolation allowed) at this IoU or more.
CARRY_IOU = 0.5
#: Largest mean absolute difference (grey levels, 16x16 thumbnails) between an interpolated face
#: region and the blend of the keyframes' face regions.
CARRY_MAX_DIFF = 15.0


@dataclass
class FaceRecord:
    """One kept face on one frame.

    Attributes:
        frame_index, timestamp: as in :class:`aucli.media.decode.Frame`.
        track_id: 0 = the subject (the face ranked first on the frame), see aucli.faces.track.
        box: (4,) float32 x1, y1, x2, y2 in frame pixels.
        score: detector score (for interpolated faces, the lower of the two keyframes' scores).
        landmarks: (5, 2) float32 in frame pixels, ArcFace order.
        crop: (S, S, 3) uint8 RGB aligned face.
        matrix: (2, 3) float64 map from frame pixels to crop pixels.
        detected: False when box and landmarks were interpolated between keyframes.
    """

    frame_index: int
    timestamp: float
    track_id: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    crop: np.ndarray
    matrix: np.ndarray = field(default_factory=lambda: np.eye(2, 3))
    detected: bool = True


@dataclass
class FrameResult:
    """All kept faces of one sampled frame; ``faces == []`` means no face on that frame."""

    frame_index: int
    timestamp: float
    faces: list[FaceRecord]


@dataclass
class FaceOptions:
    """How faces are found and cropped.

    Attributes:
        detector: ``auto``, ``centerface``, ``insightface`` or ``none`` (see aucli.faces.detect).
        models_dir: insightface models (an .onnx file, a pack folder or a folder of packs).
        crop_size: side of the aligned crop in pixels.
        margin: alignment margin, fraction of the ArcFace square added on every side.
        detect_width: frames are downscaled to this width for detection (None: full size).
        retry_full: where the downscaled pass finds no face, detect again at full size.
        detect_every: detect on every k-th sampled frame and interpolate between (1: every frame).
        max_faces: most faces kept per frame (``largest``/``central``).
        select: ``largest``, ``central`` or ``all`` (see aucli.faces.track).
        every: keep every N-th frame (videos: by frame index; folders: by position).
        fps: keep about F frames per second (videos only; exclusive with ``every``).
        threshold: minimum detector score.
        batch_size: keyframes per detector call.
        threads: onnxruntime intra-op threads (None: min(4, CPU count)).
        device: ``cpu`` or ``cuda`` for the detector.
    """

    detector: str = "auto"
    models_dir: Path | None = None
    crop_size: int = DEFAULT_CROP_SIZE
    margin: float = DEFAULT_MARGIN
    detect_width: int | None = DEFAULT_DETECT_WIDTH
    retry_full: bool = True
    detect_every: int = DEFAULT_DETECT_EVERY
    max_faces: int = 1
    select: Literal["largest", "central", "all"] = "largest"
    every: int = 1
    fps: float | None = None
    threshold: float = DEFAULT_THRESHOLD
    batch_size: int = 8
    threads: int | None = None
    device: str = "cpu"

    def validate(self) -> None:
        """Raise UsageError for values out of range (all checked before any work)."""
        if self.crop_size < 16:
            raise UsageError(f"crop_size must be at least 16 pixels, got {self.crop_size}.")
        if not 0.0 <= self.margin <= 1.0:
            raise UsageError(f"margin must be between 0 and 1, got {self.margin}.")
        if self.detect_every < 1:
            raise UsageError(f"detect_every must be >= 1, got {self.detect_every}.")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.every < 1:
            raise UsageError(f"every must be >= 1, got {self.every}.")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"fps must be > 0, got {self.fps}.")
        if self.fps is not None and self.every != 1:
            raise UsageError("Use either every or fps, not both.")
        if self.select not in SELECT_POLICIES:
            raise UsageError(f"Unknown face selection {self.select!r}; choose one of {', '.join(SELECT_POLICIES)}.")
        if self.max_faces < 1:
            raise UsageError(f"max_faces must be >= 1, got {self.max_faces}.")


def make_face_detector(options: FaceOptions) -> FaceDetector:
    """The detector ``options`` describe (build it once and pass it to every extract_faces call)."""
    return make_detector(
        options.detector,  # type: ignore[arg-type]
        models_dir=options.models_dir,
        detect_width=options.detect_width,
        threshold=options.threshold,
        threads=options.threads,
        device=options.device,
        retry_full=options.retry_full,
    )


# ----------------------------------------------------------------------------------------------
# the two stages, each a thread (aucli.prefetch.Producer)


def _decode_stage(source: MediaSource, options: FaceOptions, start_frame: int, maxsize: int) -> Producer:
    """Stage 1: the sampled frames of one source."""

    def produce(put: Put) -> None:
        for frame in iter_frames(source, every=options.every, fps=options.fps, start=start_frame):
            if not put(frame):
                return

    return Producer(f"aucli-decode-{source.key}", maxsize, produce)


def _face_stage(decoder: Producer, extractor: _Extractor, window_keys: int, maxsize: int) -> Producer:
    """Stage 2: windows of frames ending on a keyframe -> detection, carrying, tracking and
    alignment -> one FrameResult per frame, in order."""
    every = extractor.detect_every

    def produce(put: Put) -> None:
        buffer: list[Frame] = []
        flags: list[bool] = []
        previous_key: tuple[Frame, Detections] | None = None
        failure: BaseException | None = None
        frames = decoder.drain(stage.stopped)
        position = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception as error:  # MediaError: first finish the frames decoded before it
                failure = error
                break
            buffer.append(frame)
            flags.append(position % every == 0)
            position += 1
            if flags[-1] and sum(flags) >= window_keys:
                rows, previous_key = extractor.window(buffer, flags, previous_key)
                if not all(put(extractor.emit(*row)) for row in rows):
                    return
                buffer, flags = [], []
        if buffer:
            flags[-1] = True  # the last frame is always a keyframe
            rows, previous_key = extractor.window(buffer, flags, previous_key)
            if not all(put(extractor.emit(*row)) for row in rows):
                return
        if failure is not None:
            raise failure

    stage = Producer(decoder.name.replace("decode", "faces"), maxsize, produce)
    return stage


# ----------------------------------------------------------------------------------------------
# keyframes and carrying


def _agree(a: Detections, b: Detections) -> bool:
    if len(a) != len(b):
        return False
    if len(a) == 0:
        return True
    return bool(np.all(np.diag(box_iou(a.boxes, b.boxes)) >= CARRY_IOU))


def _thumbnail(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(16, 16) float32 grey thumbnail of the box region (clipped to the image)."""
    import cv2

    height, width = image.shape[:2]
    x1, y1 = int(max(np.floor(box[0]), 0)), int(max(np.floor(box[1]), 0))
    x2, y2 = int(min(np.ceil(box[2]), width)), int(min(np.ceil(box[3]), height))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.zeros((16, 16), np.float32)
    return cv2.resize(image[y1:y2, x1:x2], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)


def _looks_alike(frame: Frame, carried: Detections, left: tuple[Frame, Detections], right: tuple[Frame, Detections], t: float) -> bool:
    """Whether each carried face's region matches the keyframes' face regions (see module doc)."""
    for j in range(len(carried)):
        expected = (1 - t) * _thumbnail(left[0].image, left[1].boxes[j]) + t * _thumbnail(right[0].image, right[1].boxes[j])
        if float(np.abs(_thumbnail(frame.image, carried.boxes[j]) - expected).mean()) > CARRY_MAX_DIFF:
            return False
    return True


def _interpolate(a: Detections, b: Detections, t: float) -> Detections:
    return Detections(
        ((1 - t) * a.boxes + t * b.boxes).astype(np.float32),
        np.minimum(a.scores, b.scores).astype(np.float32),
        ((1 - t) * a.landmarks + t * b.landmarks).astype(np.float32),
    )


class _Extractor:
    """Keyframe scheduling, batched detection, selection, tracking and alignment for one source."""

    def __init__(self, detector: FaceDetector, options: FaceOptions, detect_every: int) -> None:
        self.detector = detector
        self.options = options
        self.detect_every = detect_every
        self.tracker = FaceTracker()
        self.resize_only = detector.name == "none"

    def _detect(self, frames: list[Frame]) -> list[Detections]:
        found: list[Detections] = []
        size = self.options.batch_size
        for start in range(0, len(frames), size):
            batch = frames[start : start + size]
            for frame, detections in zip(batch, self.detector.detect([f.image for f in batch])):
                height, width = frame.image.shape[:2]
                found.append(select_faces(detections, (width, height), select=self.options.select, max_faces=self.options.max_faces))
        return found

    def window(
        self, frames: list[Frame], is_key: list[bool], previous_key: tuple[Frame, Detections] | None
    ) -> tuple[list[tuple[Frame, Detections, bool]], tuple[Frame, Detections] | None]:
        """Detections for every frame of a window; its last frame must be a keyframe.

        Returns (frame, kept detections, detected?) per frame, and the window's last keyframe.
        """
        keys = [i for i, key in enumerate(is_key) if key]
        results: dict[int, tuple[Detections, bool]] = {}
        for i, detections in zip(keys, self._detect([frames[i] for i in keys])):
            results[i] = (detections, True)
        # segments between consecutive keyframes (the first one may be the previous window's)
        anchors: list[tuple[int, Frame, Detections]] = []
        if previous_key is not None:
            anchors.append((-1, previous_key[0], previous_key[1]))
        anchors.extend((i, frames[i], results[i][0]) for i in keys)
        to_detect: list[int] = []
        for (left, left_frame, left_det), (right, right_frame, right_det) in zip(anchors, anchors[1:]):
            between = range(left + 1, right)
            if not len(between):
                continue
            if _agree(left_det, right_det):
                span = right_frame.index - left_frame.index
                for i in between:
                    t = (frames[i].index - left_frame.index) / span if span else 0.0
                    carried = _interpolate(left_det, right_det, t)
                    if _looks_alike(frames[i], carried, (left_frame, left_det), (right_frame, right_det), t):
                        results[i] = (carried, False)
                    else:
                        to_detect.append(i)
            else:
                to_detect.extend(between)
        for i, detections in zip(to_detect, self._detect([frames[i] for i in to_detect])):
            results[i] = (detections, True)
        last_key = (frames[keys[-1]], results[keys[-1]][0])
        return [(frames[i], *results[i]) for i in range(len(frames))], last_key

    def emit(self, frame: Frame, detections: Detections, detected: bool) -> FrameResult:
        ids = self.tracker.update(detections.boxes)
        faces = []
        for j, track_id in enumerate(ids):
            if self.resize_only:
                crop, matrix = resize_face(frame.image, size=self.options.crop_size)
            else:
                crop, matrix = align_face(frame.image, detections.landmarks[j], size=self.options.crop_size, margin=self.options.margin)
            faces.append(
                FaceRecord(
                    frame_index=frame.index,
                    timestamp=frame.timestamp,
                    track_id=track_id,
                    box=detections.boxes[j].copy(),
                    score=float(detections.scores[j]),
                    landmarks=detections.landmarks[j].copy(),
                    crop=crop,
                    matrix=matrix,
                    detected=detected,
                )
            )
        return FrameResult(frame.index, frame.timestamp, faces)


def extract_faces(
    source: MediaSource,
    options: FaceOptions,
    *,
    detector: FaceDetector | None = None,
    start_frame: int = 0,
) -> Iterator[FrameResult]:
    """Aligned faces of every sampled frame of ``source``, in frame order.

    Args:
        source: from :func:`aucli.media.discover_sources`.
        options: detection, selection, sampling and crop settings.
        detector: a detector built once for a whole run (default: built from ``options``).
        start_frame: skip frames with index < start_frame (to resume a source).

    Yields:
        one FrameResult per sampled frame; ``faces`` is empty where no face was found.

    Raises:
        MediaError: the source is unreadable, corrupt or truncated (raised after the frames
            decoded before the damage have been yielded).
        ModelError, UsageError: from building the detector or bad options.
    """
    options.validate()
    if detector is None:
        detector = make_face_detector(options)
    sequence = source.kind in ("video", "frames") and detector.name != "none"
    detect_every = options.detect_every if sequence else 1
    window_frames = options.batch_size * detect_every
    decoder = _decode_stage(source, options, start_frame, maxsize=max(2 * window_frames, 16))
    faces = _face_stage(decoder, _Extractor(detector, options, detect_every), options.batch_size, maxsize=max(window_frames, 16))
    decoder.start()
    faces.start()
    try:
        yield from faces.drain()
    finally:
        faces.stopped.set()
        decoder.stop()
        faces.stop()
