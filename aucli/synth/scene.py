"""Everything around the face: background, neck and shoulders, occluders, camera, and their timelines.

A :class:`Scene` is one recording (one video): a cluttered room behind the subject, the subject's
neck and clothes, the light, and the camera's look (gain, contrast, colour cast, noise, blur).
:class:`Nuisance` holds the per-frame tracks of that recording: head pose and translation, light
drift, gaze, blinks, and occlusion episodes (a hand or an object passing in front of the face).
:func:`compose_frame` puts a rendered head into the scene and returns the uint8 frame with its
ground truth (5 landmarks, face box, occluded fraction).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aucli.synth.face import catmull_rom
from aucli.synth.identity import Identity
from aucli.synth.render import FaceRenderer, Framing, Light, Pose, rotation

__all__ = ["Scene", "Nuisance", "FrameTruth", "sample_scene", "sample_nuisance", "neutral_nuisance", "compose_frame", "smooth_process"]


def smooth_process(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """A stationary Gaussian process (n,), zero mean, unit variance, Gaussian autocorrelation.

    White noise filtered by a Gaussian kernel (normalised so that the output variance is 1);
    the noise is drawn longer than ``n`` so the ends are as random as the middle.
    """
    if sigma_frames <= 0.5:
        return rng.standard_normal(n)
    half = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_frames) ** 2)
    kernel /= np.sqrt((kernel**2).sum())
    noise = rng.standard_normal(n + 2 * half)
    return np.convolve(noise, kernel, mode="valid")[:n]


@dataclass
class Scene:
    """Static layers and camera settings of one recording (frame size ``size``)."""

    size: int
    framing: Framing
    background: np.ndarray  # (S, S, 3) float32 with the body already drawn in
    light: Light
    gain: float
    contrast: float
    gamma: float
    cast: np.ndarray  # (3,) colour multipliers
    noise_sigma: float  # in 0..1 units
    blur_sigma: float  # pixels
    noise_bank: np.ndarray  # (k, S + 16, S + 16, 3) float32 unit noise


@dataclass
class Nuisance:
    """Per-frame tracks of one recording; every array has ``n_frames`` rows."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    light_azimuth: np.ndarray  # degrees, added to the scene light's direction
    gaze: np.ndarray  # (n, 2) face units
    blink: np.ndarray  # (n,) 0 open .. 1 closed
    occluder: np.ndarray  # (n, 6): kind (0 none, 1 hand, 2 bar), cx, cy, angle, length, width (frame-relative)
    occluder_colour: np.ndarray  # (n, 3)
    blur_extra: np.ndarray  # (n,) motion blur in pixels
    noise_index: np.ndarray  # (n, 3) int: bank index, offset y, offset x

    @property
    def n_frames(self) -> int:
        return len(self.yaw)

    def pose(self, t: int) -> Pose:
        return Pose(float(self.yaw[t]), float(self.pitch[t]), float(self.roll[t]), float(self.dx[t]), float(self.dy[t]), float(self.scale[t]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The tracks the manifest keeps (pose, translation, gaze, blink, occluder)."""
        return {
            "pose": np.stack([self.yaw, self.pitch, self.roll], 1).astype(np.float32),
            "translation": np.stack([self.dx, self.dy, self.scale], 1).astype(np.float32),
            "gaze": self.gaze.astype(np.float32),
            "blink": self.blink.astype(np.float32),
            "occluder": self.occluder.astype(np.float32),
        }


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one rendered frame, in frame pixel coordinates (pixel centres integer)."""

    landmarks: np.ndarray  # (5, 2): image-left eye, image-right eye, nose, mouth left, mouth right
    box: np.ndarray  # (4,) x1, y1, x2, y2 of the face outline (brows to chin, ear to ear excluded)
    occluded: float  # fraction of the face box under an occluder


def _room(rng: np.random.Generator, size: int) -> np.ndarray:
    """A blurred, cluttered room: wall gradient, furniture blocks, frames, a lamp, texture."""
    base = rng.uniform(0.25, 0.8) * np.exp(rng.normal(0, 0.15, 3))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xs + np.sin(angle) * ys)[..., None] * rng.uniform(-0.35, 0.35)
    img = np.clip(base[None, None, :] * (1 + grad), 0, 1).astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):
        colour = rng.uniform(0.05, 0.9) * np.exp(rng.normal(0, 0.3, 3))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.1, 0.6, 2) * size
        pts = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], np.int32)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
        m = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - m) + np.clip(colour, 0, 1).astype(np.float32) * m
    for _ in range(int(rng.integers(0, 3))):
        colour = np.clip(rng.uniform(0.3, 1.0) * np.exp(rng.normal(0, 0.3, 3)), 0, 1)
        c = (int(rng.uniform(0, size)), int(rng.uniform(0, size * 0.6)))
        axes = (int(rng.uniform(0.03, 0.12) * size), int(rng.uniform(0.03, 0.12) * size))
        mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(mask, c, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
        m = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - m) + colour.astype(np.float32) * m
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), max(size / 160, 0.5))
    img = img * (1 + 0.06 * noise[..., None])
    return cv2.GaussianBlur(img, (0, 0), size / 150).astype(np.float32)


def _draw_body(rng: np.random.Generator, identity: Identity, img: np.ndarray, framing: Framing) -> np.ndarray:
    """Neck and shoulders (clothes) under the head's rest position."""
    size = framing.size
    s = framing.px_per_unit
    ox, oy = framing.origin
    to_px = lambda pts: np.round((np.asarray(pts) * s + np.array([ox, oy])) * 16).astype(np.int32)  # noqa: E731
    neck_w = identity.jaw_width * rng.uniform(0.72, 0.85)
    neck = np.array([(-neck_w, identity.mouth_y), (neck_w, identity.mouth_y), (neck_w * 1.05, 1.5), (-neck_w * 1.05, 1.5)])
    skin = np.asarray(identity.skin, np.float32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [to_px(neck)], 255, cv2.LINE_AA, 4)
    m = (mask.astype(np.float32) / 255)[..., None]
    ys = (np.arange(size, dtype=np.float32) - oy) / s
    shadow = np.clip((ys - identity.chin_y) / 0.35, 0.0, 1.0)[:, None, None]
    neck_colour = skin * (0.55 + 0.3 * shadow)
    img = img * (1 - m) + neck_colour * m
    cloth = np.clip(rng.uniform(0.05, 0.85) * np.exp(rng.normal(0, 0.35, 3)), 0, 1).astype(np.float32)
    shoulder_y = identity.chin_y + rng.uniform(0.25, 0.4)
    right = np.array([(-neck_w * 0.9, shoulder_y - 0.05), (-0.7, shoulder_y + 0.05), (-1.3, shoulder_y + 0.2), (-1.65, shoulder_y + 0.55), (-1.8, 3.0)])
    collar = rng.uniform(0.12, 0.3)
    outline = np.vstack([right[::-1], [(-neck_w * 0.3, shoulder_y + collar), (0.0, shoulder_y + collar * 1.4), (neck_w * 0.3, shoulder_y + collar)], right * np.array([-1, 1])])
    outline = np.vstack([catmull_rom(outline, 6, closed=False), [(1.8, 3.2), (-1.8, 3.2)]])
    mask[:] = 0
    cv2.fillPoly(mask, [to_px(outline)], 255, cv2.LINE_AA, 4)
    m = (mask.astype(np.float32) / 255)[..., None]
    xs = (np.arange(size, dtype=np.float32) - ox) / s
    fold = 1 + 0.1 * np.sin(xs * rng.uniform(4, 9))[None, :, None]
    img = img * (1 - m) + cloth * fold * m
    return img.astype(np.float32)


def sample_scene(rng: np.random.Generator, identity: Identity, size: int, *, framing: str = "video") -> Scene:
    """Draw the static layers and camera settings of one recording."""
    fr = Framing.video(size) if framing == "video" else Framing.crop(size)
    background = _draw_body(rng, identity, _room(rng, size), fr)
    azimuth = np.radians(rng.uniform(-60, 60))
    elevation = np.radians(rng.uniform(10, 50))
    direction = (float(np.sin(azimuth) * np.cos(elevation)), float(-np.sin(elevation)), float(np.cos(azimuth) * np.cos(elevation)))
    light = Light(
        direction=direction,
        ambient=float(rng.uniform(0.3, 0.55)),
        diffuse=float(rng.uniform(0.5, 0.8)),
        specular=float(rng.uniform(0.03, 0.12)),
        colour=tuple(float(v) for v in np.clip(np.exp(rng.normal(0, 0.03, 3)), 0.9, 1.1)),  # type: ignore[arg-type]
    )
    bank = rng.standard_normal((3, size + 16, size + 16, 3)).astype(np.float32)
    return Scene(
        size=size,
        framing=fr,
        background=background,
        light=light,
        gain=float(rng.uniform(0.85, 1.2)),
        contrast=float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.15)),
        cast=np.exp(rng.normal(0, 0.025, 3)).astype(np.float32),
        noise_sigma=float(rng.uniform(0.004, 0.025)),
        blur_sigma=float(rng.uniform(0.0, 0.6) * size / 224),
        noise_bank=bank,
    )


def neutral_nuisance(n_frames: int, size: int = 224) -> Nuisance:
    """Frontal, still, unoccluded tracks (for contact sheets and the identity gate)."""
    z = np.zeros(n_frames)
    return Nuisance(
        yaw=z.copy(), pitch=z.copy(), roll=z.copy(), dx=z.copy(), dy=z.copy(), scale=np.ones(n_frames),
        light_azimuth=z.copy(), gaze=np.zeros((n_frames, 2)), blink=z.copy(),
        occluder=np.zeros((n_frames, 6)), occluder_colour=np.zeros((n_frames, 3)),
        blur_extra=z.copy(), noise_index=np.zeros((n_frames, 3), np.int64),
    )  # fmt: skip


def sample_nuisance(rng: np.random.Generator, n_frames: int, identity: Identity, *, fps: float = 25.0, size: int = 224, occlusion_rate: float = 0.25, pose_scale: float = 1.0) -> Nuisance:
    """Per-frame pose, light drift, gaze, blinks and occlusion episodes of one recording."""
    n = n_frames
    slow, fast = 1.4 * fps, 0.35 * fps

    def track(std: float, limit: float, mean_std: float) -> np.ndarray:
        x = rng.normal(0, mean_std) + std * (0.85 * smooth_process(rng, n, slow) + 0.5 * smooth_process(rng, n, fast))
        return limit * np.tanh(x * pose_scale / limit)

    yaw = track(8.0, 22.0, 4.0)
    pitch = track(5.0, 16.0, 3.0)
    roll = track(4.0, 12.0, 2.0)
    dx = 0.04 * smooth_process(rng, n, slow) + rng.normal(0, 0.03)
    dy = 0.03 * smooth_process(rng, n, slow) + rng.normal(0, 0.03)
    scale = np.exp(rng.normal(0, 0.06) + 0.02 * smooth_process(rng, n, slow))
    light_azimuth = 6.0 * smooth_process(rng, n, 3 * fps)
    # gaze: fixations with saccades about once a second
    gaze = np.zeros((n, 2))
    t = 0
    while t < n:
        length = int(rng.integers(int(0.4 * fps), int(2.0 * fps)))
        gaze[t : t + length] = (rng.normal(0, 0.018), rng.normal(0, 0.008))
        t += length
    # blinks: about every 3-4 s, 5-7 frames at 25 fps (close fast, open slower)
    blink = np.zeros(n)
    t = int(rng.exponential(3.5 * fps))
    while t < n:
        close, reopen = max(1, round(0.08 * fps)), max(2, round(0.16 * fps))
        profile = np.concatenate([np.linspace(0.3, 1.0, close), np.linspace(0.8, 0.1, reopen)])
        blink[t : t + len(profile)] = profile[: max(0, min(len(profile), n - t))]
        t += len(profile) + int(rng.exponential(3.5 * fps)) + int(0.5 * fps)
    occluder = np.zeros((n, 6))
    occluder_colour = np.zeros((n, 3))
    episodes = int(rng.random() < occlusion_rate) + int(rng.random() < occlusion_rate * 0.3)
    for _ in range(episodes):
        duration = int(rng.uniform(1.0, 3.0) * fps)
        if duration >= n:
            duration = max(n // 2, 1)
        start = int(rng.integers(0, max(n - duration, 1)))
        kind = 1 if rng.random() < 0.6 else 2
        target = np.array([rng.uniform(0.38, 0.62), rng.uniform(0.38, 0.62)])
        entry = target + np.array([rng.choice([-0.7, 0.7]) * rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.7)])
        angle = rng.uniform(-70, 70)
        length = rng.uniform(0.22, 0.35) if kind == 1 else rng.uniform(0.45, 0.8)
        width = rng.uniform(0.14, 0.22) if kind == 1 else rng.uniform(0.04, 0.09)
        colour = np.asarray(identity.skin) * rng.uniform(0.9, 1.05) if kind == 1 else np.clip(rng.uniform(0.05, 0.95, 3), 0, 1)
        ramp = max(int(0.3 * fps), 1)
        for k in range(duration):
            w = min(k / ramp, 1.0, (duration - 1 - k) / ramp)
            w = w * w * (3 - 2 * w)
            centre = entry + (target - entry) * w
            occluder[start + k] = (kind, centre[0], centre[1], angle, length, width)
            occluder_colour[start + k] = colour
    speed = np.abs(np.gradient(yaw)) + np.abs(np.gradient(pitch))
    blur_extra = np.clip((speed - 0.8) * 0.35, 0.0, 2.0) * size / 224
    noise_index = np.stack([rng.integers(0, 3, n), rng.integers(0, 16, n), rng.integers(0, 16, n)], 1)
    return Nuisance(yaw, pitch, roll, dx, dy, scale, light_azimuth, gaze, blink, occluder, occluder_colour, blur_extra, noise_index)


def _occluder_mask(size: int, params: np.ndarray) -> np.ndarray:
    kind, cx, cy, angle, length, width = params
    mask = np.zeros((size, size), np.uint8)
    c = np.array([cx, cy]) * size
    a = np.radians(angle)
    along = np.array([np.cos(a), np.sin(a)])
    across = np.array([-np.sin(a), np.cos(a)])
    to_fx = lambda p: np.round(p * 16).astype(np.int32)  # noqa: E731
    if int(kind) == 1:  # a hand: palm and four fingers
        palm = c - along * length * size * 0.15
        cv2.ellipse(mask, tuple(int(v) for v in to_fx(palm)), (int(length * size * 0.3 * 16), int(width * size * 0.5 * 16)), angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
        for k in range(4):
            base = palm + across * (k - 1.5) * width * size * 0.24
            tip = base + along * length * size * (0.55 + 0.08 * (1.5 - abs(k - 1.5)))
            cv2.line(mask, tuple(int(v) for v in to_fx(base)), tuple(int(v) for v in to_fx(tip)), 255, max(1, int(width * size * 0.2)), cv2.LINE_AA, 4)
        arm_end = palm - along * size * 0.8
        cv2.line(mask, tuple(int(v) for v in to_fx(palm)), tuple(int(v) for v in to_fx(arm_end)), 255, max(1, int(width * size * 0.8)), cv2.LINE_AA, 4)
    else:  # a bar-like object (pen, phone, cup handle, microphone)
        half = along * length * size / 2
        quad = np.array([c - half - across * width * size / 2, c + half - across * width * size / 2, c + half + across * width * size / 2, c - half + across * width * size / 2])
        cv2.fillPoly(mask, [to_fx(quad)], 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255.0


def compose_frame(
    renderer: FaceRenderer,
    scene: Scene,
    nuisance: Nuisance,
    t: int,
    intensity: np.ndarray,
    *,
    camera_effects: bool = True,
) -> tuple[np.ndarray, FrameTruth]:
    """Render frame ``t``: the head with AU ``intensity`` (n_aus, 2) in the scene. Returns uint8 RGB."""
    size = scene.size
    pose = nuisance.pose(t)
    rot = rotation(pose.yaw, pose.pitch, pose.roll)
    base = scene.light
    if nuisance.light_azimuth[t] != 0.0:
        a = np.radians(nuisance.light_azimuth[t])
        d = np.asarray(base.direction)
        d = np.array([d[0] * np.cos(a) + d[2] * np.sin(a), d[1], -d[0] * np.sin(a) + d[2] * np.cos(a)])
        light = Light(tuple(d), base.ambient, base.diffuse, base.specular, base.colour)  # type: ignore[arg-type]
    else:
        light = base
    rgba, landmarks_canvas = renderer.render_canvas(intensity, light=light, rot=rot, gaze=tuple(nuisance.gaze[t]), blink=float(nuisance.blink[t]))
    head, (y0, y1, x0, x1) = renderer.project_canvas(rgba, pose, scene.framing, rot)
    frame = scene.background.copy()
    if head.size:
        region = frame[y0:y1, x0:x1]
        region *= 1.0 - head[..., 3:4]
        region += head[..., :3]
    amount = np.clip(intensity, 0, 5) / 5.0
    landmarks = renderer.project_points(landmarks_canvas, pose, scene.framing, rot)
    outline = renderer.model.outline
    i = renderer.identity
    face_pts = outline[(outline[:, 1] > i.eye_y - i.brow_gap - 0.08)]
    face_pts = renderer.displace(face_pts[:: max(1, len(face_pts) // 40)], amount)
    projected = renderer.project_points(face_pts, pose, scene.framing, rot)
    box = np.array([projected[:, 0].min(), projected[:, 1].min(), projected[:, 0].max(), projected[:, 1].max()])
    occluded = 0.0
    occ = nuisance.occluder[t]
    if occ[0] > 0:
        mask = _occluder_mask(size, occ)
        shade = 0.75 + 0.35 * np.linspace(1, 0, size, dtype=np.float32)[:, None]
        colour = nuisance.occluder_colour[t].astype(np.float32)[None, None, :] * shade[..., None]
        frame = frame * (1 - mask[..., None]) + colour * mask[..., None]
        bx0, by0 = max(int(box[0]), 0), max(int(box[1]), 0)
        bx1, by1 = min(int(np.ceil(box[2])), size), min(int(np.ceil(box[3])), size)
        if bx1 > bx0 and by1 > by0:
            occluded = float(mask[by0:by1, bx0:bx1].mean())
    if camera_effects:
        sigma = float(np.hypot(scene.blur_sigma, nuisance.blur_extra[t]))
        if sigma > 0.25:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame = frame * (scene.cast * scene.gain)
        frame = (frame - 0.5) * scene.contrast + 0.5
        np.clip(frame, 0.0, 1.0, out=frame)
        if scene.gamma != 1.0:
            frame = frame ** np.float32(scene.gamma)
        k, oy, ox = (int(v) for v in nuisance.noise_index[t])
        frame = frame + scene.noise_sigma * scene.noise_bank[k, oy : oy + size, ox : ox + size]
    out = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out, FrameTruth(landmarks.astype(np.float32), box.astype(np.float32), occluded)
