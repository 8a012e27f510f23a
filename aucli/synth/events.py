"""AU timelines: when each AU is active, how strongly, with onset, apex and offset, at 25 fps.

The model is a latent Gaussian factor model (a Gaussian copula), chosen because it reproduces
target occurrence rates *exactly in expectation* while keeping realistic co-occurrence and time
structure:

- six latent expression factors, each a smooth random process in time: ``smile`` (drives AU6,
  AU12, AU7, AU10, AU14, AU25), ``surprise`` (AU1, AU2, AU25, AU26), ``frown`` (AU4, AU7, AU17,
  AU23, AU24, AU9), ``tension`` (the lower-face press and sadness: AU15, AU17, AU23, AU24, AU14,
  AU1), ``disgust`` (AU9, AU10, AU4), ``talk`` (AU25, AU26, AU10, AU17, AU23);
- per AU a propensity ``z_a(t) = sum_k L[a, k] f_k(t) + sqrt(1 - |L_a|^2) e_a(t)`` with an AU's
  own process ``e_a``; every process has unit variance, so ``z_a`` is standard normal given the
  task's factor means;
- subjects and recordings shift the factors (random effects: some people smile more), and each
  task (BP4D's T1..T8 elicitation tasks) shifts their means (T1 amusement: smile and talk up);
- AU ``a`` occurs where ``z_a`` exceeds a threshold solved from the task mix so that the expected
  occurrence rate equals the target (BP4D's table; plausible rates for AU9, AU25, AU26);
- intensity rises with the excess over the threshold: ``c = 5 (1 - exp(-(z - thr + d) / s))``,
  0.5 (FACS level A) exactly at the threshold, saturating towards 5 (E) with plateaus at apex.

Events are the runs of frames with level >= 1 (the label's onset .. offset); the apex is the run's
peak. ``--micro`` clips instead hold one brief (< 0.5 s), low-intensity event in an otherwise
neutral sequence, with CASME II-style AU codes (``4+L10``, ``R12``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aucli.synth.facs import SYNTH_AUS
from aucli.synth.scene import smooth_process

__all__ = [
    "TARGET_RATES",
    "BP4D_RATES",
    "FACTORS",
    "LOADINGS",
    "Task",
    "TASKS",
    "TimelineModel",
    "Timeline",
    "Event",
    "MicroEvent",
    "extract_events",
    "levels_from_intensity",
    "sample_micro_clip",
    "MICRO_CODES",
]

#: BP4D occurrence rates (DESIGN.md section 4).
BP4D_RATES: dict[int, float] = {1: 0.21, 2: 0.17, 4: 0.20, 6: 0.46, 7: 0.55, 10: 0.59, 12: 0.56, 14: 0.47, 15: 0.17, 17: 0.34, 23: 0.17, 24: 0.15}
#: Target rates of every rendered AU: BP4D's, plus AU9, AU25 and AU26 (level >= 1).
TARGET_RATES: dict[int, float] = {**BP4D_RATES, 9: 0.07, 25: 0.40, 26: 0.18}

FACTORS: tuple[str, ...] = ("smile", "surprise", "frown", "tension", "disgust", "talk")

#: Factor loadings per AU: how much of the AU's propensity each expression factor explains.
LOADINGS: dict[int, dict[str, float]] = {
    1: {"surprise": 0.88, "tension": 0.20, "frown": 0.10},
    2: {"surprise": 0.90},
    4: {"frown": 0.85, "disgust": 0.25, "smile": -0.15},
    6: {"smile": 0.85, "frown": 0.15, "disgust": 0.10},
    7: {"smile": 0.50, "frown": 0.55, "disgust": 0.20},
    9: {"disgust": 0.80, "frown": 0.20},
    10: {"smile": 0.60, "disgust": 0.45, "talk": 0.20},
    12: {"smile": 0.92},
    14: {"smile": 0.45, "tension": 0.35, "talk": 0.15},
    15: {"tension": 0.60, "smile": -0.30, "disgust": 0.20},
    17: {"tension": 0.70, "frown": 0.25, "talk": 0.15, "smile": -0.10},
    23: {"tension": 0.45, "frown": 0.35, "talk": 0.20},
    24: {"tension": 0.65, "frown": 0.25},
    25: {"smile": 0.35, "talk": 0.70, "surprise": 0.20},
    26: {"talk": 0.60, "surprise": 0.35},
}


@dataclass(frozen=True)
class Task:
    """An elicitation task (BP4D's protocol): shifts the expression factors' means."""

    name: str
    description: str
    factor_means: dict[str, float]


#: BP4D's eight tasks, as factor mean shifts (standard deviations of the latent factors).
TASKS: dict[str, Task] = {
    "T1": Task("T1", "interview, a joke (amusement)", {"smile": 0.9, "talk": 0.8}),
    "T2": Task("T2", "documentary about a real emergency (sadness)", {"tension": 0.8, "frown": 0.3, "smile": -0.4}),
    "T3": Task("T3", "sudden, loud sound (startle, surprise)", {"surprise": 1.1, "smile": 0.2, "frown": 0.2}),
    "T4": Task("T4", "improvised silly song (embarrassment)", {"smile": 0.7, "talk": 0.5, "tension": 0.4}),
    "T5": Task("T5", "threat of a short physical shock (fear, nervousness)", {"surprise": 0.5, "frown": 0.4, "tension": 0.3}),
    "T6": Task("T6", "cold pressor, hand in ice water (pain)", {"frown": 0.9, "disgust": 0.5, "smile": 0.2}),
    "T7": Task("T7", "insulted by the experimenter (anger)", {"frown": 0.8, "tension": 0.5, "talk": 0.3}),
    "T8": Task("T8", "smelling an unpleasant odour (disgust)", {"disgust": 1.1, "frown": 0.3, "tension": 0.2}),
}


def _norm_sf(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


@dataclass(frozen=True)
class Timeline:
    """One recording's AU ground truth.

    Attributes:
        intensity: (n_frames, n_aus, 2) float32, continuous intensity 0..5 per side (subject's
            right, left), :data:`~aucli.synth.facs.SYNTH_AUS` order; what the renderer draws.
        levels: (n_frames, n_aus) int8, FACS level 0..5 (0 absent, 1 = A .. 5 = E) of the AU as a
            whole; occurrence (BP4D convention) is ``levels >= 1``.
        factors: (n_frames, n_factors) float32, the latent expression factors.
    """

    intensity: np.ndarray
    levels: np.ndarray
    factors: np.ndarray


@dataclass(frozen=True)
class Event:
    """A run of frames where one AU is present (level >= 1): onset .. offset inclusive, 0-based."""

    au: int
    onset: int
    apex: int
    offset: int
    peak: int  # level at apex

    def to_dict(self) -> dict[str, int]:
        return {"au": self.au, "onset": self.onset, "apex": self.apex, "offset": self.offset, "peak": self.peak}


def levels_from_intensity(nominal: np.ndarray) -> np.ndarray:
    """FACS levels (int8) of continuous intensities: 0.5 -> 1 (A) .. 4.5 -> 5 (E)."""
    return np.clip(np.floor(np.asarray(nominal) + 0.5), 0, 5).astype(np.int8)


def extract_events(levels: np.ndarray, intensity: np.ndarray | None = None, aus: Sequence[int] = SYNTH_AUS) -> list[Event]:
    """Runs of ``levels >= 1`` per AU, in (au, onset) order; apex = the run's intensity peak.

    ``levels`` (n_frames, n_aus); ``intensity`` (n_frames, n_aus) continuous, optional (the level
    decides the apex otherwise, first maximum).
    """
    events: list[Event] = []
    present = np.asarray(levels) >= 1
    score = np.asarray(levels, np.float64) if intensity is None else np.asarray(intensity, np.float64)
    for k, au in enumerate(aus):
        col = present[:, k].astype(np.int8)
        edges = np.diff(np.concatenate([[0], col, [0]]))
        starts = np.nonzero(edges == 1)[0]
        ends = np.nonzero(edges == -1)[0] - 1
        for s, e in zip(starts, ends):
            apex = int(s + np.argmax(score[s : e + 1, k]))
            events.append(Event(au, int(s), apex, int(e), int(np.max(np.asarray(levels)[s : e + 1, k]))))
    return events


class TimelineModel:
    """The factor model with thresholds solved for one task mix (see the module docstring).

    Args:
        tasks: the task names the corpus records (each equally often).
        rates: target occurrence rate per AU (default :data:`TARGET_RATES`).
        fps: frames per second (time constants are in seconds).
        slow_s, fast_s: time constants (Gaussian kernel sigma, seconds) of the slow and fast parts
            of every latent process.
        between: share of a factor's variance that is constant within a recording (random effects:
            half from the subject, half from the recording).
        intensity_scale: ``s`` of the intensity curve (larger: lower intensities).
    """

    def __init__(
        self,
        tasks: Sequence[str] = tuple(TASKS),
        *,
        rates: dict[int, float] | None = None,
        fps: float = 25.0,
        slow_s: float = 1.6,
        fast_s: float = 0.5,
        between: float = 0.3,
        intensity_scale: float = 1.0,
    ) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
        self.tasks = tuple(tasks)
        self.rates = dict(TARGET_RATES if rates is None else rates)
        self.fps = fps
        self.slow = slow_s * fps
        self.fast = fast_s * fps
        self.between = between
        self.intensity_scale = intensity_scale
        self.loadings = np.array([[LOADINGS[au].get(f, 0.0) for f in FACTORS] for au in SYNTH_AUS])  # (n_aus, n_factors)
        norms = (self.loadings**2).sum(axis=1)
        if np.any(norms >= 1.0):
            raise ValueError("each AU's loadings must have a squared norm below 1")
        self.unique = np.sqrt(1.0 - norms)
        self.task_means = {t: np.array([TASKS[t].factor_means.get(f, 0.0) for f in FACTORS]) for t in self.tasks}
        self.thresholds = self._solve_thresholds()

    def _solve_thresholds(self) -> np.ndarray:
        thresholds = np.zeros(len(SYNTH_AUS))
        for k, au in enumerate(SYNTH_AUS):
            means = [float(self.loadings[k] @ self.task_means[t]) for t in self.tasks]
            target = self.rates[au]
            lo, hi = -10.0, 10.0
            for _ in range(100):
                mid = (lo + hi) / 2
                rate = sum(_norm_sf(mid - m) for m in means) / len(means)
                lo, hi = (mid, hi) if rate > target else (lo, mid)
            thresholds[k] = (lo + hi) / 2
        return thresholds

    def expected_rates(self) -> dict[int, float]:
        """Occurrence rates the model gives in expectation (equal to the targets up to 1e-9)."""
        out = {}
        for k, au in enumerate(SYNTH_AUS):
            means = [float(self.loadings[k] @ self.task_means[t]) for t in self.tasks]
            out[au] = sum(_norm_sf(self.thresholds[k] - m) for m in means) / len(means)
        return out

    def subject_effects(self, rng: np.random.Generator) -> np.ndarray:
        """A subject's persistent tendencies: (n_factors + n_aus,) standard normal."""
        return rng.standard_normal(len(FACTORS) + len(SYNTH_AUS))

    def _process(self, rng: np.random.Generator, n: int, subject: float) -> np.ndarray:
        within = math.sqrt(1.0 - self.between)
        level = math.sqrt(self.between) * (math.sqrt(0.5) * subject + math.sqrt(0.5) * rng.standard_normal())
        wiggle = math.sqrt(0.7) * smooth_process(rng, n, self.slow) + math.sqrt(0.3) * smooth_process(rng, n, self.fast)
        return level + within * wiggle

    def sample(
        self,
        rng: np.random.Generator,
        n_frames: int,
        task: str | Sequence[str],
        subject_effects: np.ndarray,
        *,
        expressivity: float = 1.0,
        thresholds: np.ndarray | None = None,
    ) -> Timeline:
        """One recording of ``n_frames`` frames for a subject with ``subject_effects``.

        ``task``: one task, or several in sequence (equal segments, means blended over 1 s), as in
        a DISFA-like recording that walks through several stimuli. ``thresholds`` (n_aus,)
        replaces the model's (see :meth:`calibrate`).
        """
        z, factors = self.propensity(rng, n_frames, task, subject_effects)
        return self.timeline(rng, z, factors, expressivity=expressivity, thresholds=thresholds)

    def propensity(self, rng: np.random.Generator, n_frames: int, task: str | Sequence[str], subject_effects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The latent AU propensities ``z`` (n_frames, n_aus) and factors (n_frames, n_factors)."""
        tasks = [task] if isinstance(task, str) else list(task)
        for t in tasks:
            if t not in self.task_means:
                raise ValueError(f"task {t!r} is not part of this model's mix {self.tasks}")
        n_f = len(FACTORS)
        bounds = np.linspace(0, n_frames, len(tasks) + 1).round().astype(int)
        means = np.zeros((n_frames, n_f))
        for t, lo, hi in zip(tasks, bounds[:-1], bounds[1:]):
            means[lo:hi] = self.task_means[t]
        if len(tasks) > 1:
            sigma = 0.5 * self.fps
            half = int(3 * sigma)
            kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
            kernel /= kernel.sum()
            padded = np.pad(means, ((half, half), (0, 0)), mode="edge")
            means = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(n_f)], 1)
        factors = np.stack([self._process(rng, n_frames, subject_effects[k]) for k in range(n_f)], 1) + means
        own = np.stack([self._process(rng, n_frames, subject_effects[n_f + k]) for k in range(len(SYNTH_AUS))], 1)
        return factors @ self.loadings.T + own * self.unique[None], factors

    def timeline(
        self, rng: np.random.Generator, z: np.ndarray, factors: np.ndarray, *, expressivity: float = 1.0, thresholds: np.ndarray | None = None
    ) -> Timeline:
        """Intensities and levels from propensities: occurrence where ``z`` exceeds the threshold."""
        limits = self.thresholds if thresholds is None else np.asarray(thresholds, np.float64)
        excess = z - limits[None]
        s = self.intensity_scale * float(np.clip(1.0 / expressivity, 0.7, 1.4))
        shift = s * math.log(1 / 0.9)  # c = 0.5 exactly at the threshold
        nominal = np.where(excess > -shift, 5.0 * (1.0 - np.exp(-(excess + shift) / s)), 0.0)
        nominal = np.clip(nominal, 0.0, 5.0)
        levels = levels_from_intensity(nominal)
        # real expressions are a little asymmetric: each side of each AU gets its own gain
        asym = np.clip(rng.normal(0.0, 0.07, len(SYNTH_AUS)), -0.2, 0.2)
        intensity = np.stack([nominal * (1 + asym), nominal * (1 - asym)], 2)
        return Timeline(np.clip(intensity, 0, 5).astype(np.float32), levels, factors.astype(np.float32))

    def calibrate(self, propensities: Sequence[np.ndarray]) -> np.ndarray:
        """Thresholds (n_aus,) that give the target rates exactly on these recordings' frames.

        A corpus of a few dozen recordings lands several points off the targets by chance (each
        recording holds only a few independent stretches of its slow processes); setting each
        threshold at the (1 - rate) quantile of the corpus's own propensities removes that error
        while keeping every co-occurrence, time course and subject difference.
        """
        z = np.concatenate([np.asarray(p, np.float64) for p in propensities])
        return np.array([float(np.quantile(z[:, k], 1.0 - self.rates[au])) for k, au in enumerate(SYNTH_AUS)])


# ------------------------------------------------------------------------------------ micro
#: CASME II-style codes of micro-expressions with their estimated emotion and relative frequency.
MICRO_CODES: tuple[tuple[str, str, float], ...] = (
    ("4", "disgust", 3.0),
    ("4+7", "disgust", 2.0),
    ("9", "disgust", 1.0),
    ("L10", "disgust", 1.0),
    ("4+9", "disgust", 1.0),
    ("12", "happiness", 1.5),
    ("6+12", "happiness", 1.5),
    ("R12", "happiness", 1.0),
    ("1+2", "surprise", 1.5),
    ("1", "surprise", 0.5),
    ("L2", "surprise", 0.5),
    ("14", "repression", 1.5),
    ("R14", "repression", 1.0),
    ("17", "repression", 1.0),
    ("15+17", "repression", 1.0),
    ("24", "repression", 1.0),
    ("1+4", "sadness", 0.7),
    ("15", "sadness", 0.7),
    ("4+7+10", "fear", 0.5),
    ("7", "others", 1.5),
    ("R2", "others", 0.7),
    ("23", "others", 0.7),
)


@dataclass(frozen=True)
class MicroEvent:
    """The one micro-expression of a clip: CASME II coding (0-based frame indices)."""

    code: str  # e.g. "4+L10"
    emotion: str
    aus: tuple[tuple[int, str | None], ...]  # (AU number, side "L"/"R" or None)
    onset: int  # first frame with movement
    apex: int
    offset: int  # last frame with movement
    peak: float  # intensity at apex (continuous, 0..5)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "emotion": self.emotion, "aus": [[au, side] for au, side in self.aus], "onset": self.onset, "apex": self.apex, "offset": self.offset, "peak": round(self.peak, 4)}


def _parse_code(code: str) -> tuple[tuple[int, str | None], ...]:
    out = []
    for part in code.split("+"):
        side = part[0] if part[0] in "LR" else None
        out.append((int(part.lstrip("LR")), side))
    return tuple(out)


def sample_micro_clip(rng: np.random.Generator, n_frames: int, *, fps: float = 25.0) -> tuple[Timeline, MicroEvent]:
    """A neutral clip of ``n_frames`` with one brief, low-intensity micro-expression.

    Onset 2-4 frames, apex plateau 0-2 frames, offset 3-6 frames at 25 fps (scaled with ``fps``):
    the movement lasts under 0.5 s; peak intensity 1.0-2.4 (FACS A-B).
    """
    weights = np.array([w for _, _, w in MICRO_CODES])
    code, emotion, _ = MICRO_CODES[int(rng.choice(len(MICRO_CODES), p=weights / weights.sum()))]
    aus = _parse_code(code)
    scale = fps / 25.0
    rise = max(2, round(rng.integers(2, 5) * scale))
    hold = round(rng.integers(0, 3) * scale)
    fall = max(2, round(rng.integers(3, 7) * scale))
    while (rise + hold + fall) / fps >= 0.5:
        fall -= 1
    smooth = lambda x: x * x * (3 - 2 * x)  # noqa: E731
    segment = np.concatenate([smooth(np.linspace(0, 1, rise + 1)[1:]), np.ones(hold), smooth(np.linspace(1, 0, fall + 2)[1:-1])])
    length = len(segment)
    if n_frames < length + 4:
        raise ValueError(f"a micro clip needs at least {length + 4} frames, got {n_frames}")
    onset = int(rng.integers(2, n_frames - length - 1))
    peak = float(rng.uniform(1.0, 2.4))
    curve = np.zeros(n_frames)
    curve[onset : onset + length] = segment
    intensity = np.zeros((n_frames, len(SYNTH_AUS), 2), np.float32)
    nominal = np.zeros((n_frames, len(SYNTH_AUS)))
    for au, side in aus:
        k = SYNTH_AUS.index(au)
        gain = rng.uniform(0.8, 1.0)
        values = peak * gain * curve
        nominal[:, k] = values
        if side is None:
            intensity[:, k, 0] = values
            intensity[:, k, 1] = values
        else:
            intensity[:, k, 0 if side == "R" else 1] = values
    apex = onset + rise - 1 + hold // 2
    event = MicroEvent(code, emotion, aus, onset, apex, onset + length - 1, peak)
    return Timeline(intensity, levels_from_intensity(nominal), np.zeros((n_frames, len(FACTORS)), np.float32)), event
