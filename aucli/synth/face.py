"""A subject's face, prepared once for fast per-frame rendering.

:class:`FaceModel` turns an :class:`~aucli.synth.identity.Identity` into arrays on a canonical
canvas (frontal head, face units, see :mod:`aucli.synth.identity`):

- ``albedo`` (H, W, 3): skin with texture, tints, brows, nostrils, moles, facial hair, ears, hair;
- ``height`` (H, W): relief in face units (head dome, nose, brow ridge, cheekbones, muzzle, chin),
  which the lighting turns into shading;
- ``alpha`` (H, W): head silhouette (face outline, ears, hair);
- ``nose_relief`` (H, W): the nose's protrusion, used for parallax when the head turns;
- per AU and side, the effect maps of :mod:`aucli.synth.facs` (displacement, relief, creases)
  cropped to their region of interest, so that a frame only touches the pixels an AU moves;
- ``glasses`` (H, W, 4): an RGBA overlay when the subject wears glasses.

Static maps are drawn at 4x and area-downsampled (anti-aliased); everything a frame needs is a
sum of precomputed maps, one remap and the explicit eyes and lips (:mod:`aucli.synth.render`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aucli.synth.facs import AU_EFFECTS, SYNTH_AUS, AUEffect, anchors
from aucli.synth.identity import Identity

__all__ = ["Canvas", "AUMap", "FaceModel", "catmull_rom", "below_weight"]

#: Canvas extent in face units: x in [-X_EXTENT, X_EXTENT], y in [Y_TOP, Y_BOTTOM].
X_EXTENT = 1.3
Y_TOP = -1.6
Y_BOTTOM = 1.35
_SS = 4  # supersampling of static drawings


@dataclass(frozen=True)
class Canvas:
    """Pixel grid of the canonical face canvas: ``r`` pixels per face unit."""

    r: float

    @property
    def width(self) -> int:
        return int(np.ceil(2 * X_EXTENT * self.r))

    @property
    def height(self) -> int:
        return int(np.ceil((Y_BOTTOM - Y_TOP) * self.r))

    def to_px(self, points: np.ndarray, ss: int = 1) -> np.ndarray:
        """Face units (..., 2) -> pixel index coordinates (pixel centres are integers)."""
        pts = np.asarray(points, dtype=np.float64)
        out = np.empty_like(pts)
        out[..., 0] = (pts[..., 0] + X_EXTENT) * self.r * ss - 0.5
        out[..., 1] = (pts[..., 1] - Y_TOP) * self.r * ss - 0.5
        return out

    def grid(self, ss: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Face-unit coordinates of every pixel centre: ``(xs (W,), ys (H,))``."""
        xs = (np.arange(self.width * ss) + 0.5) / (self.r * ss) - X_EXTENT
        ys = (np.arange(self.height * ss) + 0.5) / (self.r * ss) + Y_TOP
        return xs.astype(np.float32), ys.astype(np.float32)


@dataclass(frozen=True)
class AUMap:
    """One AU's effect on one side of the face, cropped to rows y0:y1 and columns x0:x1.

    ``maps`` (5, h, w) float32: displacement x and y (canvas pixels), linear relief, crease relief
    and crease albedo change; the first three scale linearly with intensity, the last two faster.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    maps: np.ndarray


def catmull_rom(points: np.ndarray, samples_per_segment: int = 12, closed: bool = True) -> np.ndarray:
    """A smooth curve through ``points`` (n, 2): a centripetal-free uniform Catmull-Rom spline."""
    pts = np.asarray(points, dtype=np.float64)
    if closed:
        ext = np.vstack([pts[-1], pts, pts[0], pts[1]])
    else:
        ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    t = np.linspace(0, 1, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(
            0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    if not closed:
        out.append(pts[-1][None])
    return np.vstack(out)


def _mirror(points: np.ndarray) -> np.ndarray:
    m = np.array(points, dtype=np.float64)
    m[..., 0] = -m[..., 0]
    return m


class _Painter:
    """Anti-aliased drawing at 4x on a canvas, returned as float masks at canvas resolution."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.shape = (canvas.height * _SS, canvas.width * _SS)

    def _pts(self, points: np.ndarray) -> np.ndarray:
        return np.round(self.canvas.to_px(points, _SS) * 16).astype(np.int32)

    def new(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

    def fill(self, mask: np.ndarray, polygons: list[np.ndarray], value: int = 255) -> np.ndarray:
        cv2.fillPoly(mask, [self._pts(p) for p in polygons], value, cv2.LINE_AA, 4)
        return mask

    def line(self, mask: np.ndarray, points: np.ndarray, width: float, value: int = 255, closed: bool = False) -> np.ndarray:
        thickness = max(1, int(round(width * self.canvas.r * _SS)))
        cv2.polylines(mask, [self._pts(points)], closed, value, thickness, cv2.LINE_AA, 4)
        return mask

    def ellipse(self, mask: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0, value: int = 255) -> np.ndarray:
        c = self._pts(np.asarray(centre))
        ax = (int(round(axes[0] * self.canvas.r * _SS * 16)), int(round(axes[1] * self.canvas.r * _SS * 16)))
        cv2.ellipse(mask, (int(c[0]), int(c[1])), ax, angle, 0, 360, value, -1, cv2.LINE_AA, 4)
        return mask

    def down(self, mask: np.ndarray, blur: float = 0.0) -> np.ndarray:
        m = mask.astype(np.float32) / 255.0
        if blur > 0:
            m = cv2.GaussianBlur(m, (0, 0), blur * _SS)
        return cv2.resize(m, (self.canvas.width, self.canvas.height), interpolation=cv2.INTER_AREA)


def _gauss(xs: np.ndarray, ys: np.ndarray, centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    gx = np.exp(-0.5 * ((xs - centre[0]) / sigma[0]) ** 2)
    gy = np.exp(-0.5 * ((ys - centre[1]) / sigma[1]) ** 2)
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def below_weight(y: np.ndarray, y_line: float) -> np.ndarray:
    """Smooth 0 -> 1 weight for skin below a horizontal line (the jaw moves, the upper lip does not)."""
    x = np.clip((np.asarray(y, np.float64) - y_line + 0.02) / 0.07, 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std noise with a Gaussian correlation length of ``sigma`` pixels."""
    n = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0.3:
        n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / max(float(n.std()), 1e-6)


class FaceModel:
    """Everything static about one subject's face on a canvas of ``r`` pixels per face unit."""

    def __init__(self, identity: Identity, r: float) -> None:
        self.identity = identity
        self.canvas = Canvas(r)
        self.anchors = anchors(identity)
        self.rng_seed = identity.texture_seed
        rng = np.random.default_rng(identity.texture_seed)
        self.xs, self.ys = self.canvas.grid()
        self.outline = self._outline()
        painter = _Painter(self.canvas)
        self.face_mask = painter.down(painter.fill(painter.new(), [self.outline]))
        self.height, self.nose_relief = self._relief()
        self.albedo, self.alpha = self._albedo(rng, painter)
        self.glasses = self._glasses(painter) if identity.glasses else None
        self.au_maps = self._au_maps(rng, painter)
        # Pose proxy: an ellipsoid around the head (face units), centred at (0, ELLIPSOID_Y, 0).
        self.ellipsoid = (identity.face_width + 0.06, 1.25, 0.85)
        self.ellipsoid_y = -0.12

    # ----------------------------------------------------------------------------------- outline
    def _outline(self) -> np.ndarray:
        i = self.identity
        right = np.array(
            [
                (-i.face_width * 0.55, i.crown_y + 0.07),
                (-i.face_width * 0.93, i.eye_y - 0.62),
                (-i.face_width * 0.99, i.eye_y - 0.25),
                (-i.face_width, i.eye_y + 0.1),
                (-(i.face_width + i.jaw_width) / 2 - 0.01, i.mouth_y - 0.12),
                (-i.jaw_width, i.mouth_y + 0.14),
                (-i.chin_width - 0.04, i.chin_y - 0.08),
                (-i.chin_width * 0.55, i.chin_y - 0.01),
            ]
        )
        loop = np.vstack([[0.0, i.crown_y], right, [[0.0, i.chin_y]], _mirror(right)[::-1]])
        return catmull_rom(loop, 10)

    # ------------------------------------------------------------------------------------ relief
    def _relief(self) -> tuple[np.ndarray, np.ndarray]:
        i, xs, ys, a = self.identity, self.xs, self.ys, self.anchors
        mask = self.face_mask > 0.5
        rows = mask.sum(axis=1).astype(np.float32) / (2 * self.canvas.r)  # half-width per row
        rows = cv2.GaussianBlur(rows[:, None], (1, 0), sigmaX=0.1, sigmaY=0.03 * self.canvas.r)[:, 0]
        half_width = np.maximum(rows, 0.05)[:, None]
        across = np.clip(1.0 - (xs[None, :] / half_width) ** 2, 0.0, 1.0) ** 0.45
        along = np.clip(1.0 - ((ys[:, None] + 0.1) / 1.45) ** 2, 0.0, 1.0) ** 0.5
        dome = 0.55 * across * along
        g = lambda c, s: _gauss(xs, ys, c, s)  # noqa: E731
        sym = lambda c, s: g(c, s) + g((-c[0], c[1]), s)  # noqa: E731
        # nose: a ridge widening from the root to the tip, the tip ball and the wings
        t = np.clip((ys - (i.eye_y + 0.02)) / (i.nose_tip_y - i.eye_y), 0.0, 1.0)
        ridge_w = 0.03 + 0.035 * t
        ridge = (i.nose_height * (0.2 + 0.8 * t**1.6))[:, None] * np.exp(-0.5 * (xs[None, :] / ridge_w[:, None]) ** 2)
        ridge *= (ys < i.nose_tip_y + 0.03)[:, None] * np.clip((ys - i.eye_y + 0.05) / 0.05, 0, 1)[:, None]
        nose = ridge.astype(np.float32)
        nose += 0.45 * i.nose_height * g((0.0, i.nose_tip_y - 0.01), (0.05, 0.045))
        nose += 0.22 * i.nose_height * sym(a["ala"], (0.035, 0.03))
        nose -= 0.12 * i.nose_height * sym(a["nostril"], (0.02, 0.012))
        nose = np.maximum(nose, 0.0)
        relief = nose.copy()
        brow_y = i.eye_y - i.brow_gap
        relief += 0.045 * g((0.0, brow_y + 0.02), (0.42, 0.05))
        relief -= 0.055 * sym(a["eye_c"], (0.11, 0.07))
        relief += 0.03 * sym(a["eye_c"], (0.075, 0.04))  # eyeball under the lids
        relief += 0.035 * sym((-(i.face_width - 0.2), i.eye_y + 0.12), (0.12, 0.09))
        relief += 0.05 * g((0.0, i.mouth_y - 0.02), (0.22, 0.14))
        relief -= 0.006 * g((0.0, (i.nose_tip_y + i.mouth_y) / 2), (0.015, 0.04))
        relief += 0.03 * g((0.0, i.chin_y - 0.13), (0.09, 0.07))
        relief -= 0.012 * g(a["mentolabial"], (0.1, 0.015))
        relief += 0.02 * g((0.0, i.mouth_y - i.upper_lip * 0.5), (0.12, 0.02))
        relief -= (0.002 + 0.008 * i.age) * self._fold_profile()
        height = (dome + relief * np.clip(self.face_mask * 1.5, 0, 1)).astype(np.float32)
        return height, nose.astype(np.float32)

    def _fold_profile(self) -> np.ndarray:
        painter = _Painter(self.canvas)
        ala = np.array(self.anchors["ala"])
        corner = np.array(self.anchors["corner"])
        pts = np.array([ala + (-0.02, 0.0), ala + (-0.06, 0.1), corner + (-0.05, 0.06)])
        mask = painter.new()
        painter.line(mask, catmull_rom(pts, 8, closed=False), 0.03)
        painter.line(mask, _mirror(catmull_rom(pts, 8, closed=False)), 0.03)
        return painter.down(mask, blur=0.025)

    # ------------------------------------------------------------------------------------ albedo
    def _albedo(self, rng: np.random.Generator, painter: _Painter) -> tuple[np.ndarray, np.ndarray]:
        i, xs, ys, a = self.identity, self.xs, self.ys, self.anchors
        h, w = self.canvas.height, self.canvas.width
        r = self.canvas.r
        skin = np.asarray(i.skin, np.float32)
        g = lambda c, s: _gauss(xs, ys, c, s)  # noqa: E731
        sym = lambda c, s: g(c, s) + g((-c[0], c[1]), s)  # noqa: E731
        texture = 1.0 + i.skin_texture * (0.6 * _smooth_noise(rng, (h, w), 0.35) + 0.4 * _smooth_noise(rng, (h, w), 0.02 * r))
        texture += 0.03 * _smooth_noise(rng, (h, w), 0.12 * r)
        albedo = skin[None, None, :] * texture[..., None]
        red = i.redness * (sym(a["cheek"], (0.12, 0.1)) + 0.7 * g(a["nose_tip"], (0.06, 0.05)))
        albedo *= 1.0 + red[..., None] * np.array([0.06, -0.07, -0.05], np.float32)
        periorbital = sym((a["eye_c"][0], a["eye_c"][1] + 0.02), (0.11, 0.06))
        albedo *= (1.0 - 0.1 * periorbital)[..., None] * np.array([1.0, 0.97, 0.99], np.float32)
        # beard shadow and facial hair
        if i.beard != "none":
            albedo = self._facial_hair(rng, painter, albedo)
        # nostrils
        nostrils = painter.new()
        for side in (1.0, -1.0):
            c = (a["nostril"][0] * side, a["nostril"][1])
            painter.ellipse(nostrils, c, (0.028, 0.013), angle=-20 * side)
        n = painter.down(nostrils, blur=0.004)
        albedo *= (1.0 - 0.72 * n)[..., None]
        ala_line = painter.new()
        for m in (1.0, -1.0):
            ax, ay = a["ala"]
            arc = np.array([(ax + 0.02, ay - 0.05), (ax - 0.005, ay - 0.01), (ax + 0.01, ay + 0.035), (ax + 0.04, ay + 0.05)])
            arc[:, 0] *= m
            painter.line(ala_line, catmull_rom(arc, 6, closed=False), 0.01)
        albedo *= (1.0 - 0.22 * painter.down(ala_line, blur=0.004))[..., None]
        # freckles and moles
        spots = painter.new()
        for _ in range(i.freckles):
            c = (rng.normal(0, 0.2), rng.normal(a["nose_tip"][1] - 0.08, 0.08))
            painter.ellipse(spots, c, (0.007, 0.006), value=int(rng.integers(60, 140)))
        for _ in range(i.moles):
            c = (rng.uniform(-0.55, 0.55), rng.uniform(-0.5, 0.8))
            painter.ellipse(spots, c, (0.012, 0.011), value=230)
        albedo *= (1.0 - 0.45 * painter.down(spots))[..., None]
        albedo = self._brows(rng, painter, albedo)
        albedo = np.clip(albedo, 0.0, 1.0)
        # ears behind the face, hair over everything above the hairline
        ear_mask, ear_shade = self._ears(painter)
        face = self.face_mask
        base_alpha = np.maximum(face, ear_mask)
        ear_colour = skin * np.array([1.02, 0.9, 0.88], np.float32) * (1 - 0.35 * ear_shade)[..., None]
        albedo = albedo * face[..., None] + ear_colour * (ear_mask * (1 - face))[..., None]
        hair_mask = self._hair_mask(painter)
        # ragged, strand-like edges instead of a clean cut
        edge = np.clip(4.0 * hair_mask * (1.0 - hair_mask), 0.0, 1.0)
        wisps = _smooth_noise(rng, (h, w), 0.4)
        hair_mask = np.clip(hair_mask + 0.45 * edge * wisps, 0.0, 1.0)
        hair_colour = np.asarray(i.hair_colour, np.float32)
        strands = _smooth_noise(rng, (h, w), 0.25)
        strands = cv2.GaussianBlur(strands, (1, 0), sigmaX=0.2, sigmaY=0.045 * r) if r > 20 else strands
        strands = strands / max(float(strands.std()), 1e-6)
        if i.hair_style == "curly":
            strands = 0.6 * strands + 0.7 * _smooth_noise(rng, (h, w), 0.02 * r)
        hair = hair_colour[None, None, :] * (1.0 + 0.28 * strands[..., None])
        hair += 0.05 * g((-0.3, i.crown_y + 0.25), (0.25, 0.12))[..., None]  # sheen
        hair = np.clip(hair, 0.0, 1.0)
        albedo = albedo * (1 - hair_mask[..., None]) + hair * hair_mask[..., None]
        alpha = np.clip(np.maximum(base_alpha, hair_mask), 0.0, 1.0)
        # hair is a dome for the lighting, flatter than skin
        hair_height = 0.5 * np.clip(1.0 - (xs[None, :] / (i.face_width + 0.25)) ** 2, 0, 1) ** 0.5
        self.height = self.height * (1 - hair_mask) + np.maximum(self.height, hair_height.astype(np.float32)) * hair_mask
        self.hair_mask = hair_mask
        return albedo.astype(np.float32), alpha.astype(np.float32)

    def _brows(self, rng: np.random.Generator, painter: _Painter, albedo: np.ndarray) -> np.ndarray:
        i, a = self.identity, self.anchors
        colour = np.asarray(i.brow_colour, np.float32)
        body = painter.new()
        hairs = painter.new()
        for m in (1.0, -1.0):
            inner, mid, outer = np.array(a["brow_in"]), np.array(a["brow_mid"]), np.array(a["brow_out"])
            spine = catmull_rom(np.array([inner, (inner + mid) / 2 + (0, -0.008), mid, outer]), 8, closed=False)
            n = len(spine)
            s = np.linspace(0, 1, n)
            thick = i.brow_thickness * (0.85 + 0.35 * np.sin(np.pi * np.clip(s * 1.3, 0, 1))) * (1 - 0.6 * s**2)
            tangent = np.gradient(spine, axis=0)
            normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
            normal *= np.sign(normal[:, 1:2] + 1e-9) * -1  # point upward (y negative)
            top = spine + normal * (thick[:, None] * 0.55)
            bottom = spine - normal * (thick[:, None] * 0.45)
            poly = np.vstack([top, bottom[::-1]])
            poly[:, 0] *= m
            painter.fill(body, [poly])
            count = int(90 * i.brow_density)
            for _ in range(count):
                k = rng.uniform(0, 1)
                j = min(int(k * (n - 1)), n - 2)
                p = spine[j] + normal[j] * rng.uniform(-0.45, 0.5) * thick[j]
                direction = tangent[j] / (np.linalg.norm(tangent[j]) + 1e-9)
                if k < 0.25:  # inner brow hairs point up and out
                    direction = np.array([-0.45, -0.9])
                length = rng.uniform(0.018, 0.03)
                angle = rng.normal(0, 0.2)
                rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
                d = rot @ direction
                seg = np.array([p, p + d * length])
                seg[:, 0] *= m
                painter.line(hairs, seg, 0.0045, value=int(rng.integers(150, 256)))
        mask = np.clip(0.45 * painter.down(body, blur=0.006) + 0.8 * painter.down(hairs), 0, 1) * (0.6 + 0.4 * i.brow_density)
        return albedo * (1 - mask[..., None]) + colour * mask[..., None]

    def _facial_hair(self, rng: np.random.Generator, painter: _Painter, albedo: np.ndarray) -> np.ndarray:
        i, a = self.identity, self.anchors
        h, w = albedo.shape[:2]
        zone = painter.new()
        corner = np.array(a["corner"])
        moustache = np.array(
            [corner + (-0.02, 0.01), corner + (0.0, -0.055), (0.0, i.nose_tip_y + 0.06), _mirror(corner + (0.0, -0.055)), _mirror(corner + (-0.02, 0.01))]
        )
        lip_hole = np.array([corner, (0.0, i.mouth_y - i.upper_lip), _mirror(corner), (0.0, i.mouth_y + i.lower_lip)])
        chin = np.array([corner + (0.0, 0.03), (-i.chin_width, i.chin_y - 0.05), (0.0, i.chin_y + 0.01), (i.chin_width, i.chin_y - 0.05), _mirror(corner + (0.0, 0.03)), (0.0, i.mouth_y + i.lower_lip + 0.02)])
        jaw = np.array([(-i.face_width + 0.02, i.eye_y + 0.15), (-i.face_width + 0.12, i.eye_y + 0.3), corner + (-0.06, 0.0), corner + (0.0, 0.03), (0.0, i.chin_y - 0.15), (0.0, i.chin_y + 0.02), (-i.chin_width - 0.04, i.chin_y - 0.06), (-i.jaw_width, i.mouth_y + 0.14)])
        if i.beard in ("stubble", "full"):
            painter.fill(zone, [jaw, _mirror(jaw), moustache, chin])
        if i.beard == "moustache":
            painter.fill(zone, [moustache])
        if i.beard == "goatee":
            painter.fill(zone, [moustache, chin])
        painter.fill(zone, [lip_hole], value=0)
        m = painter.down(zone, blur=0.02) * self.face_mask
        density = {"stubble": 0.35, "moustache": 0.75, "goatee": 0.75, "full": 0.8}[i.beard]
        grain = np.clip(0.45 + 0.55 * _smooth_noise(rng, (h, w), 0.35), 0, 1) * np.clip(0.8 + 0.3 * _smooth_noise(rng, (h, w), 0.03 * self.canvas.r), 0, 1)
        cover = m * density * grain
        colour = np.asarray(i.hair_colour, np.float32) * 0.65 + 0.02
        return albedo * (1 - cover[..., None]) + colour * cover[..., None]

    def _ears(self, painter: _Painter) -> tuple[np.ndarray, np.ndarray]:
        i = self.identity
        outer = painter.new()
        inner = painter.new()
        for m in (1.0, -1.0):
            c = (m * (i.face_width - 0.01), i.eye_y + 0.13)
            painter.ellipse(outer, c, (0.085 * i.ear_size, 0.16 * i.ear_size), angle=-8 * m)
            painter.ellipse(inner, (c[0] + m * 0.02, c[1]), (0.04 * i.ear_size, 0.1 * i.ear_size), angle=-8 * m)
        return painter.down(outer), painter.down(inner, blur=0.01)

    def _hair_mask(self, painter: _Painter) -> np.ndarray:
        i = self.identity
        fw = i.face_width
        style = i.hair_style
        if style == "bald":
            mask = painter.new()
            side = np.array([(-fw - 0.03, i.eye_y - 0.05), (-fw - 0.05, i.eye_y - 0.35), (-fw + 0.08, i.eye_y - 0.4), (-fw + 0.04, i.eye_y - 0.05)])
            painter.fill(mask, [side, _mirror(side)])
            return painter.down(mask, blur=0.01) * 0.85
        volume = {"short": 0.07, "long": 0.09, "bun": 0.06, "curly": 0.16, "cropped": 0.025}[style]
        outer = np.array(
            [
                (0.0, i.crown_y - volume),
                (-fw * 0.6, i.crown_y + 0.06 - volume),
                (-fw - volume * 0.8, i.eye_y - 0.6),
                (-fw - volume * 0.7, i.eye_y - 0.2),
                (-fw + 0.03, i.eye_y - 0.02),
            ]
        )
        if style == "long":
            outer = np.vstack([outer[:-1], [(-fw - 0.2, i.eye_y + 0.3), (-fw - 0.28, 0.85), (-fw - 0.2, 1.3), (-fw + 0.12, 1.3), (-fw + 0.05, 0.55), (-fw + 0.03, i.eye_y + 0.1)]])
        loop = np.vstack([outer, _mirror(outer)[::-1][:-1]])
        if style == "curly":
            theta = np.linspace(0, 2 * np.pi, len(loop), endpoint=False)
            loop = loop * (1 + 0.025 * np.sin(theta * 9))[:, None]
        mask = painter.fill(painter.new(), [catmull_rom(loop, 10)])
        if style == "bun":
            painter.ellipse(mask, (0.0, i.crown_y - 0.1), (0.2, 0.16))
        # cut out the face below the hairline
        hairline = i.hairline_y
        fringe_y = hairline + 0.3 * i.fringe
        xs = np.linspace(-fw - 0.05, fw + 0.05, 41)
        temple = np.clip(np.abs(xs) / fw, 0, 1)
        line_y = hairline + 0.5 * (temple**4) * (i.eye_y - 0.1 - hairline)
        if i.fringe > 0:
            line_y = np.where(np.abs(xs) < fw * 0.75, np.maximum(line_y, fringe_y - 0.04 * np.cos(xs * 12) ** 2), line_y)
        cut = np.vstack([np.stack([xs, line_y], 1), [(fw + 0.05, 1.4), (-fw - 0.05, 1.4)]])
        face_cut = painter.fill(painter.new(), [cut])
        outline_mask = painter.fill(painter.new(), [self.outline])
        remove = cv2.bitwise_and(face_cut, outline_mask)
        if style == "long":  # the curtains stay in front of the ears, beside the face
            sides = painter.new()
            for m in (1.0, -1.0):
                band = np.array([(-fw - 0.3, i.eye_y - 0.2), (-fw + 0.07, i.eye_y - 0.2), (-fw + 0.06, 1.35), (-fw - 0.3, 1.35)])
                band[:, 0] *= m
                painter.fill(sides, [band])
            remove = cv2.bitwise_and(remove, cv2.bitwise_not(cv2.bitwise_and(sides, cv2.bitwise_not(outline_mask))))
        mask = cv2.subtract(mask, remove)
        return painter.down(mask, blur=0.012)

    # ----------------------------------------------------------------------------------- glasses
    def _glasses(self, painter: _Painter) -> np.ndarray:
        i, a = self.identity, self.anchors
        frame = painter.new()
        lens = painter.new()
        half_w, half_h = i.eye_width + 0.055, 0.075
        cy = i.eye_y + 0.01
        width = 0.014 if i.glasses_round else 0.018
        for m in (1.0, -1.0):
            cx = m * i.eye_dx
            if i.glasses_round:
                t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
                ring = np.stack([cx + half_w * np.cos(t), cy + half_h * 1.1 * np.sin(t)], 1)
            else:
                ring = np.array([(cx - half_w, cy - half_h), (cx + half_w, cy - half_h), (cx + half_w * 0.95, cy + half_h), (cx - half_w * 0.95, cy + half_h)])
                ring = catmull_rom(np.vstack([ring[0], (ring[0] + ring[1]) / 2, ring[1], (ring[1] + ring[2]) / 2, ring[2], (ring[2] + ring[3]) / 2, ring[3], (ring[3] + ring[0]) / 2]), 6)
            painter.line(frame, ring, width, closed=True)
            painter.fill(lens, [ring])
            arm = np.array([(m * (i.eye_dx + half_w), cy - half_h * 0.6), (m * (i.face_width + 0.02), cy - half_h * 0.4)])
            painter.line(frame, arm, width * 0.8)
        bridge = np.array([(-i.eye_dx + half_w * 0.8, cy - 0.02), (0.0, cy - 0.035), (i.eye_dx - half_w * 0.8, cy - 0.02)])
        painter.line(frame, catmull_rom(bridge, 6, closed=False), width * 0.8)
        f = painter.down(frame)
        l_mask = painter.down(lens) * (1 - f)
        overlay = np.zeros((*f.shape, 4), np.float32)
        colour = np.asarray(i.glasses_colour, np.float32)
        overlay[..., :3] = colour * f[..., None] + np.array([0.9, 0.95, 1.0], np.float32) * (0.12 * l_mask)[..., None]
        overlay[..., 3] = f + 0.12 * l_mask
        return overlay  # premultiplied RGBA

    # ----------------------------------------------------------------------------------- AU maps
    def _au_maps(self, rng: np.random.Generator, painter: _Painter) -> dict[tuple[int, int], AUMap]:
        """Effect maps per (AU number, side); side 0 = subject's right (x < 0)."""
        maps: dict[tuple[int, int], AUMap] = {}
        split_right = (1.0 / (1.0 + np.exp(np.clip(self.xs / 0.02, -50, 50)))).astype(np.float32)
        for au in SYNTH_AUS:
            full = self._effect_maps(AU_EFFECTS[au], rng, painter)
            for side, weight in ((0, split_right), (1, 1.0 - split_right)):
                part = full * weight[None, None, :]
                peaks = np.abs(part).reshape(5, -1).max(axis=1)
                if float(peaks.max()) <= 0:
                    continue
                # each channel relative to its own peak, so that no small channel is cut off
                magnitude = (np.abs(part) / np.maximum(peaks, 1e-12)[:, None, None]).max(axis=0)
                rows = np.nonzero(magnitude.max(axis=1) > 0.003)[0]
                cols = np.nonzero(magnitude.max(axis=0) > 0.003)[0]
                y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
                maps[(au, side)] = AUMap(y0, y1, x0, x1, np.ascontiguousarray(part[:, y0:y1, x0:x1]))
        return maps

    def _effect_maps(self, effect: AUEffect, rng: np.random.Generator, painter: _Painter) -> np.ndarray:
        i, xs, ys, a = self.identity, self.xs, self.ys, self.anchors
        r = self.canvas.r
        out = np.zeros((5, self.canvas.height, self.canvas.width), np.float32)
        gain = i.expressivity
        wrinkle_gain = 0.5 + 0.7 * i.age
        for k in effect.kernels:
            ax, ay = a[k.anchor]
            for m in ((1.0, -1.0) if k.mirror else (1.0,)):
                centre = (m * (ax + k.offset[0]), ay + k.offset[1])
                weight = _gauss(xs, ys, centre, k.sigma)
                if k.below is not None:
                    y_line = a[k.below][1]
                    weight *= below_weight(ys, y_line)[:, None]
                out[0] += weight * (m * k.shift[0] * r * gain)
                out[1] += weight * (k.shift[1] * r * gain)
        for b in effect.bumps:
            ax, ay = a[b.anchor]
            for m in ((1.0, -1.0) if b.mirror else (1.0,)):
                weight = _gauss(xs, ys, (m * (ax + b.offset[0]), ay + b.offset[1]), b.sigma)
                out[2] += weight * b.height * gain
                out[4] += weight * b.tint
        if effect.creases:
            for c in effect.creases:
                ax, ay = a[c.anchor]
                pts = np.array([(ax + px, ay + py) for px, py in c.points])
                curve = catmull_rom(pts, 8, closed=False) if len(pts) > 2 else pts
                for m in ((1.0, -1.0) if c.mirror else (1.0,)):
                    mask = painter.new()
                    painter.line(mask, _mirror(curve) if m < 0 else curve, c.width)
                    profile = painter.down(mask, blur=c.width * 0.35)
                    out[3] -= profile * c.depth * wrinkle_gain
                    out[4] -= profile * c.darkness * wrinkle_gain
        for s in effect.stipples:
            ax, ay = a[s.anchor]
            mask = painter.new()
            for _ in range(s.count):
                t = rng.uniform(0, 2 * np.pi)
                rad = np.sqrt(rng.uniform(0, 1))
                c = (ax + s.offset[0] + rad * s.radius[0] * np.cos(t), ay + s.offset[1] + rad * s.radius[1] * np.sin(t))
                painter.ellipse(mask, c, (0.009, 0.008), value=int(rng.integers(120, 256)))
            profile = painter.down(mask, blur=0.004)
            out[3] -= profile * s.depth * wrinkle_gain
            out[4] -= profile * s.darkness * wrinkle_gain
        out[2:] *= self.face_mask[None]
        return out
