"""Face selection on one frame and track ids across frames.

Selection ranks the faces of a frame and keeps some of them:
- ``largest``: by box area, the ``max_faces`` largest;
- ``central``: by the distance of the box centre to the image centre, the ``max_faces`` nearest;
- ``all``: every face, ranked by area (``max_faces`` is ignored).

Track ids: **track 0 is the subject**: on every frame, the face ranked first by the selection
rule (the largest face, or the most central one). Labels of a frame belong to its track-0 face.
The other kept faces get ids 1, 2, ... by IoU matching (>= ``iou_threshold``) with the faces of the
previous frame that carry ids >= 1; a face that matches none starts a new id. With the default
``max_faces=1`` every kept face is track 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from aucli.errors import UsageError
from aucli.faces.detect import Detections

__all__ = ["SELECT_POLICIES", "FaceTracker", "box_iou", "select_faces"]

SELECT_POLICIES = ("largest", "central", "all")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) with every box in b (m, 4): (n, m)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def select_faces(
    detections: Detections,
    image_size: tuple[int, int],
    *,
    select: Literal["largest", "central", "all"] = "largest",
    max_faces: int = 1,
) -> Detections:
    """The kept faces of one frame, ranked (rank 0 = the subject). image_size is (width, height)."""
    if select not in SELECT_POLICIES:
        raise UsageError(f"Unknown face selection {select!r}; choose one of {', '.join(SELECT_POLICIES)}.")
    if max_faces < 1:
        raise UsageError(f"max_faces must be >= 1, got {max_faces}.")
    if len(detections) == 0:
        return detections
    boxes = detections.boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if select == "central":
        width, height = image_size
        centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 - width / 2, (boxes[:, 1] + boxes[:, 3]) / 2 - height / 2], 1)
        order = np.lexsort((-area, np.hypot(centre[:, 0], centre[:, 1])))
    else:
        order = np.argsort(-area, kind="stable")
    if select != "all":
        order = order[:max_faces]
    return detections.take(order)


class FaceTracker:
    """Gives track ids to the ranked faces of consecutive frames (see the module docstring)."""

    def __init__(self, iou_threshold: float = 0.3) -> None:
        self.iou_threshold = iou_threshold
        self._previous_boxes = np.zeros((0, 4), np.float32)
        self._previous_ids: list[int] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray) -> list[int]:
        """Ids for this frame's ranked boxes (k, 4); the first box is track 0."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ids: list[int] = [0] if len(boxes) else []
        if len(boxes) > 1:
            candidates = [i for i, track in enumerate(self._previous_ids) if track != 0]
            taken: set[int] = set()
            iou = box_iou(boxes[1:], self._previous_boxes[candidates]) if candidates else np.zeros((len(boxes) - 1, 0))
            for row in range(len(boxes) - 1):
                best, best_iou = None, self.iou_threshold
                for column, previous in enumerate(candidates):
                    if previous not in taken and iou[row, column] >= best_iou:
                        best, best_iou = previous, iou[row, column]
                if best is None:
                    ids.append(self._next_id)
                    self._next_id += 1
                else:
                    taken.add(best)
                    ids.append(self._previous_ids[best])
        self._previous_boxes = boxes
        self._previous_ids = ids
        return ids
