"""Synthetic subjects: BP4D-style subject ids and the identity parameters of each face.

An :class:`Identity` holds everything that makes one subject look like themselves and not like
another: face shape and proportions, feature sizes and placement, skin tone and texture, hair,
brows, glasses, facial hair, age (static wrinkles) and expressivity (how strongly their AUs show).
Identity varies between subjects far more than any AU changes one face; the gate in
``bench/benchlib/synth_gates.py`` measures it.

Geometry is in canonical *face units*: frontal head, x to the image right, y down, origin between
the eyes and the mouth; the face is about 1.45 units wide and the interocular distance is about
0.6 units (so one unit is roughly 10 cm of a real face).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from aucli.protocols import BP4D_PARTITIONS, DISFA_PARTITIONS

__all__ = ["Identity", "HairStyle", "BeardStyle", "subject_ids", "sample_identity", "SKIN_PALETTE"]

HairStyle = Literal["short", "long", "bald", "bun", "curly", "cropped"]
BeardStyle = Literal["none", "stubble", "moustache", "goatee", "full"]

#: Skin albedo (linear-ish RGB in 0..1) along a light-to-dark scale, interpolated when sampling.
SKIN_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.96, 0.82, 0.72),
    (0.90, 0.72, 0.60),
    (0.82, 0.62, 0.48),
    (0.72, 0.52, 0.38),
    (0.60, 0.40, 0.28),
    (0.46, 0.30, 0.20),
    (0.34, 0.22, 0.15),
)

_HAIR_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.05, 0.04, 0.04),  # black
    (0.14, 0.09, 0.06),  # dark brown
    (0.30, 0.19, 0.11),  # brown
    (0.62, 0.48, 0.30),  # dark blond
    (0.80, 0.66, 0.42),  # blond
    (0.50, 0.20, 0.08),  # red
    (0.55, 0.54, 0.52),  # grey
)

_IRIS_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.20, 0.12, 0.07),
    (0.32, 0.20, 0.10),
    (0.30, 0.42, 0.55),
    (0.35, 0.45, 0.30),
    (0.45, 0.38, 0.25),
)


@dataclass(frozen=True)
class Identity:
    """One synthetic subject. All lengths in face units (see the module docstring)."""

    subject: str
    sex: Literal["F", "M"]
    texture_seed: int
    # face outline
    face_width: float  # half-width at the cheekbones
    jaw_width: float  # half-width at the jaw angle
    chin_width: float  # half-width of the chin
    chin_y: float  # lowest point of the chin
    crown_y: float  # top of the skull (under the hair)
    # eyes
    eye_y: float
    eye_dx: float  # half the interocular distance (eye centres)
    eye_width: float  # half-width of one eye opening
    eye_open: float  # upper lid height above the eye line, neutral
    eye_lower: float  # lower lid depth below the eye line, neutral
    eye_tilt: float  # outer corner above (+) the inner corner
    iris_colour: tuple[float, float, float]
    # brows
    brow_gap: float  # brow above the eye line
    brow_thickness: float
    brow_arch: float
    brow_length: float  # lateral extent beyond the eye's outer corner
    brow_colour: tuple[float, float, float]
    brow_density: float
    # nose
    nose_tip_y: float
    nose_width: float  # half-width of the alae
    nose_height: float  # protrusion of the tip
    # mouth
    mouth_y: float
    mouth_width: float  # half-width, corner to centre
    upper_lip: float  # red thickness at the centre
    lower_lip: float
    lip_colour: tuple[float, float, float]
    # skin
    skin: tuple[float, float, float]
    skin_texture: float  # pore/texture contrast
    redness: float  # cheeks, nose, ears
    freckles: int
    moles: int
    age: float  # 0 young .. 1 old: static wrinkle depth, fold depth
    # hair and accessories
    hair_style: HairStyle
    hair_colour: tuple[float, float, float]
    hairline_y: float
    fringe: float  # 0 none .. 1 a fringe down to the upper forehead
    beard: BeardStyle
    glasses: bool
    glasses_round: bool
    glasses_colour: tuple[float, float, float]
    ear_size: float
    # behaviour
    expressivity: float  # multiplies the visible size of every AU (0.8 .. 1.2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _round_robin(partitions: tuple[tuple[str, ...], ...]) -> list[str]:
    out: list[str] = []
    for i in range(max(len(p) for p in partitions)):
        out.extend(p[i] for p in partitions if i < len(p))
    return out


def subject_ids(n: int, *, style: Literal["bp4d", "disfa", "casme2"] = "bp4d") -> list[str]:
    """``n`` subject ids.

    ``bp4d``: official BP4D ids taken round-robin from the three protocol partitions (so that any
    ``n`` gives balanced official folds), then F024, M019, ... beyond the 41 official ids.
    ``disfa``: official DISFA ids round-robin (SN002, SN013, SN003, ...), then SN033, SN034, ...
    ``casme2``: ``sub01``, ``sub02``, ...
    """
    if n < 1:
        raise ValueError(f"need at least one subject, got {n}")
    if style == "casme2":
        return [f"sub{i + 1:02d}" for i in range(n)]
    if style == "disfa":
        ids = _round_robin(DISFA_PARTITIONS)[:n]
        return ids + [f"SN{33 + i:03d}" for i in range(n - len(ids))]
    ids = _round_robin(BP4D_PARTITIONS)[:n]
    next_number = {"F": 24, "M": 19}
    sex = "F"
    while len(ids) < n:
        ids.append(f"{sex}{next_number[sex]:03d}")
        next_number[sex] += 1
        sex = "M" if sex == "F" else "F"
    return ids


def _lerp_palette(palette: tuple[tuple[float, float, float], ...], t: float) -> np.ndarray:
    position = t * (len(palette) - 1)
    i = min(int(position), len(palette) - 2)
    w = position - i
    return (1 - w) * np.asarray(palette[i]) + w * np.asarray(palette[i + 1])


def _colour(values: np.ndarray) -> tuple[float, float, float]:
    clipped = np.clip(values, 0.0, 1.0)
    return (round(float(clipped[0]), 4), round(float(clipped[1]), 4), round(float(clipped[2]), 4))


def sample_identity(rng: np.random.Generator, subject: str, *, sex: Literal["F", "M"] | None = None) -> Identity:
    """Draw one subject's identity. ``sex`` defaults to the id's first letter (F/M) or a coin flip."""
    if sex is None:
        sex = subject[0] if subject[:1] in ("F", "M") else ("F" if rng.random() < 0.5 else "M")
    male = sex == "M"
    u = rng.uniform
    r = lambda x: round(float(x), 4)  # noqa: E731 - compact rounding for JSON-stable parameters

    face_width = u(0.66, 0.80) + (0.02 if male else 0.0)
    jaw_width = face_width * u(0.70, 0.90) + (0.03 if male else 0.0)
    skin = _lerp_palette(SKIN_PALETTE, float(rng.beta(1.3, 1.3)))
    skin = skin * np.exp(rng.normal(0, 0.02, 3))
    hair_colour = np.asarray(_HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))])
    age = float(rng.beta(1.6, 3.0))
    if age > 0.65 and rng.random() < 0.6:
        hair_colour = np.asarray(_HAIR_COLOURS[-1])
    hair_colour = hair_colour * np.exp(rng.normal(0, 0.08, 3))
    if male:
        hair_style = str(rng.choice(["short", "cropped", "bald", "curly", "long"], p=[0.42, 0.26, 0.12, 0.14, 0.06]))
    else:
        hair_style = str(rng.choice(["long", "bun", "short", "curly", "cropped"], p=[0.50, 0.17, 0.13, 0.15, 0.05]))
    brow_colour = hair_colour * 0.8 + 0.05 * skin if hair_colour.mean() < 0.5 else hair_colour * 0.55
    lip_colour = skin * np.array([0.88, 0.62, 0.62]) + np.array([0.10, 0.02, 0.03]) * u(0.3, 1.2)
    if not male and rng.random() < 0.35:  # lipstick
        lip_colour = np.array([u(0.55, 0.8), u(0.12, 0.25), u(0.18, 0.3)])
    beard = "none"
    if male:
        beard = str(rng.choice(["none", "stubble", "moustache", "goatee", "full"], p=[0.55, 0.2, 0.08, 0.07, 0.10]))
    glasses = bool(rng.random() < 0.22)
    eye_width = u(0.125, 0.15)
    return Identity(
        subject=subject,
        sex=sex,
        texture_seed=int(rng.integers(2**31 - 1)),
        face_width=r(face_width),
        jaw_width=r(jaw_width),
        chin_width=r(jaw_width * u(0.32, 0.5)),
        chin_y=r(u(0.88, 1.0) + (0.03 if male else 0.0)),
        crown_y=r(u(-1.30, -1.18)),
        eye_y=r(u(-0.2, -0.13)),
        eye_dx=r(u(0.27, 0.33)),
        eye_width=r(eye_width),
        eye_open=r(u(0.04, 0.056)),
        eye_lower=r(u(0.024, 0.034)),
        eye_tilt=r(u(-0.01, 0.02)),
        iris_colour=_colour(np.asarray(_IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))]) * np.exp(rng.normal(0, 0.1, 3))),
        brow_gap=r(u(0.13, 0.18)),
        brow_thickness=r(u(0.028, 0.045) + (0.01 if male else 0.0)),
        brow_arch=r(u(0.01, 0.045)),
        brow_length=r(u(0.02, 0.07)),
        brow_colour=_colour(brow_colour),
        brow_density=r(u(0.65, 1.0)),
        nose_tip_y=r(u(0.17, 0.27)),
        nose_width=r(u(0.09, 0.13) + (0.01 if male else 0.0)),
        nose_height=r(u(0.16, 0.24)),
        mouth_y=r(u(0.46, 0.54)),
        mouth_width=r(u(0.19, 0.25)),
        upper_lip=r(u(0.035, 0.06) + (0.0 if male else 0.008)),
        lower_lip=r(u(0.05, 0.08) + (0.0 if male else 0.008)),
        lip_colour=_colour(lip_colour),
        skin=_colour(skin),
        skin_texture=r(u(0.02, 0.06)),
        redness=r(u(0.0, 0.6)),
        freckles=int(rng.integers(0, 60) if rng.random() < 0.25 else 0),
        moles=int(rng.integers(0, 4)),
        age=r(age),
        hair_style=hair_style,  # type: ignore[arg-type]
        hair_colour=_colour(hair_colour),
        hairline_y=r(u(-0.82, -0.62) - (0.12 if hair_style == "bald" else 0.0)),
        fringe=r(u(0.3, 1.0) if (not male and rng.random() < 0.3 and hair_style in ("long", "short")) else 0.0),
        beard=beard,  # type: ignore[arg-type]
        glasses=glasses,
        glasses_round=bool(rng.random() < 0.4),
        glasses_colour=_colour(np.array([u(0.02, 0.4)] * 3) * np.array([1.0, u(0.8, 1.0), u(0.6, 1.0)])),
        ear_size=r(u(0.9, 1.15)),
        expressivity=r(float(np.clip(rng.normal(1.0, 0.1), 0.8, 1.2))),
    )
