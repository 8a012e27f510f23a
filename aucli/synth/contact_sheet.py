"""A contact sheet: per AU, neutral and apex faces of several subjects side by side, labelled.

Faces are aligned crops (the store's 5-point alignment with margin) of frontal frames with each
subject's own scene and light; the apex frame shows one AU at the given intensity (default 5, FACS
E) and is cropped with the neutral frame's alignment, so only the AU differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aucli.aus import FACS_NAMES
from aucli.synth.facs import SYNTH_AUS

__all__ = ["contact_sheet"]


def _label(img: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45, colour=(20, 20, 20), thickness: int = 1) -> None:
    cv2.putText(img, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def contact_sheet(
    path: str | Path,
    *,
    subjects: int = 4,
    seed: int = 0,
    aus: Sequence[int] = SYNTH_AUS,
    intensity: float = 5.0,
    cell: int = 128,
    frame_size: int = 256,
    margin: float = 0.1,
) -> Path:
    """Write the sheet as PNG to ``path`` and return it. Rows: AUs; columns: subject x (neutral, apex).

    ``margin``: the alignment margin (the store's default is 0.25; the sheet zooms in a little).
    """
    from aucli.errors import UsageError
    from aucli.faces.align import align_face
    from aucli.synth.recording import SUPERSAMPLE, subject_identity
    from aucli.synth.face import FaceModel
    from aucli.synth.identity import subject_ids
    from aucli.synth.render import FaceRenderer, Framing
    from aucli.synth.scene import compose_frame, neutral_nuisance, sample_scene

    unknown = [au for au in aus if au not in SYNTH_AUS]
    if unknown:
        raise UsageError(f"AU(s) {', '.join(map(str, unknown))} are not rendered; choose from {', '.join(map(str, SYNTH_AUS))}")
    if not 0 < intensity <= 5:
        raise UsageError(f"intensity must be in (0, 5], got {intensity}")
    if subjects < 1:
        raise UsageError(f"need at least one subject, got {subjects}")
    label_w, header_h, gap = 190, 52, 6
    width = label_w + subjects * (2 * cell + gap)
    height = header_h + len(aus) * cell
    sheet = np.full((height, width, 3), 245, np.uint8)
    still = neutral_nuisance(1, frame_size)
    for s, subject in enumerate(subject_ids(subjects)):
        identity = subject_identity(seed, s, subject)
        renderer = FaceRenderer(FaceModel(identity, Framing.video(frame_size).px_per_unit * SUPERSAMPLE))
        scene = sample_scene(np.random.default_rng([seed, 3, s]), identity, frame_size)
        zero = np.zeros((len(SYNTH_AUS), 2), np.float32)
        frame, truth = compose_frame(renderer, scene, still, 0, zero, camera_effects=False)
        neutral, _ = align_face(frame, truth.landmarks, size=cell, margin=margin)
        x0 = label_w + s * (2 * cell + gap)
        _label(sheet, f"{subject}: neutral | apex", (x0 + 4, 44), 0.5)
        for row, au in enumerate(aus):
            apex_int = zero.copy()
            apex_int[SYNTH_AUS.index(au)] = intensity
            frame_a, _ = compose_frame(renderer, scene, still, 0, apex_int, camera_effects=False)
            apex, _ = align_face(frame_a, truth.landmarks, size=cell, margin=margin)
            y0 = header_h + row * cell
            sheet[y0 : y0 + cell, x0 : x0 + cell] = neutral
            sheet[y0 : y0 + cell, x0 + cell : x0 + 2 * cell] = apex
            cv2.line(sheet, (x0 + cell, y0), (x0 + cell, y0 + cell - 1), (255, 255, 255), 1)
    for row, au in enumerate(aus):
        y0 = header_h + row * cell
        _label(sheet, f"AU{au}", (8, y0 + cell // 2 - 4), 0.7, thickness=2)
        _label(sheet, FACS_NAMES.get(au, ""), (8, y0 + cell // 2 + 18), 0.42)
        cv2.line(sheet, (0, y0), (width, y0), (200, 200, 200), 1)
    _label(sheet, f"aucli synth contact sheet: seed {seed}, intensity {intensity:g} (FACS {'ABCDE'[min(int(round(intensity)), 5) - 1] if intensity >= 0.5 else '-'})", (8, 20), 0.55)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode the contact sheet as PNG for {path}")
    path.write_bytes(data.tobytes())
    return path
