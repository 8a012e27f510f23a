"""Faces: detectors (CenterFace, insightface SCRFD, none), 5-point alignment, selection and tracking,
and the decode-detect-align pipeline ``extract_faces``."""

from aucli.faces.align import align_face, face_template
from aucli.faces.detect import Detections, FaceDetector, make_detector
from aucli.faces.pipeline import FaceOptions, FaceRecord, FrameResult, extract_faces, make_face_detector

__all__ = [
    "Detections",
    "FaceDetector",
    "FaceOptions",
    "FaceRecord",
    "FrameResult",
    "align_face",
    "extract_faces",
    "face_template",
    "make_detector",
    "make_face_detector",
]
