"""Label noise with a ledger: the mistakes human coders make, injected at known rates.

Types (rates per type, ``--noise boundary=0.1,missed=0.05,confusion=0.05,flip=0.002``):

- ``boundary``: each event boundary (onset, offset) is moved with this probability, by 1 to
  ``max(1, 25%)`` of the event's length (at most 0.5 s), earlier or later: coders disagree most
  about where an AU starts and ends. Moving outwards adds trace-level (1) frames, inwards removes
  frames; an event never vanishes this way.
- ``missed``: each event is left uncoded (all its frames absent) with this probability.
- ``confusion``: each event of an AU in a confusable pair is coded as its partner with this
  probability. The pairs are AU1/AU2, AU6/AU7, AU23/AU24 unless ``pairs=`` names others:
  ``pairs=4-12+15-17`` (pairs joined by ``+``, each AU once), so that an audit can be tested on
  confusions it was not told about.
- ``flip``: each (frame, AU) label is flipped alone with this probability: an isolated present
  frame (level 2) in an absent stretch, or an absent frame inside an event.
- ``uncoded``: about this fraction of frames is not coded at all (runs of 5-25 frames): BP4D
  writes 9; DISFA has no such value and keeps the frame's other labels.
- ``noapex``: each micro-expression's apex is left blank (``/``) in the CASME II sheet.

Presets: ``none``, ``light``, ``realistic``, ``heavy``; a preset can be followed by overrides
(``realistic,flip=0.005``, ``realistic,pairs=2-4+12-15``). The noisy labels go to the label files; the clean ones stay in the
manifest; the ledger lists every (frame, AU) whose label differs, with the reason, and every event
that was touched. It is derived from the final arrays, so it is exactly the difference.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, replace

import numpy as np

from aucli.errors import UsageError
from aucli.synth.events import extract_events
from aucli.synth.facs import SYNTH_AUS

__all__ = ["NoiseMix", "NOISE_PRESETS", "CONFUSION_PAIRS", "NoiseResult", "inject_noise", "REASONS", "UNCODED"]

#: AUs that coders confuse with each other.
CONFUSION_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (6, 7), (23, 24))
#: Level value of an uncoded label in noisy arrays.
UNCODED = -1
#: Reason codes of the ledger (index = code stored in arrays).
REASONS: tuple[str, ...] = ("clean", "boundary", "missed", "confusion", "flip", "uncoded")


@dataclass(frozen=True)
class NoiseMix:
    """Rates of each noise type and the confusable pairs (see the module docstring). All rates zero:
    clean labels."""

    boundary: float = 0.0
    missed: float = 0.0
    confusion: float = 0.0
    flip: float = 0.0
    uncoded: float = 0.0
    noapex: float = 0.0
    pairs: tuple[tuple[int, int], ...] = CONFUSION_PAIRS

    @property
    def rates(self) -> dict[str, float]:
        """Every noise type's rate, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pairs"}

    @classmethod
    def parse(cls, spec: str | None) -> NoiseMix:
        """``"realistic"``, ``"boundary=0.1,flip=0.002"``, ``"light,missed=0.1"``; None/"" = none."""
        if spec is None or not spec.strip():
            return cls()
        values: dict[str, float] = {}
        pairs = CONFUSION_PAIRS
        names = [f.name for f in fields(cls) if f.name != "pairs"]
        for position, raw in enumerate(p.strip() for p in spec.split(",")):
            if not raw:
                continue
            if "=" not in raw:
                key = raw.lower()
                if position != 0:
                    raise UsageError(f"noise preset {raw!r} must come first in --noise (like 'realistic,flip=0.01')")
                if key not in NOISE_PRESETS:
                    close = difflib.get_close_matches(key, list(NOISE_PRESETS) + names, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise UsageError(f"unknown noise preset {raw!r}{hint} (presets: {', '.join(NOISE_PRESETS)}; or TYPE=RATE with types {', '.join(names)})")
                values.update(NOISE_PRESETS[key].rates)
                continue
            key, _, value = (s.strip() for s in raw.partition("="))
            key = key.lower()
            if key == "pairs":
                pairs = parse_pairs(value)
                continue
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UsageError(f"unknown noise type {key!r}{hint} (types: {', '.join(names)})")
            try:
                rate = float(value)
            except ValueError:
                raise UsageError(f"noise rate for {key!r} must be a number between 0 and 1, got {value!r}") from None
            if not 0.0 <= rate <= 1.0:
                raise UsageError(f"noise rate for {key!r} must be between 0 and 1, got {rate}")
            values[key] = rate
        return replace(cls(**values), pairs=pairs)

    def to_spec(self) -> str:
        """Canonical spec string (``none`` when clean); ``pairs=`` only when not the default pairs."""
        parts = [f"{k}={v:g}" for k, v in self.rates.items() if v > 0]
        if parts and self.pairs != CONFUSION_PAIRS:
            parts.append("pairs=" + "+".join(f"{a}-{b}" for a, b in self.pairs))
        return ",".join(parts) if parts else "none"

    @property
    def clean(self) -> bool:
        return not any(v > 0 for v in self.rates.values())


def parse_pairs(text: str, aus: tuple[int, ...] = SYNTH_AUS) -> tuple[tuple[int, int], ...]:
    """``"4-12+15-17"`` (or ``"AU4-AU12+..."``) as ((4, 12), (15, 17)); each AU in at most one pair."""
    from aucli.aus import au_number

    pairs: list[tuple[int, int]] = []
    seen: set[int] = set()
    for chunk in (c.strip() for c in text.split("+")):
        ends = [e.strip() for e in chunk.split("-")]
        if len(ends) != 2 or not all(ends):
            raise UsageError(f"confusion pair {chunk!r} must be two AUs joined by '-', like pairs=4-12+15-17")
        a, b = (au_number(e) for e in ends)
        for au in (a, b):
            if au not in aus:
                raise UsageError(f"AU{au} in pairs={text} is not one of the synthetic AUs ({', '.join(f'AU{x}' for x in aus)})")
            if au in seen:
                raise UsageError(f"AU{au} appears in more than one pair (or twice in one) in pairs={text}")
            seen.add(au)
        pairs.append((a, b))
    return tuple(pairs)


NOISE_PRESETS: dict[str, NoiseMix] = {
    "none": NoiseMix(),
    "light": NoiseMix(boundary=0.05, missed=0.02, confusion=0.02, flip=0.001),
    "realistic": NoiseMix(boundary=0.15, missed=0.05, confusion=0.05, flip=0.002, uncoded=0.01, noapex=0.05),
    "heavy": NoiseMix(boundary=0.3, missed=0.15, confusion=0.12, flip=0.01, uncoded=0.02, noapex=0.1),
}


@dataclass
class NoiseResult:
    """Noisy levels of one recording and its ledger.

    Attributes:
        levels: (n_frames, n_aus) int8 noisy FACS levels, -1 where uncoded.
        reason: (n_frames, n_aus) uint8 index into :data:`REASONS` (0 where unchanged).
        events: one dict per touched event: au, onset, offset, type, detail.
    """

    levels: np.ndarray
    reason: np.ndarray
    events: list[dict[str, object]]

    def changes(self, clean: np.ndarray) -> np.ndarray:
        """Rows (frame, au column, clean level, noisy level, reason code) of every changed label."""
        frames, cols = np.nonzero(self.levels != clean)
        return np.stack([frames, cols, clean[frames, cols], self.levels[frames, cols], self.reason[frames, cols]], 1).astype(np.int64)


def inject_noise(clean: np.ndarray, mix: NoiseMix, rng: np.random.Generator, *, fps: float = 25.0, aus: tuple[int, ...] = SYNTH_AUS) -> NoiseResult:
    """Apply ``mix`` to clean levels (n_frames, n_aus) int8. Deterministic given ``rng``."""
    clean = np.asarray(clean, np.int8)
    noisy = clean.copy()
    reason = np.zeros(clean.shape, np.uint8)
    n = clean.shape[0]
    log: list[dict[str, object]] = []
    partner = {a: b for a, b in mix.pairs} | {b: a for a, b in mix.pairs}
    column = {au: k for k, au in enumerate(aus)}
    max_shift = max(1, int(round(0.5 * fps)))

    def mark(rows: slice | np.ndarray, col: int, values: np.ndarray | int, code: str) -> None:
        noisy[rows, col] = values
        reason[rows, col] = REASONS.index(code)

    for event in extract_events(clean, aus=aus):
        k = column[event.au]
        run = slice(event.onset, event.offset + 1)
        u_missed, u_conf, u_on, u_off = rng.random(4)
        if u_missed < mix.missed:
            mark(run, k, 0, "missed")
            log.append({"au": event.au, "onset": event.onset, "offset": event.offset, "type": "missed", "detail": ""})
            continue
        if event.au in partner and partner[event.au] in column and u_conf < mix.confusion:
            p = column[partner[event.au]]
            moved = np.maximum(noisy[run, p], clean[run, k])
            mark(run, k, 0, "confusion")
            changed = np.nonzero(moved != noisy[run, p])[0] + event.onset
            mark(changed, p, moved[changed - event.onset], "confusion")
            log.append({"au": event.au, "onset": event.onset, "offset": event.offset, "type": "confusion", "detail": f"coded as AU{partner[event.au]}"})
            continue
        length = event.offset - event.onset + 1
        limit = min(max(1, int(round(0.25 * length))), max_shift)
        for which, u in (("onset", u_on), ("offset", u_off)):
            if u >= mix.boundary:
                continue
            shift = int(rng.integers(1, limit + 1))
            outward = rng.random() < 0.5
            if outward:
                if which == "onset":
                    rows = np.arange(max(event.onset - shift, 0), event.onset)
                else:
                    rows = np.arange(event.offset + 1, min(event.offset + 1 + shift, n))
                rows = rows[noisy[rows, k] == 0]
                mark(rows, k, 1, "boundary")
                signed = -len(rows) if which == "onset" else len(rows)
            else:
                shift = min(shift, length - 1)
                if shift <= 0:
                    continue
                rows = np.arange(event.onset, event.onset + shift) if which == "onset" else np.arange(event.offset - shift + 1, event.offset + 1)
                mark(rows, k, 0, "boundary")
                signed = shift if which == "onset" else -shift
                length -= shift
            if signed:
                log.append({"au": event.au, "onset": event.onset, "offset": event.offset, "type": "boundary", "detail": f"{which} {signed:+d}"})
    if mix.flip > 0:
        frames, cols = np.nonzero(rng.random(clean.shape) < mix.flip)
        for f, c in zip(frames, cols):
            mark(np.array([f]), int(c), 0 if noisy[f, c] >= 1 else 2, "flip")
    if mix.uncoded > 0:
        mean_run = 15
        runs = rng.poisson(mix.uncoded * n / mean_run)
        for _ in range(runs):
            start = int(rng.integers(0, max(n, 1)))
            stop = min(n, start + int(rng.integers(5, 26)))
            noisy[start:stop, :] = UNCODED
            reason[start:stop, :] = REASONS.index("uncoded")
            log.append({"au": 0, "onset": start, "offset": stop - 1, "type": "uncoded", "detail": "all AUs"})
    reason[noisy == clean] = 0
    return NoiseResult(noisy, reason, log)
