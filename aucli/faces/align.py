"""Face alignment: a 5-point similarity transform onto the ArcFace template, with a margin.

The ArcFace 112x112 template places the eyes, nose tip and mouth corners of a frontal face; a crop
of exactly that square cuts the top of the brows and the chin, and AU1/AU2 need the forehead,
AU17/AU26 the chin. aucli therefore maps the landmarks onto the template *shrunk* so that the
ArcFace square plus ``margin`` of its side on every side fills the crop, and *shifted up* so that
the crop is centred between forehead and chin rather than on the ArcFace square's own centre
(ArcFace y = 56 sits between the brows and the nose; the face from forehead to chin is centred
lower, at about y = 66, measured on the astronaut photo: brow tops at ArcFace y = 41, chin at 121).

With the defaults (``size=256, margin=0.25, centre_y=66``) one ArcFace unit is 1.52 px, the eyes
lie at y = 106 and the mouth corners at y = 168, and a random 224 crop of the 256 image (the
training augmentation, which always keeps the band 32..224) still holds the brows and the chin:
tests/test_faces.py checks this on the astronaut photo, whose chin a margin of 0 cuts off.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ARCFACE_TEMPLATE",
    "DEFAULT_CENTRE_Y",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_MARGIN",
    "align_face",
    "face_template",
    "resize_face",
    "similarity_transform",
]

#: ArcFace's five points in its 112x112 crop: image-left eye, image-right eye, nose tip,
#: image-left mouth corner, image-right mouth corner, (x, y).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
DEFAULT_CROP_SIZE = 256
DEFAULT_MARGIN = 0.25
#: ArcFace-template y (of 112) placed at the vertical centre of the crop; 56 = no shift.
DEFAULT_CENTRE_Y = 66.0


def face_template(
    size: int = DEFAULT_CROP_SIZE, margin: float = DEFAULT_MARGIN, *, centre_y: float = DEFAULT_CENTRE_Y
) -> np.ndarray:
    """(5, 2) target landmark positions in a ``size`` x ``size`` crop.

    ArcFace units are scaled by ``unit = size / (112 * (1 + 2 * margin))`` (the ArcFace square
    grown by ``margin`` of its side on each side fills the crop), the template's x centre (56)
    goes to the crop's centre and its ``centre_y`` to the crop's vertical centre.
    ``margin=0, centre_y=56`` is the plain ArcFace template scaled to ``size``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    unit = size / (112.0 * (1.0 + 2.0 * margin))
    centre = np.array([56.0, centre_y], np.float32)
    return ((ARCFACE_TEMPLATE - centre) * unit + size / 2.0).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama's closed form, no reflection. src, dst: (n, 2). Returns the (2, 3) float64 matrix M
    with ``dst ~ M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = (singular * d).sum() / variance if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int = DEFAULT_CROP_SIZE,
    margin: float = DEFAULT_MARGIN,
    centre_y: float = DEFAULT_CENTRE_Y,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face given by 5 landmarks onto the margin template.

    Args:
        image: (H, W, 3) uint8.
        landmarks: (5, 2) (x, y) in ArcFace order, image pixels.
        size: side of the square crop.
        margin, centre_y: see :func:`face_template`.

    Returns:
        crop (size, size, 3) uint8 (areas outside the image are black), and the (2, 3) float64
        matrix mapping image pixels to crop pixels (apply to landmarks or boxes with
        ``points @ M[:, :2].T + M[:, 2]``).
    """
    import cv2

    matrix = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), face_template(size, margin, centre_y=centre_y))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, matrix


def resize_face(image: np.ndarray, *, size: int = DEFAULT_CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """For already-cropped corpora (detector ``none``): the whole image resized to (size, size).

    Returns the crop and the (2, 3) scale matrix from image to crop pixels (no rotation).
    """
    import cv2

    height, width = image.shape[:2]
    matrix = np.array([[size / width, 0.0, 0.0], [0.0, size / height, 0.0]])
    shrink = width > size or height > size
    crop = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return crop, matrix
