"""Per-frame rendering of a :class:`~aucli.synth.face.FaceModel`: AUs, eyes, lips, light, pose.

One frame is:

1. the AU effect maps of the active AUs summed over their regions (displacement, relief, creases);
2. the static albedo, relief and silhouette warped by that displacement (one ``cv2.remap``);
3. the eyes and lips drawn explicitly (anti-aliased at 4x in small regions) at positions moved by
   the same displacement, with the lid and lip shape changes of :mod:`aucli.synth.facs`;
4. Lambert + Blinn-Phong shading from the relief's normals, the light given in camera space and
   rotated into the head's frame, so shadows and highlights turn with the head;
5. glasses on top; the result is a premultiplied RGBA canvas in face units;
6. the 2.5D pose: each frame pixel casts a ray onto an ellipsoid around the head (plus the nose's
   relief, for parallax), which gives the canvas point it sees (yaw, pitch, roll up to about 30
   degrees look right). Landmarks go the other way through the same geometry.

Pose angles in degrees: yaw > 0 turns the face towards the image right, pitch > 0 lifts the chin,
roll > 0 rotates clockwise in the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from aucli.synth.face import X_EXTENT, Y_TOP, Canvas, FaceModel, below_weight
from aucli.synth.facs import AU_EFFECTS, SYNTH_AUS

__all__ = ["Light", "Pose", "Framing", "FaceRenderer", "rotation"]


@dataclass(frozen=True)
class Light:
    """Directional light in camera space (x right, y down, z towards the camera)."""

    direction: tuple[float, float, float] = (-0.4, -0.5, 0.77)
    ambient: float = 0.45
    diffuse: float = 0.62
    specular: float = 0.08
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Pose:
    """Head pose (degrees), translation of the head (face units) and scale."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class Framing:
    """Where the head sits in a square frame: ``px_per_unit`` and the head origin (pixels)."""

    size: int
    px_per_unit: float
    origin: tuple[float, float]

    @classmethod
    def video(cls, size: int) -> Framing:
        """Head and shoulders, the face about 40% of the frame height (like lab AU footage)."""
        return cls(size, 0.27 * size, (0.5 * size, 0.42 * size))

    @classmethod
    def crop(cls, size: int) -> Framing:
        """A face crop with about 25% margin around brows and chin (like an aligned face crop)."""
        return cls(size, 0.45 * size, (0.5 * size, 0.45 * size))


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (3, 3) head -> camera for angles in degrees (see the module docstring)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


@dataclass
class _KernelTable:
    """All skin-displacement kernels of one AU as arrays (mirrors expanded), face units."""

    centres: np.ndarray  # (k, 2)
    sigmas: np.ndarray  # (k, 2)
    shifts: np.ndarray  # (k, 2)
    below: np.ndarray  # (k,) y of the "below" line, nan when the kernel moves everything
    au_column: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (k,) AU column of each kernel


@dataclass
class _Scratch:
    disp: np.ndarray
    relief: np.ndarray
    tint: np.ndarray
    touched: list[tuple[int, int, int, int]] = field(default_factory=list)


class FaceRenderer:
    """Renders frames of one subject. Create once per subject and size; call per frame."""

    def __init__(self, model: FaceModel) -> None:
        self.model = model
        self.identity = model.identity
        c: Canvas = model.canvas
        self.canvas = c
        h, w = c.height, c.width
        self.grid_x, self.grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.base = np.ascontiguousarray(np.dstack([model.albedo, model.height]))
        self.scratch = _Scratch(np.zeros((2, h, w), np.float32), np.zeros((h, w), np.float32), np.zeros((h, w), np.float32))
        tables = [self._kernel_table(au) for au in SYNTH_AUS]
        self.all_kernels = _KernelTable(
            np.concatenate([t.centres for t in tables]),
            np.concatenate([t.sigmas for t in tables]),
            np.concatenate([t.shifts for t in tables]),
            np.concatenate([t.below for t in tables]),
            np.concatenate([np.full(len(t.centres), k) for k, t in enumerate(tables)]).astype(np.int64),
        )
        self.au_index = {au: k for k, au in enumerate(SYNTH_AUS)}
        eye = np.array([[getattr(AU_EFFECTS[au].eye, f) for f in ("upper", "lower", "flatten", "inner_raise", "outer_raise")] for au in SYNTH_AUS])
        self.eye_changes = eye.astype(np.float64)  # (n_aus, 5)
        lip_fields = ("upper_thick", "lower_thick", "gap", "lateral_gap", "upper_lateral_raise", "lower_push", "bow_flatten", "corner_thin")
        self.lip_changes = np.array([[getattr(AU_EFFECTS[au].lips, f) for f in lip_fields] for au in SYNTH_AUS], np.float64)
        self.skin_mask = np.clip(model.face_mask - model.hair_mask, 0, 1)

    # ------------------------------------------------------------------------------ displacement
    def _kernel_table(self, au: int) -> _KernelTable:
        a = self.model.anchors
        rows = []
        for k in AU_EFFECTS[au].kernels:
            ax, ay = a[k.anchor]
            below = a[k.below][1] if k.below else np.nan
            for m in ((1.0, -1.0) if k.mirror else (1.0,)):
                rows.append((m * (ax + k.offset[0]), ay + k.offset[1], k.sigma[0], k.sigma[1], m * k.shift[0], k.shift[1], below))
        arr = np.array(rows, np.float64).reshape(-1, 7)
        gain = self.identity.expressivity
        return _KernelTable(arr[:, 0:2], arr[:, 2:4], arr[:, 4:6] * gain, arr[:, 6], np.zeros(len(arr), np.int64))

    def displace(self, points: np.ndarray, amount: np.ndarray, below: np.ndarray | None = None) -> np.ndarray:
        """Move face-unit ``points`` (n, 2) with the skin: the same kernels as the dense field.

        ``amount`` (n_aus, 2): intensity / 5 per side. ``below`` (n,) overrides the smooth
        "below the lip line" weight of jaw kernels (lower-lip contour points: 1, upper: 0).
        """
        pts = np.asarray(points, np.float64)
        t = self.all_kernels
        active = (amount[t.au_column, 0] > 0) | (amount[t.au_column, 1] > 0)
        if not active.any():
            return pts.copy()
        columns = t.au_column[active]
        split_right = 1.0 / (1.0 + np.exp(np.clip(pts[:, 0] / 0.02, -50, 50)))
        side = amount[columns, 0][None] * split_right[:, None] + amount[columns, 1][None] * (1 - split_right[:, None])  # (n, k)
        d = (pts[:, None, :] - t.centres[active][None]) / t.sigmas[active][None]
        weight = np.exp(-0.5 * (d**2).sum(-1)) * side  # (n, k)
        lines = t.below[active]
        has_below = ~np.isnan(lines)
        if has_below.any():
            if below is not None:
                bw = np.broadcast_to(np.asarray(below, np.float64)[:, None], (len(pts), int(has_below.sum())))
            else:
                bw = np.stack([below_weight(pts[:, 1], y) for y in lines[has_below]], 1)
            weight[:, has_below] *= bw
        return pts + weight @ t.shifts[active]

    def _accumulate(self, amount: np.ndarray, wrinkle: np.ndarray) -> bool:
        s = self.scratch
        for y0, y1, x0, x1 in s.touched:
            s.disp[:, y0:y1, x0:x1] = 0
            s.relief[y0:y1, x0:x1] = 0
            s.tint[y0:y1, x0:x1] = 0
        s.touched.clear()
        any_active = False
        for (au, side), m in self.model.au_maps.items():
            k = self.au_index[au]
            a = float(amount[k, side])
            if a <= 1e-3:
                continue
            any_active = True
            wr = float(wrinkle[k, side])
            maps = m.maps
            s.disp[:, m.y0 : m.y1, m.x0 : m.x1] += a * maps[0:2]
            s.relief[m.y0 : m.y1, m.x0 : m.x1] += a * maps[2] + wr * maps[3]
            s.tint[m.y0 : m.y1, m.x0 : m.x1] += wr * maps[4]
            s.touched.append((m.y0, m.y1, m.x0, m.x1))
        return any_active

    # -------------------------------------------------------------------------------- the canvas
    def render_canvas(
        self,
        intensity: np.ndarray,
        *,
        light: Light = Light(),
        rot: np.ndarray | None = None,
        gaze: tuple[float, float] = (0.0, 0.0),
        blink: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Premultiplied RGBA canvas (H, W, 4) float32 and the 5 landmarks (5, 2) in face units.

        Landmarks in ArcFace order: image-left eye, image-right eye, nose tip, image-left and
        image-right mouth corner (as moved by the AUs).

        ``intensity`` (n_aus, 2): AU intensity 0..5 per side (columns: subject's right, left), in
        :data:`~aucli.synth.facs.SYNTH_AUS` order. ``rot`` the head rotation (for the lighting).
        """
        amount = np.clip(np.asarray(intensity, np.float64), 0.0, 5.0) / 5.0
        wrinkle = amount**1.6
        model, c = self.model, self.canvas
        active = self._accumulate(amount, wrinkle)
        s = self.scratch
        if active:
            map_x = self.grid_x - s.disp[0]
            map_y = self.grid_y - s.disp[1]
            warped = cv2.remap(self.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            alpha = cv2.remap(model.alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            albedo = warped[..., :3] * (1.0 + s.tint)[..., None]
            height = warped[..., 3] + s.relief
        else:
            albedo = model.albedo.copy()
            height = model.height.copy()
            alpha = model.alpha
        eye_centres = [self._draw_eye(albedo, side, amount, blink, gaze) for side in (0, 1)]
        corners, mouth_centre = self._draw_lips(albedo, height, amount)
        shaded = self._shade(albedo, height, light, rot)
        rgba = np.empty((c.height, c.width, 4), np.float32)
        rgba[..., :3] = shaded * alpha[..., None]
        rgba[..., 3] = alpha
        if model.glasses is not None:
            g = model.glasses
            rgba = rgba * (1.0 - g[..., 3:4]) + g * np.array([*self._light_gain(light), 1.0], np.float32)
        nose = self.displace(np.array([self.model.anchors["nose_tip"]]), amount)[0]
        landmarks = np.array([eye_centres[0], eye_centres[1], nose, corners[0], corners[1]])
        return rgba, landmarks

    def _light_gain(self, light: Light) -> np.ndarray:
        return (light.ambient + 0.6 * light.diffuse) * np.asarray(light.colour, np.float32)

    def _shade(self, albedo: np.ndarray, height: np.ndarray, light: Light, rot: np.ndarray | None) -> np.ndarray:
        r = self.canvas.r
        gy, gx = np.gradient(height)
        gx *= r
        gy *= r
        inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
        rot = np.eye(3) if rot is None else rot
        l_cam = np.asarray(light.direction, np.float64)
        l_cam = l_cam / np.linalg.norm(l_cam)
        l_head = rot.T @ l_cam
        v_head = rot.T @ np.array([0.0, 0.0, 1.0])
        half = l_head + v_head
        half /= np.linalg.norm(half)
        # normal = (-gx, -gy, 1) * inv ; y grows downwards in both frames
        ndotl = np.clip((-gx * l_head[0] - gy * l_head[1] + l_head[2]) * inv, 0.0, 1.0)
        ndoth = np.clip((-gx * half[0] - gy * half[1] + half[2]) * inv, 0.0, 1.0)
        colour = np.asarray(light.colour, np.float32)
        shade = (light.ambient + light.diffuse * ndotl).astype(np.float32)
        spec = (light.specular * ndoth**24).astype(np.float32) * (0.4 + 0.6 * self.skin_mask)
        return albedo * shade[..., None] * colour + spec[..., None] * colour

    # ---------------------------------------------------------------------------------- features
    def _roi(self, points: np.ndarray, margin: float) -> tuple[int, int, int, int]:
        c = self.canvas
        lo = c.to_px(points.min(axis=0) - margin)
        hi = c.to_px(points.max(axis=0) + margin)
        x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
        x1, y1 = min(int(np.ceil(hi[0])) + 1, c.width), min(int(np.ceil(hi[1])) + 1, c.height)
        return y0, y1, x0, x1

    def _roi_px(self, points: np.ndarray, roi: tuple[int, int, int, int], ss: int) -> np.ndarray:
        y0, _, x0, _ = roi
        px = self.canvas.to_px(points)
        px = (px - np.array([x0, y0]) + 0.5) * ss - 0.5
        return np.round(px * 16).astype(np.int32)

    def _draw_eye(self, albedo: np.ndarray, side: int, amount: np.ndarray, blink: float, gaze: tuple[float, float]) -> np.ndarray:
        i, a = self.identity, self.model.anchors
        m = -1.0 if side == 0 else 1.0  # side 0 (subject's right) is x < 0
        inner0 = np.array([m * abs(a["eye_in"][0]), a["eye_in"][1]])
        outer0 = np.array([m * abs(a["eye_out"][0]), a["eye_out"][1]])
        inner, outer = self.displace(np.array([inner0, outer0]), amount)
        ch = amount[:, side] @ self.eye_changes  # upper, lower, flatten, inner_raise, outer_raise
        upper = max(1.0 + ch[0], 0.15)
        lower = max(1.0 + ch[1], 0.2)
        flatten = float(np.clip(ch[2], 0.0, 1.0))
        hu = i.eye_open * upper
        hl = i.eye_lower * lower
        s = np.linspace(0.0, 1.0, 15)
        base = inner[None] + (outer - inner)[None] * s[:, None]
        pu = np.sin(np.pi * s**0.85) ** 0.8 * (1 + ch[3] * (1 - s) ** 2 * 1.5 + ch[4] * s**2 * 1.5)
        pl = np.sin(np.pi * s) ** (1.0 - 0.75 * flatten)
        upper_y = base[:, 1] - hu * pu * (1 - blink) + blink * hl * pl * 0.9
        lower_y = base[:, 1] + hl * pl
        upper_c = np.stack([base[:, 0], upper_y], 1)
        lower_c = np.stack([base[:, 0], lower_y], 1)
        opening = np.vstack([upper_c, lower_c[::-1]])
        roi = self._roi(opening, 0.05)
        y0, y1, x0, x1 = roi
        if y1 <= y0 or x1 <= x0:
            return (inner + outer) / 2
        ss = 4
        shape = ((y1 - y0) * ss, (x1 - x0) * ss)
        open_mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(open_mask, [self._roi_px(opening, roi, ss)], 255, cv2.LINE_AA, 4)
        iris_r = 0.39 * i.eye_width
        centre = (inner + outer) / 2 + np.array([m * 0.006 + gaze[0], -0.2 * i.eye_open + gaze[1]])
        iris = np.zeros(shape, np.uint8)
        pupil = np.zeros(shape, np.uint8)
        cpx = self._roi_px(centre[None], roi, ss)[0]
        rpx = int(round(iris_r * self.canvas.r * ss * 16))
        cv2.circle(iris, (int(cpx[0]), int(cpx[1])), rpx, 255, -1, cv2.LINE_AA, 4)
        cv2.circle(pupil, (int(cpx[0]), int(cpx[1])), int(rpx * 0.42), 255, -1, cv2.LINE_AA, 4)
        lash = np.zeros(shape, np.uint8)
        thick = max(1, int(round((0.013 if i.sex == "F" else 0.01) * self.canvas.r * ss)))
        cv2.polylines(lash, [self._roi_px(upper_c, roi, ss)], False, 255, thick, cv2.LINE_AA, 4)
        lower_line = np.zeros(shape, np.uint8)
        cv2.polylines(lower_line, [self._roi_px(lower_c, roi, ss)], False, 140, max(1, thick // 2), cv2.LINE_AA, 4)
        crease_c = upper_c + np.array([0.0, -(0.018 + 0.45 * hu * (1 - blink))])[None] * (0.3 + 0.7 * np.sin(np.pi * s)[:, None])
        cv2.polylines(lower_line, [self._roi_px(crease_c[2:-2], roi, ss)], False, 110, max(1, thick // 2), cv2.LINE_AA, 4)
        size = (x1 - x0, y1 - y0)
        down = lambda mk: cv2.resize(mk, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0  # noqa: E731
        o, ir, pu_m, la, ll = down(open_mask), down(iris), down(pupil), down(lash), down(lower_line)
        patch = albedo[y0:y1, x0:x1]
        sclera = np.array([0.86, 0.83, 0.8], np.float32)
        iris_col = np.asarray(i.iris_colour, np.float32)
        inside = sclera[None, None] * (1 - ir[..., None]) + iris_col * ir[..., None]
        inside = inside * (1 - pu_m[..., None]) + np.array([0.03, 0.02, 0.02], np.float32) * pu_m[..., None]
        # catch-light
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        hl_px = self.canvas.to_px((centre + np.array([-0.3, -0.35]) * iris_r)[None])[0]
        glint = np.exp(-(((xx - hl_px[0]) ** 2 + (yy - hl_px[1]) ** 2) / (2 * (0.22 * iris_r * self.canvas.r + 0.35) ** 2)))
        inside = inside + 0.5 * glint[..., None] * ir[..., None]
        patch[:] = patch * (1 - o[..., None]) + inside * o[..., None]
        lash_col = np.asarray(i.brow_colour, np.float32) * 0.5
        patch[:] = patch * (1 - 0.9 * la[..., None]) + lash_col * (0.9 * la[..., None])
        patch *= (1 - 0.35 * ll)[..., None]
        return (inner + outer) / 2 + np.array([0.0, -0.1 * i.eye_open])

    def _draw_lips(self, albedo: np.ndarray, height: np.ndarray, amount: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        i = self.identity
        mean = amount.mean(axis=1)
        ch = mean @ self.lip_changes
        per_side = amount.T @ self.lip_changes  # (2, n_fields)
        upper_thick, lower_thick, gap25 = ch[0], ch[1], ch[2]
        lower_push, bow_flatten = ch[5], ch[6]
        n = 33
        t = np.linspace(-1.0, 1.0, n)
        at = np.abs(t)
        right = t < 0
        lateral_gap = np.where(right, per_side[0, 3], per_side[1, 3]) * np.clip((np.where(right, amount[self.au_index[10], 0], amount[self.au_index[10], 1]) - 0.4) * 2.5, 0, 1)
        lateral_raise = np.where(right, per_side[0, 4], per_side[1, 4])
        corner_thin = np.where(right, per_side[0, 7], per_side[1, 7])
        ut = i.upper_lip * float(np.clip(1 + upper_thick, 0.3, 1.6))
        lt = i.lower_lip * float(np.clip(1 + lower_thick, 0.3, 1.6))
        x = t * i.mouth_width
        y_line = i.mouth_y - 0.014 * lower_push * (1 - t**2) / 0.5 * 0.5
        bow = 0.3 * (1 - np.clip(bow_flatten, 0, 1))
        thin = 1 - np.clip(corner_thin, 0, 0.9) * at**3
        u_prof = (1 - at**2.5) ** 0.55 * (1 - bow * np.exp(-((t / 0.1) ** 2))) * (1 + 0.12 * np.exp(-(((at - 0.22) / 0.1) ** 2))) * thin
        l_prof = (1 - at**2.2) ** 0.6 * thin
        g_centre = gap25 * (1 - at**2) ** 0.8
        lat = lateral_gap * np.sin(np.pi * at) ** 2
        upper_outer = np.stack([x, y_line - ut * u_prof - lateral_raise * np.sin(np.pi * at) ** 1.5 - 0.4 * g_centre - lat], 1)
        upper_inner = np.stack([x, y_line - 0.4 * g_centre - lat], 1)
        lower_inner = np.stack([x, y_line + 0.6 * g_centre], 1)
        lower_outer = np.stack([x, y_line + 0.6 * g_centre + lt * l_prof + 0.01 * lower_push * (1 - t**2)], 1)
        w_upper = 0.5 * at**3
        w_lower = 1 - 0.5 * at**3
        upper_outer = self.displace(upper_outer, amount, w_upper)
        upper_inner = self.displace(upper_inner, amount, w_upper)
        lower_inner = self.displace(lower_inner, amount, w_lower)
        lower_outer = self.displace(lower_outer, amount, w_lower)
        lips = np.vstack([upper_outer, lower_outer[::-1]])
        roi = self._roi(lips, 0.03)
        y0, y1, x0, x1 = roi
        ss = 4
        shape = ((y1 - y0) * ss, (x1 - x0) * ss)
        size = (x1 - x0, y1 - y0)
        down = lambda mk: cv2.resize(mk, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0  # noqa: E731
        upper_m = np.zeros(shape, np.uint8)
        lower_m = np.zeros(shape, np.uint8)
        cv2.fillPoly(upper_m, [self._roi_px(np.vstack([upper_outer, upper_inner[::-1]]), roi, ss)], 255, cv2.LINE_AA, 4)
        cv2.fillPoly(lower_m, [self._roi_px(np.vstack([lower_inner, lower_outer[::-1]]), roi, ss)], 255, cv2.LINE_AA, 4)
        opening_size = float(np.max(lower_inner[:, 1] - upper_inner[:, 1]))
        mouth = np.zeros(shape, np.uint8)
        teeth = np.zeros(shape, np.uint8)
        line = np.zeros(shape, np.uint8)
        if opening_size > 0.003:
            cv2.fillPoly(mouth, [self._roi_px(np.vstack([upper_inner, lower_inner[::-1]]), roi, ss)], 255, cv2.LINE_AA, 4)
            tooth = upper_inner + np.array([0.0, 0.032])
            cv2.fillPoly(teeth, [self._roi_px(np.vstack([upper_inner, tooth[::-1]]), roi, ss)], 255, cv2.LINE_AA, 4)
            if opening_size > 0.06:
                ltooth = lower_inner - np.array([0.0, 0.022])
                cv2.fillPoly(teeth, [self._roi_px(np.vstack([ltooth, lower_inner[::-1]]), roi, ss)], 200, cv2.LINE_AA, 4)
            teeth = cv2.bitwise_and(teeth, mouth)
        mid = (upper_inner + lower_inner) / 2
        cv2.polylines(line, [self._roi_px(mid, roi, ss)], False, 255, max(1, int(round(0.008 * self.canvas.r * ss))), cv2.LINE_AA, 4)
        um, lm, mo, te, li = down(upper_m), down(lower_m), down(mouth), down(teeth), down(line)
        patch = albedo[y0:y1, x0:x1]
        lip_col = np.asarray(i.lip_colour, np.float32)
        patch[:] = patch * (1 - um[..., None]) + (lip_col * 0.86) * um[..., None]
        patch[:] = patch * (1 - lm[..., None]) + lip_col * lm[..., None]
        interior = np.array([0.16, 0.05, 0.06], np.float32)
        patch[:] = patch * (1 - mo[..., None]) + interior * mo[..., None]
        patch[:] = patch * (1 - te[..., None]) + np.array([0.84, 0.8, 0.72], np.float32) * te[..., None]
        patch *= (1 - 0.55 * li * (1 - mo))[..., None]
        hpatch = height[y0:y1, x0:x1]
        hpatch += 0.018 * cv2.GaussianBlur(um, (0, 0), 0.8) + 0.028 * cv2.GaussianBlur(lm, (0, 0), 1.0) - 0.03 * mo
        corners = [upper_outer[0], upper_outer[-1]]
        return corners, mid[n // 2]

    # ------------------------------------------------------------------------------------- pose
    def _ray_to_canvas(self, u: np.ndarray, v: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head-local frame coordinates (face units, relative to the head origin) -> canvas pixels."""
        ax, ay, az = self.model.ellipsoid
        yc = self.model.ellipsoid_y
        inv_axes2 = np.array([1 / ax**2, 1 / ay**2, 1 / az**2])
        rt = rot.T
        d = rt[:, 2]
        a_coef = float((d * d * inv_axes2).sum())
        ez = rot[:2, 2]  # head z-axis in the image plane
        c = self.canvas
        relief = self.model.nose_relief
        uu, vv = u, v
        x = y = None
        for it in range(3):
            vy = vv - yc
            d0x = rt[0, 0] * uu + rt[0, 1] * vy
            d0y = rt[1, 0] * uu + rt[1, 1] * vy
            d0z = rt[2, 0] * uu + rt[2, 1] * vy
            b = 2 * (d0x * d[0] * inv_axes2[0] + d0y * d[1] * inv_axes2[1] + d0z * d[2] * inv_axes2[2])
            cc = d0x * d0x * inv_axes2[0] + d0y * d0y * inv_axes2[1] + d0z * d0z * inv_axes2[2] - 1
            disc = np.maximum(b * b - 4 * a_coef * cc, 0.0)
            tt = (-b + np.sqrt(disc)) / (2 * a_coef)
            x = d0x + tt * d[0]
            y = d0y + tt * d[1] + yc
            if it == 2:
                break
            px = ((x + X_EXTENT) * c.r - 0.5).astype(np.float32)
            py = ((y - Y_TOP) * c.r - 0.5).astype(np.float32)
            h = cv2.remap(relief, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            uu = u - h * ez[0]
            vv = v - h * ez[1]
        return ((x + X_EXTENT) * c.r - 0.5).astype(np.float32), ((y - Y_TOP) * c.r - 0.5).astype(np.float32)

    def project_canvas(self, rgba: np.ndarray, pose: Pose, framing: Framing, rot: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Warp a canvas into the frame: premultiplied RGBA of the frame region ``(y0, y1, x0, x1)``."""
        rot = rotation(pose.yaw, pose.pitch, pose.roll) if rot is None else rot
        s = framing.px_per_unit * pose.scale
        ox = framing.origin[0] + pose.dx * s
        oy = framing.origin[1] + pose.dy * s
        reach = 1.75 * s
        size = framing.size
        x0, x1 = max(int(ox - reach), 0), min(int(ox + reach) + 1, size)
        y0, y1 = max(int(oy - 1.9 * s), 0), min(int(oy + 1.6 * s) + 1, size)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 0, 4), np.float32), (0, 0, 0, 0)
        u = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - ox) / s)[None, :]
        v = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - oy) / s)[:, None]
        u, v = np.broadcast_arrays(u, v)
        map_x, map_y = self._ray_to_canvas(u, v, rot)
        out = cv2.remap(rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out, (y0, y1, x0, x1)

    def project_points(self, points: np.ndarray, pose: Pose, framing: Framing, rot: np.ndarray | None = None) -> np.ndarray:
        """Face-unit canvas points (n, 2) -> frame pixel coordinates (n, 2), pixel centres integer."""
        rot = rotation(pose.yaw, pose.pitch, pose.roll) if rot is None else rot
        ax, ay, az = self.model.ellipsoid
        yc = self.model.ellipsoid_y
        pts = np.asarray(points, np.float64)
        inside = 1.0 - (pts[:, 0] / ax) ** 2 - ((pts[:, 1] - yc) / ay) ** 2
        z = az * np.sqrt(np.clip(inside, 0.0, None))
        c = self.canvas
        px = c.to_px(pts).astype(np.float32)
        h = cv2.remap(self.model.nose_relief, px[:, 0:1], px[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[:, 0]
        local = np.stack([pts[:, 0], pts[:, 1] - yc, z + h], 1)
        cam = local @ rot.T
        s = framing.px_per_unit * pose.scale
        ox = framing.origin[0] + pose.dx * s
        oy = framing.origin[1] + pose.dy * s
        return np.stack([ox + s * cam[:, 0] - 0.5, oy + s * (cam[:, 1] + yc) - 0.5], 1)
