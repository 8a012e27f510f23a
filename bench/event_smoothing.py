"""Issue 21, item 3: what the HMM smoothing of aucli.events does to frame F1 and event F1.

Ground truth: synthetic AU timelines of :class:`aucli.synth.events.TimelineModel` (the synthetic
corpus's own, 25 fps, 60 s recordings). Frame probabilities: a simulated frame classifier,
``p = sigmoid(margin * (2 y - 1) + noise)``, with noise independent per frame (``iid``: the flicker
smoothing is for) or an AR(1) process with a 0.5 s time constant (``correlated``: errors that
last, as a real model's do, which smoothing cannot remove). Both scored at threshold 0.5 before
and after :func:`aucli.events.smooth_probabilities` with its defaults (1 s events, 1 s gaps);
events matched one-to-one at temporal IoU >= 0.5.

    python bench/event_smoothing.py            # about 4 s on 2 CPU cores
    python bench/event_smoothing.py --json out.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from aucli.events import event_agreement, smooth_probabilities
from aucli.metrics import f1_scores, nanmean
from aucli.synth.events import TimelineModel

FPS = 25.0


def simulate(rng: np.random.Generator, truth: np.ndarray, *, margin: float, sigma: float, kind: str) -> np.ndarray:
    """Frame probabilities ``(n, n_aus)`` of a classifier that sees ``truth`` through noise."""
    noise = rng.normal(0.0, sigma, truth.shape)
    if kind == "correlated":
        phi = float(np.exp(-1.0 / (0.5 * FPS)))
        for t in range(1, truth.shape[0]):
            noise[t] = phi * noise[t - 1] + np.sqrt(1 - phi**2) * noise[t]
    return 1.0 / (1.0 + np.exp(-(margin * (2 * truth - 1) + noise)))


def measure(recordings: int, seconds: float, seed: int, margin: float, sigma: float, kind: str) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    model = TimelineModel(fps=FPS)
    truths, probs, segments = [], [], []
    for r in range(recordings):
        timeline = model.sample(rng, int(seconds * FPS), model.tasks[r % len(model.tasks)], model.subject_effects(rng))
        truth = (timeline.levels >= 1).astype(np.int8)
        truths.append(truth)
        probs.append(simulate(rng, truth, margin=margin, sigma=sigma, kind=kind))
        segments.append(np.full(truth.shape[0], r))
    truth, prob, segment = np.concatenate(truths), np.concatenate(probs), np.concatenate(segments)
    smoothed = smooth_probabilities(prob, FPS, segments=segment)
    out = {}
    for name, p in (("raw", prob), ("smoothed", smoothed)):
        decided = (p >= 0.5).astype(np.int8)
        events = event_agreement(truth, decided, segment)
        out[f"{name}_frame_f1"] = nanmean(f1_scores(p, truth, 0.5))
        out[f"{name}_event_f1"] = nanmean(events.f1)
        out[f"{name}_predicted_events"] = int(events.n_other.sum())
    out["true_events"] = int(events.n_reference.sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    for kind in ("iid", "correlated"):
        for margin, sigma in ((1.0, 1.5), (1.5, 1.5)):
            row = {"noise": kind, "margin": margin, "sigma": sigma,
                   **measure(args.recordings, args.seconds, args.seed, margin, sigma, kind)}
            results.append(row)
            print(f"{kind:10s} margin {margin:.1f} sigma {sigma:.1f}: frame F1 {100 * row['raw_frame_f1']:.1f} -> "
                  f"{100 * row['smoothed_frame_f1']:.1f}; event F1 {100 * row['raw_event_f1']:.1f} -> "
                  f"{100 * row['smoothed_event_f1']:.1f} (events: true {row['true_events']}, predicted "
                  f"{row['raw_predicted_events']} -> {row['smoothed_predicted_events']})", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
