"""The demo report's pictures: training curves, per-AU F1, one video's timeline and its labelled clip.

Each function writes one file (PNG, or an animated GIF for the clip) and returns its path. The
plots use matplotlib's Agg backend; the clip is drawn with Pillow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VideoTrack", "per_au_f1", "timeline", "training_curves", "video_clip"]

#: Colours of the report's series (AUFormer fine-tuned, base model, linear probe, all present).
COLOURS = {"fine-tuned": "#1f77b4", "base": "#9ecae1", "linear": "#ff7f0e", "all present": "#bbbbbb"}


@dataclass
class VideoTrack:
    """One video's faces and scores, frame by frame (the rows where a face was stored)."""

    name: str
    frames: np.ndarray  # (n,) frame indices
    crops: np.ndarray  # (n, S, S, 3) uint8 aligned faces
    probs: np.ndarray  # (n, K) predicted probabilities
    decisions: np.ndarray  # (n, K) 0/1 at the model's thresholds
    truth: np.ndarray  # (n, K) rendered ground truth (1 / 0 / -1 unknown)
    au_names: list[str]
    thresholds: np.ndarray  # (K,)
    fps: float


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_curves(runs: Mapping[str, Path], out: Path) -> Path:
    """Training loss per logged step and validation / test mean F1 per evaluation, one line per run.

    ``runs``: label -> a fold folder holding ``metrics.jsonl``.
    """
    plt = _pyplot()
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, folder in runs.items():
        events = _events(folder / "metrics.jsonl")
        colour = COLOURS.get(label, None)
        train = [e for e in events if e["event"] == "train"]
        evals = [e for e in events if e["event"] == "eval"]
        loss_ax.plot([e["step"] for e in train], [e["loss"] for e in train], "-", color=colour, label=label)
        steps = [e["step"] for e in evals]
        f1_ax.plot(steps, [100 * e["val_mean_f1"] for e in evals], "o--", color=colour, label=f"{label}, validation")
        f1_ax.plot(steps, [100 * e["test_mean_f1"] for e in evals], "s-", color=colour, label=f"{label}, test")
    loss_ax.set(xlabel="optimiser step", ylabel="training loss", title="Training loss (MDWA + dice + expert terms)")
    f1_ax.set(xlabel="optimiser step", ylabel="mean F1 %", title="Mean F1 at each evaluation")
    for ax in (loss_ax, f1_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def per_au_f1(au_names: Sequence[str], series: Mapping[str, Sequence[float]], out: Path) -> Path:
    """Grouped bars: test F1 per AU for each series (fractions), with each series' mean in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(au_names))
    for i, (label, values) in enumerate(series.items()):
        values = 100 * np.asarray(values, dtype=float)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, color=COLOURS.get(label),
               label=f"{label} (mean {np.nanmean(values):.1f})")
    ax.set_xticks(x, list(au_names))
    ax.set(ylabel="test F1 %", ylim=(0, 100), title="Held-out subjects: F1 per AU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def timeline(track: VideoTrack, out: Path, *, thumbnails: int = 8) -> Path:
    """Per-AU predicted probability (line) against the rendered ground truth (shaded), faces above."""
    plt = _pyplot()
    n_aus = len(track.au_names)
    fig = plt.figure(figsize=(11, 1.6 + 0.55 * n_aus))
    grid = fig.add_gridspec(n_aus + 1, 1, height_ratios=[2.2] + [1] * n_aus, hspace=0.15)
    strip = fig.add_subplot(grid[0])
    picks = np.linspace(0, len(track.frames) - 1, min(thumbnails, len(track.frames))).round().astype(int)
    strip.imshow(np.concatenate([track.crops[i] for i in picks], axis=1))
    size = track.crops.shape[1]
    strip.set_xticks([size * (j + 0.5) for j in range(len(picks))], [f"frame {track.frames[i]}" for i in picks], fontsize=7)
    strip.set_yticks([])
    strip.set_title(f"{track.name}: predicted probability (line) against the rendered ground truth (shaded)", fontsize=10)
    time = track.frames / track.fps
    for k, au in enumerate(track.au_names):
        ax = fig.add_subplot(grid[k + 1])
        ax.fill_between(time, 0, (track.truth[:, k] == 1).astype(float), step="mid", color="#c7e9c0", linewidth=0)
        ax.plot(time, track.probs[:, k], color=COLOURS["fine-tuned"], linewidth=1.2)
        ax.axhline(track.thresholds[k], color="#d62728", linewidth=0.6, linestyle=":")
        ax.set_ylim(0, 1.05)
        ax.set_xlim(time.min(), time.max())
        ax.set_yticks([])
        ax.set_ylabel(au, rotation=0, ha="right", va="center", fontsize=8)
        if k < n_aus - 1:
            ax.set_xticks([])
    ax.set_xlabel("seconds")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def _bars_panel(draw, font, track: VideoTrack, i: int, left: int, height: int) -> None:
    row_h = height / len(track.au_names)
    bar_w = 150
    for k, au in enumerate(track.au_names):
        top = int(k * row_h + 2)
        p = float(track.probs[i, k])
        on = bool(track.decisions[i, k])
        draw.text((left, top + 1), au, fill=(30, 30, 30), font=font)
        x0 = left + 40
        draw.rectangle([x0, top + 2, x0 + bar_w, top + row_h - 4], outline=(190, 190, 190))
        draw.rectangle([x0, top + 2, x0 + int(bar_w * p), top + row_h - 4], fill=(31, 119, 180) if on else (158, 202, 225))
        tick = x0 + int(bar_w * float(track.thresholds[k]))
        draw.line([tick, top, tick, top + row_h - 2], fill=(214, 39, 40))
        truth = track.truth[i, k]
        mark = "present" if truth == 1 else ("absent" if truth == 0 else "?")
        draw.text((x0 + bar_w + 6, top + 1), f"{p:.2f}  {mark}", fill=(0, 110, 0) if truth == 1 else (110, 110, 110), font=font)


def video_clip(track: VideoTrack, out: Path, *, every: int = 2, face_px: int = 224) -> Path:
    """An animated GIF: the face on the left, one bar per AU on the right (filled when detected).

    A bar is the predicted probability; the red tick is the AU's threshold; beside it, the
    rendered ground truth. Every ``every``-th stored frame, at the video's pace.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    height = max(face_px, 18 * len(track.au_names))
    width = face_px + 330
    images = []
    for i in range(0, len(track.frames), every):
        canvas = Image.new("RGB", (width, height + 20), (255, 255, 255))
        face = Image.fromarray(track.crops[i]).resize((face_px, face_px))
        canvas.paste(face, (0, 0))
        draw = ImageDraw.Draw(canvas)
        _bars_panel(draw, font, track, i, face_px + 10, height)
        draw.text((4, height + 4), f"{track.name}  frame {int(track.frames[i])}  ({track.frames[i] / track.fps:.2f} s)",
                  fill=(60, 60, 60), font=font)
        images.append(canvas.convert("P", palette=Image.ADAPTIVE, colors=128))
    duration = int(round(1000 * every / track.fps))
    images[0].save(out, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=True)
    return out
