"""The AU deformation model: what each Action Unit does to a face, after the FACS descriptions.

Each rendered AU is an :class:`AUEffect` made of

- skin displacements (:class:`Kernel`, a Gaussian patch of skin shifted by ``shift`` at apex):
  brows, lids' surroundings, cheeks, nose wings, lip corners, chin and jaw move with the skin;
- relief (:class:`Bump`): bulges (+) and furrows (-) of the height map, which the lighting turns
  into highlights and shadows (cheek bulge of AU6, chin boss of AU17, bulges of AU24, ...);
- creases (:class:`Crease`): wrinkle lines and deepened folds (forehead lines of AU1/AU2,
  glabella lines of AU4, crow's feet of AU6, nose-bridge lines of AU9, nasolabial furrow of
  AU10/AU12, dimple of AU14, ...); they grow faster than linearly with intensity, as in FACS,
  where trace (A) intensity shows movement but hardly any wrinkle;
- chin dimpling (:class:`Stipple`, AU17's "orange peel" skin);
- shape changes of the explicitly drawn eyes (:class:`EyeChange`) and lips (:class:`LipChange`).

Positions are anchored to named landmarks of the subject (:func:`anchors`), so that the same AU
lands on the right place of every face. Coordinates are canonical face units (see
:mod:`aucli.synth.identity`), given for the subject's right half (image left, x < 0) and mirrored
for the left half unless ``mirror=False`` (midline effects). At apex (intensity 5, FACS E) the
sizes are those of a real face: a brow moves about 9 mm, a lip corner about 8 mm, the jaw 13 mm.

Side convention: side 0 is the subject's right (image left in a frontal, unmirrored view), side 1
the subject's left; CASME II's ``R12`` is side 0, ``L10`` side 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aucli.synth.identity import Identity

__all__ = [
    "SYNTH_AUS",
    "Kernel",
    "Bump",
    "Crease",
    "Stipple",
    "EyeChange",
    "LipChange",
    "AUEffect",
    "AU_EFFECTS",
    "anchors",
]

#: The Action Units the renderer draws, in column order of every intensity array.
SYNTH_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24, 25, 26)

Point = tuple[float, float]


@dataclass(frozen=True)
class Kernel:
    """Skin near ``anchor + offset`` moves by ``shift`` (face units, at apex), Gaussian falloff ``sigma``.

    ``below``: only skin below this anchor's y moves (smoothly), e.g. the jaw under the lip line.
    """

    anchor: str
    offset: Point
    sigma: Point
    shift: Point
    mirror: bool = True
    below: str | None = None


@dataclass(frozen=True)
class Bump:
    """A bulge (``height`` > 0) or a dent of the relief; ``tint`` adds to the albedo multiplier."""

    anchor: str
    offset: Point
    sigma: Point
    height: float
    tint: float = 0.0
    mirror: bool = True


@dataclass(frozen=True)
class Crease:
    """A wrinkle or fold along a polyline (offsets from ``anchor``): a groove that darkens the skin."""

    anchor: str
    points: tuple[Point, ...]
    width: float
    depth: float
    darkness: float
    mirror: bool = True


@dataclass(frozen=True)
class Stipple:
    """Dimpled skin: many tiny random dents in an elliptic patch (AU17's chin)."""

    anchor: str
    offset: Point
    radius: Point
    count: int
    depth: float
    darkness: float


@dataclass(frozen=True)
class EyeChange:
    """Relative changes of one eye's lids at apex: ``upper``/``lower`` scale the lid heights."""

    upper: float = 0.0
    lower: float = 0.0
    flatten: float = 0.0  # lower lid straightened (0 curved .. 1 straight)
    inner_raise: float = 0.0  # inner part of the upper lid raised (AU1's oblique lid)
    outer_raise: float = 0.0  # outer part raised (AU2)


@dataclass(frozen=True)
class LipChange:
    """Shape changes of the lips at apex that skin displacement alone does not give."""

    upper_thick: float = 0.0  # relative change of the upper red's thickness
    lower_thick: float = 0.0
    gap: float = 0.0  # lips part: opening at the centre (face units)
    jaw_gap: float = 0.0  # extra opening when the jaw drops (needs the lips apart)
    lateral_gap: float = 0.0  # opening under the raised lateral upper lip (AU10 at high intensity)
    upper_lateral_raise: float = 0.0  # lateral upper lip raised: squared upper lip (AU10)
    lower_push: float = 0.0  # lower lip pushed up, lip line arched (AU17)
    bow_flatten: float = 0.0  # cupid's bow and lip curvature flattened (tight lips)
    corner_thin: float = 0.0  # red thinned near the corners (AU14)


@dataclass(frozen=True)
class AUEffect:
    au: int
    kernels: tuple[Kernel, ...] = ()
    bumps: tuple[Bump, ...] = ()
    creases: tuple[Crease, ...] = ()
    stipples: tuple[Stipple, ...] = ()
    eye: EyeChange = field(default_factory=EyeChange)
    lips: LipChange = field(default_factory=LipChange)


def anchors(identity: Identity) -> dict[str, Point]:
    """Named landmarks of the neutral face, right half (x <= 0) and midline, in face units."""
    i = identity
    brow_y = i.eye_y - i.brow_gap
    forehead_y = (brow_y + i.hairline_y) / 2
    return {
        "eye_c": (-i.eye_dx, i.eye_y),
        "eye_in": (-i.eye_dx + i.eye_width, i.eye_y + 0.004),
        "eye_out": (-i.eye_dx - i.eye_width, i.eye_y - i.eye_tilt),
        "brow_in": (-i.eye_dx + i.eye_width * 0.95, brow_y + 0.012),
        "brow_mid": (-i.eye_dx - 0.01, brow_y - i.brow_arch),
        "brow_out": (-i.eye_dx - i.eye_width - i.brow_length, brow_y + 0.02),
        "glabella": (0.0, brow_y + 0.01),
        "forehead": (0.0, forehead_y),
        "nose_root": (0.0, i.eye_y),
        "nose_tip": (0.0, i.nose_tip_y),
        "ala": (-i.nose_width, i.nose_tip_y - 0.01),
        "nostril": (-i.nose_width * 0.5, i.nose_tip_y + 0.035),
        "cheek": (-i.eye_dx - 0.04, i.eye_y + 0.22),
        "infraorbital": (-i.eye_dx, i.eye_y + 0.085),
        "mouth_c": (0.0, i.mouth_y),
        "corner": (-i.mouth_width, i.mouth_y),
        "upper_lip": (0.0, i.mouth_y - i.upper_lip),
        "lower_lip": (0.0, i.mouth_y + i.lower_lip),
        "philtrum": (0.0, (i.nose_tip_y + i.mouth_y - i.upper_lip) / 2 + 0.02),
        "mentolabial": (0.0, i.mouth_y + i.lower_lip + 0.055),
        "chin": (0.0, i.chin_y - 0.14),
        "chin_bottom": (0.0, i.chin_y),
        "jaw": (-i.jaw_width, i.mouth_y + 0.08),
    }


def _forehead_lines(anchor: str, ys: tuple[float, ...], xs: tuple[float, ...], sag: float, darkness: float) -> tuple[Crease, ...]:
    lines = []
    for k, y in enumerate(ys):
        shrink = 1.0 - 0.18 * k
        pts = tuple((x * shrink, y + sag * (x / max(abs(v) for v in xs)) ** 2) for x in xs)
        lines.append(Crease(anchor, pts, width=0.011, depth=0.010, darkness=darkness * (1.0 - 0.15 * k)))
    return tuple(lines)


#: The FACS model, one entry per rendered AU. Sizes at apex (FACS E) for an average face.
AU_EFFECTS: dict[int, AUEffect] = {
    # AU1 inner brow raiser (frontalis, pars medialis): inner brow up, the brow turns oblique,
    # horizontal wrinkles in the centre of the forehead, inner upper lid drawn up.
    1: AUEffect(
        1,
        kernels=(
            Kernel("brow_in", (0.0, 0.0), (0.075, 0.09), (0.0, -0.085)),
            Kernel("brow_in", (0.03, -0.12), (0.11, 0.11), (0.0, -0.04)),
            Kernel("brow_mid", (0.0, 0.0), (0.05, 0.07), (0.0, -0.025)),
        ),
        creases=_forehead_lines("glabella", (-0.11, -0.17, -0.23), (0.0, -0.07, -0.14, -0.2), 0.02, 0.24),
        eye=EyeChange(upper=0.08, inner_raise=0.3),
    ),
    # AU2 outer brow raiser (frontalis, pars lateralis): outer brow up, arched; lateral forehead
    # wrinkles curving down at the sides; the lateral upper lid is exposed.
    2: AUEffect(
        2,
        kernels=(
            Kernel("brow_out", (0.0, 0.0), (0.08, 0.09), (-0.012, -0.085)),
            Kernel("brow_mid", (0.0, 0.0), (0.06, 0.08), (0.0, -0.045)),
            Kernel("brow_out", (0.05, -0.12), (0.11, 0.11), (0.0, -0.035)),
        ),
        creases=(
            Crease("brow_mid", ((0.09, -0.115), (0.02, -0.125), (-0.06, -0.118), (-0.13, -0.09)), 0.012, 0.011, 0.22),
            Crease("brow_mid", ((0.06, -0.175), (0.0, -0.183), (-0.07, -0.17), (-0.11, -0.15)), 0.012, 0.011, 0.17),
        ),
        eye=EyeChange(upper=0.1, outer_raise=0.3),
    ),
    # AU4 brow lowerer (corrugator, procerus, depressor supercilii): brows lowered and drawn
    # together, vertical lines and a bulge between the brows, upper lids pushed down.
    4: AUEffect(
        4,
        kernels=(
            Kernel("brow_in", (0.0, 0.0), (0.075, 0.075), (0.04, 0.05)),
            Kernel("brow_mid", (0.0, 0.0), (0.08, 0.08), (0.02, 0.035)),
            Kernel("brow_out", (0.0, 0.0), (0.07, 0.07), (0.005, 0.015)),
        ),
        bumps=(Bump("glabella", (0.0, -0.02), (0.045, 0.05), 0.02, mirror=False),),
        creases=(
            Crease("glabella", ((-0.03, -0.07), (-0.036, -0.01), (-0.043, 0.04)), 0.010, 0.013, 0.34),
            Crease("glabella", ((-0.07, -0.06), (-0.09, -0.025)), 0.009, 0.008, 0.18),
        ),
        eye=EyeChange(upper=-0.18, lower=-0.05),
    ),
    # AU6 cheek raiser (orbicularis oculi, pars orbitalis): cheeks and infraorbital skin lifted,
    # bulging cheeks, lower lid pushed up with bagging below, crow's feet at the outer corners,
    # lateral brow pulled slightly down.
    6: AUEffect(
        6,
        kernels=(
            Kernel("infraorbital", (0.0, 0.0), (0.1, 0.06), (0.0, -0.035)),
            Kernel("cheek", (0.0, 0.0), (0.13, 0.11), (-0.005, -0.05)),
            Kernel("brow_out", (0.0, 0.0), (0.07, 0.05), (0.0, 0.015)),
        ),
        bumps=(
            Bump("cheek", (0.0, -0.03), (0.1, 0.08), 0.05, tint=0.04),
            Bump("infraorbital", (0.0, -0.015), (0.065, 0.022), 0.014),
        ),
        creases=(
            Crease("eye_out", ((-0.02, -0.012), (-0.055, -0.03), (-0.09, -0.045)), 0.008, 0.008, 0.26),
            Crease("eye_out", ((-0.025, 0.004), (-0.06, 0.006), (-0.1, 0.008)), 0.008, 0.008, 0.26),
            Crease("eye_out", ((-0.02, 0.02), (-0.055, 0.038), (-0.09, 0.058)), 0.008, 0.008, 0.22),
            Crease("eye_c", ((0.07, 0.06), (0.0, 0.078), (-0.08, 0.062)), 0.009, 0.006, 0.14),
        ),
        eye=EyeChange(upper=-0.1, lower=-0.5),
    ),
    # AU7 lid tightener (orbicularis oculi, pars palpebralis): aperture narrowed, mostly from
    # below; the lower lid is raised, straightened and tensed (a small bulge under it).
    7: AUEffect(
        7,
        kernels=(Kernel("infraorbital", (0.0, -0.02), (0.07, 0.035), (0.0, -0.015)),),
        bumps=(Bump("infraorbital", (0.0, -0.045), (0.075, 0.018), 0.016, tint=0.03),),
        creases=(Crease("eye_c", ((0.1, 0.045), (0.0, 0.052), (-0.1, 0.045)), 0.008, 0.006, 0.16),),
        eye=EyeChange(upper=-0.25, lower=-0.7, flatten=0.9),
    ),
    # AU9 nose wrinkler (levator labii superioris alaeque nasi): wrinkles across the bridge and
    # sides of the nose, nostril wings and infraorbital triangle raised, upper lip raised a bit,
    # inner brows pulled down.
    9: AUEffect(
        9,
        kernels=(
            Kernel("ala", (0.0, 0.0), (0.05, 0.05), (0.0, -0.04)),
            Kernel("nose_tip", (0.0, 0.0), (0.05, 0.05), (0.0, -0.015), mirror=False),
            Kernel("corner", (0.1, -0.05), (0.07, 0.05), (0.0, -0.025)),
            Kernel("brow_in", (0.0, 0.0), (0.07, 0.07), (0.01, 0.02)),
            Kernel("infraorbital", (0.06, 0.03), (0.07, 0.06), (0.0, -0.02)),
        ),
        creases=(
            Crease("nose_root", ((-0.055, 0.05), (0.0, 0.04), (0.055, 0.05)), 0.01, 0.014, 0.32, mirror=False),
            Crease("nose_root", ((-0.06, 0.09), (0.0, 0.08), (0.06, 0.09)), 0.01, 0.014, 0.32, mirror=False),
            Crease("nose_root", ((-0.055, 0.13), (0.0, 0.123), (0.055, 0.13)), 0.01, 0.012, 0.26, mirror=False),
            Crease("ala", ((0.035, -0.13), (0.01, -0.06)), 0.009, 0.01, 0.22),
            Crease("ala", ((-0.02, 0.0), (-0.05, 0.09)), 0.012, 0.014, 0.2),
        ),
        eye=EyeChange(lower=-0.15),
    ),
    # AU10 upper lip raiser (levator labii superioris): upper lip raised, more so laterally
    # (squared upper lip), nasolabial furrow deepened, wings raised; at high intensity the lips
    # part above the canines.
    10: AUEffect(
        10,
        kernels=(
            Kernel("corner", (0.08, -0.04), (0.065, 0.055), (0.0, -0.045)),
            Kernel("upper_lip", (0.0, 0.0), (0.07, 0.045), (0.0, -0.03), mirror=False),
            Kernel("ala", (0.0, 0.0), (0.05, 0.05), (0.0, -0.02)),
        ),
        creases=(Crease("ala", ((-0.02, 0.0), (-0.055, 0.1), (-0.085, 0.2)), 0.02, 0.022, 0.12),),
        lips=LipChange(upper_thick=0.2, upper_lateral_raise=0.03, lateral_gap=0.03),
    ),
    # AU12 lip corner puller (zygomaticus major): corners up and out, lip line curved upward,
    # nasolabial fold deepened and pushed out, cheeks raised, lips stretched thinner.
    12: AUEffect(
        12,
        kernels=(
            Kernel("corner", (0.0, 0.0), (0.065, 0.055), (-0.045, -0.065)),
            Kernel("corner", (-0.06, -0.12), (0.1, 0.1), (-0.02, -0.035)),
            Kernel("corner", (0.06, 0.04), (0.06, 0.05), (-0.012, -0.025)),
        ),
        bumps=(Bump("cheek", (0.03, 0.06), (0.09, 0.08), 0.03),),
        creases=(Crease("ala", ((-0.03, 0.0), (-0.085, 0.1), (-0.115, 0.21), (-0.105, 0.29)), 0.024, 0.026, 0.1),),
        lips=LipChange(upper_thick=-0.15, lower_thick=-0.15),
    ),
    # AU14 dimpler (buccinator): corners tightened and drawn back, a dimple beside each corner,
    # a small bulge medial to it, red thinned near the corners.
    14: AUEffect(
        14,
        kernels=(Kernel("corner", (0.0, 0.0), (0.045, 0.045), (-0.015, -0.01)),),
        bumps=(
            Bump("corner", (-0.045, 0.0), (0.015, 0.022), -0.018, tint=-0.14),
            Bump("corner", (0.015, -0.02), (0.03, 0.03), 0.012),
        ),
        creases=(Crease("corner", ((-0.03, -0.045), (-0.046, 0.0), (-0.032, 0.045)), 0.009, 0.01, 0.24),),
        lips=LipChange(upper_thick=-0.1, corner_thin=0.55),
    ),
    # AU15 lip corner depressor (depressor anguli oris): corners pulled down, lip line curved
    # downward, skin bunched below and lateral to the corners.
    15: AUEffect(
        15,
        kernels=(
            Kernel("corner", (0.0, 0.0), (0.055, 0.055), (-0.008, 0.05)),
            Kernel("corner", (0.0, 0.08), (0.07, 0.07), (0.0, 0.03)),
        ),
        bumps=(Bump("corner", (-0.03, 0.06), (0.04, 0.04), 0.012),),
        creases=(Crease("corner", ((-0.01, 0.03), (-0.03, 0.07), (-0.045, 0.11)), 0.01, 0.01, 0.2),),
        lips=LipChange(lower_thick=-0.1),
    ),
    # AU17 chin raiser (mentalis): chin boss pushed up, dimpled chin skin, lower lip pushed up,
    # the mouth line arched (inverted U), mentolabial furrow deepened.
    17: AUEffect(
        17,
        kernels=(
            Kernel("chin", (0.0, 0.0), (0.15, 0.1), (0.0, -0.06), mirror=False),
            Kernel("lower_lip", (0.0, 0.0), (0.11, 0.04), (0.0, -0.022), mirror=False),
        ),
        bumps=(
            Bump("chin", (0.0, 0.0), (0.1, 0.08), 0.03, mirror=False),
            Bump("mentolabial", (0.0, 0.0), (0.11, 0.016), -0.016, tint=-0.08, mirror=False),
        ),
        stipples=(Stipple("chin", (0.0, 0.01), (0.12, 0.08), 45, 0.005, 0.07),),
        lips=LipChange(lower_push=1.0, lower_thick=0.15),
    ),
    # AU23 lip tightener (orbicularis oris): red narrowed, lips tightened and narrowed
    # horizontally, contours straightened.
    23: AUEffect(
        23,
        kernels=(Kernel("corner", (0.0, 0.0), (0.05, 0.05), (0.022, 0.0)),),
        creases=(Crease("upper_lip", ((-0.03, -0.045), (-0.035, -0.015)), 0.008, 0.006, 0.12),),
        lips=LipChange(upper_thick=-0.45, lower_thick=-0.4, bow_flatten=0.7),
    ),
    # AU24 lip pressor (orbicularis oris): lips pressed together, red thinned, skin bulging
    # above and below the red; no narrowing.
    24: AUEffect(
        24,
        kernels=(
            Kernel("lower_lip", (0.0, 0.0), (0.1, 0.04), (0.0, -0.012), mirror=False),
            Kernel("upper_lip", (0.0, 0.0), (0.1, 0.04), (0.0, 0.008), mirror=False),
        ),
        bumps=(
            Bump("upper_lip", (0.0, -0.035), (0.09, 0.022), 0.016, mirror=False),
            Bump("lower_lip", (0.0, 0.03), (0.09, 0.022), 0.016, mirror=False),
            Bump("corner", (-0.02, 0.0), (0.02, 0.02), -0.008, tint=-0.06),
        ),
        lips=LipChange(upper_thick=-0.5, lower_thick=-0.45, bow_flatten=0.4),
    ),
    # AU25 lips part (depressor labii / relaxed mentalis): lips apart, teeth visible.
    25: AUEffect(
        25,
        kernels=(Kernel("lower_lip", (0.0, 0.0), (0.14, 0.08), (0.0, 0.02), mirror=False),),
        lips=LipChange(gap=0.045),
    ),
    # AU26 jaw drop (masseter relaxed): mandible lowered: chin, lower lip and jaw outline move
    # down, the mouth opens wider when the lips are apart, cheeks slightly hollowed.
    26: AUEffect(
        26,
        kernels=(
            Kernel("chin", (0.0, 0.05), (0.5, 0.3), (0.0, 0.13), mirror=False, below="mouth_c"),
            Kernel("lower_lip", (0.0, 0.0), (0.16, 0.08), (0.0, 0.05), mirror=False, below="mouth_c"),
        ),
        bumps=(Bump("cheek", (0.02, 0.2), (0.08, 0.1), -0.015),),
        lips=LipChange(jaw_gap=0.11),
    ),
}
