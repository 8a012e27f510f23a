"""A quick AU signal check of a frozen encoder: ridge regression on its features, no trainer involved.

Probe faces come from their own identities (seed stream ``probe``, never seen in pretraining) with
AU intensities the probe chooses: each of the 15 rendered AUs present with probability 0.3 at FACS
level A-E (0.5-5), on both sides, so presence is known exactly. The encoder sees the training
recipe's evaluation view (the centre ``img_size`` crop), normalised with its mean and std.

Features of a face (after the encoder's final norm): ``cls+mean`` is the class token concatenated
with the mean of the patch tokens; ``grid`` is the patch tokens averaged over a 4 x 4 grid of
regions (AUs are local, and a mean over the whole face dilutes them). A ``pixels`` reference uses
the grey centre crop at 28 x 28. Identity, pose and light vary far more between faces than any AU
changes one face, so on a few hundred faces a linear readout of these features may find little.
The ``- neutral twin`` variants therefore subtract the features of the same face rendered without
any AU (same identity, recording, frame and pose, aligned on its own landmarks): they ask whether
the features change with the expression in a linearly readable way, with the nuisance removed.

Per AU a ridge regression predicts presence (0/1) from standardised features. Evaluation is
subject-independent: k folds of identities; in each, the ridge strength is chosen on an inner
split of the training identities (mean AUC over AUs), the model is refitted on all of them, its
per-AU F1 threshold is fitted on its own training predictions, and the held-out identities give
AUC and F1 (counts over the fold). Figures are means over AUs, then over folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.pretrain.data import FaceSampling, render_block

__all__ = [
    "ProbeFaces",
    "ProbeScore",
    "render_probe_faces",
    "encoder_features",
    "pixel_features",
    "ridge_probe",
    "probe_encoders",
]

RIDGE_STRENGTHS = tuple(float(v) for v in np.logspace(-3, 2, 11))


@dataclass
class ProbeFaces:
    """Faces with exactly known AU presence.

    Attributes:
        images: (n, img_size, img_size, 3) uint8 centre crops.
        presence: (n, n_aus) int8, 1 where the AU's intensity is at least 0.5 (FACS level A).
        subjects: (n,) int identity index.
        au_names: the AUs, in column order.
        neutral: (n, img_size, img_size, 3) uint8 each face's neutral twin, or None.
    """

    images: np.ndarray
    presence: np.ndarray
    subjects: np.ndarray
    au_names: list[str]
    neutral: np.ndarray | None = None


@dataclass
class ProbeScore:
    """Subject-independent probe results: per-AU AUC and F1 ``(n_aus,)``, their means over AUs and folds."""

    au_names: list[str]
    auc: np.ndarray
    f1: np.ndarray
    mean_auc: float
    mean_f1: float
    folds: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_auc": round(self.mean_auc, 4),
            "mean_f1": round(self.mean_f1, 4),
            "auc": {a: round(float(v), 4) for a, v in zip(self.au_names, self.auc)},
            "f1": {a: round(float(v), 4) for a, v in zip(self.au_names, self.f1)},
            "folds": self.folds,
            **self.extra,
        }


def render_probe_faces(
    *,
    identities: int = 32,
    frames_per_identity: int = 24,
    seed: int = 0,
    img_size: int = 112,
    sampling: FaceSampling | None = None,
    neutral: bool = True,
) -> ProbeFaces:
    """Render ``identities`` x ``frames_per_identity`` probe faces (split ``probe``), centre-cropped to ``img_size``.

    ``neutral``: also each face's neutral twin.
    """
    from aucli.aus import au_name
    from aucli.synth.facs import SYNTH_AUS

    base = sampling or FaceSampling()
    sampling = FaceSampling(**{**base.__dict__, "frames_per_identity": frames_per_identity})
    images, twins, presence, subjects = [], [], [], []
    for k in range(identities):
        block = render_block(seed, "probe", k, sampling, neutral=neutral)
        side = block.crops.shape[1]
        top = (side - img_size) // 2
        images.append(block.crops[:, top : top + img_size, top : top + img_size])
        if block.neutral is not None:
            twins.append(block.neutral[:, top : top + img_size, top : top + img_size])
        presence.append((block.intensity.max(axis=2) >= 0.5).astype(np.int8))
        subjects.append(np.full(len(block.crops), k))
    return ProbeFaces(np.concatenate(images), np.concatenate(presence), np.concatenate(subjects), [au_name(a) for a in SYNTH_AUS],
                      np.concatenate(twins) if twins else None)  # fmt: skip


@torch.no_grad()
def encoder_features(
    vit: nn.Module,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    grid: int = 4,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Frozen features of ``images (n, H, W, 3) uint8``: ``cls+mean`` (n, 2D) and ``grid`` (n, grid * grid * D)."""
    from aucli.engine.data import normalize

    vit.eval()
    gh, gw = (int(g) for g in vit.patch_embed.grid_size)
    prefix = int(vit.num_prefix_tokens)
    pooled, grids = [], []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
        tokens = vit.forward_features(normalize(batch, mean, std, device=torch.device(device))).float()
        cls, patches = tokens[:, 0], tokens[:, prefix:]
        pooled.append(torch.cat([cls, patches.mean(dim=1)], dim=1).cpu())
        maps = patches.transpose(1, 2).reshape(len(batch), -1, gh, gw)
        grids.append(torch.nn.functional.adaptive_avg_pool2d(maps, grid).flatten(1).cpu())
    return {"cls+mean": torch.cat(pooled).numpy(), "grid": torch.cat(grids).numpy()}


def pixel_features(images: np.ndarray, side: int = 28) -> np.ndarray:
    """Grey images ``(n, side * side)`` in [0, 1]: the no-encoder reference."""
    import cv2

    grey = images.astype(np.float32).mean(axis=3) / 255.0
    return np.stack([cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA).reshape(-1) for g in grey])


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def _ridge_predictions(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, strengths: Sequence[float]
) -> list[np.ndarray]:
    """Ridge predictions on ``x_test`` for every relative strength (one SVD): each (n_test, n_aus).

    The algebra runs in torch (float64), so it uses torch's thread setting: numpy's BLAS threads
    spin badly on a busy shared machine (a 320 x 3072 SVD took 90 s instead of 0.3 s here).
    """
    x_train, x_test = _standardise(x_train, x_test)
    x, xt = torch.from_numpy(x_train), torch.from_numpy(x_test)
    y = torch.from_numpy(np.asarray(y_train, np.float64))
    y_mean = y.mean(dim=0)
    u, s, vt = torch.linalg.svd(x, full_matrices=False)
    uty = u.T @ (y - y_mean)
    scale = float((s**2).mean())
    projected = xt @ vt.T
    return [(projected @ ((s / (s**2 + alpha * scale))[:, None] * uty) + y_mean).numpy() for alpha in strengths]


def _subject_folds(subjects: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    ids = np.unique(subjects)
    order = np.random.default_rng(seed).permutation(ids)
    return [np.isin(subjects, part) for part in np.array_split(order, k)]


def ridge_probe(
    features: np.ndarray,
    presence: np.ndarray,
    subjects: np.ndarray,
    au_names: Sequence[str],
    *,
    folds: int = 3,
    seed: int = 0,
    strengths: Sequence[float] = RIDGE_STRENGTHS,
) -> ProbeScore:
    """Subject-independent ridge probe of ``features (n, d)`` for ``presence (n, n_aus)`` (see the module docstring)."""
    from aucli.metrics import auc_scores, f1_scores, fit_thresholds, nanmean

    features = np.asarray(features, np.float64)
    y = np.asarray(presence, np.float64)
    aucs, f1s, chosen = [], [], []
    for test in _subject_folds(subjects, folds, seed):
        train = ~test
        inner = _subject_folds(subjects[train], 3, seed + 1)
        inner_auc = np.zeros(len(strengths))
        for held in inner:
            predictions = _ridge_predictions(features[train][~held], y[train][~held], features[train][held], strengths)
            labels = presence[train][held]
            inner_auc += [nanmean(auc_scores(p, labels)) for p in predictions]
        best = int(np.argmax(inner_auc))
        chosen.append(strengths[best])
        both = _ridge_predictions(
            features[train], y[train], np.concatenate([features[train], features[test]]), [strengths[best]]
        )[0]
        n_train = int(train.sum())
        thresholds = fit_thresholds(both[:n_train], presence[train])
        predicted = both[n_train:]
        aucs.append(auc_scores(predicted, presence[test]))
        f1s.append(f1_scores(predicted, presence[test], thresholds))
    auc, f1 = np.nanmean(np.stack(aucs), axis=0), np.nanmean(np.stack(f1s), axis=0)
    mean_auc = float(np.mean([nanmean(a) for a in aucs]))
    mean_f1 = float(np.mean([nanmean(f) for f in f1s]))
    return ProbeScore(
        list(au_names), auc, f1, mean_auc, mean_f1, folds, {"ridge_strengths": chosen, "dims": int(features.shape[1])}
    )


def probe_encoders(
    encoders: Mapping[str, nn.Module],
    faces: ProbeFaces,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    folds: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, ProbeScore]]:
    """``{encoder name: {"cls+mean": score, "grid": score, "grid - neutral twin": score}}`` and the same for ``"pixels"``.

    The twin variants are there when ``faces.neutral`` is.
    """

    def probe(x: np.ndarray) -> ProbeScore:
        return ridge_probe(x, faces.presence, faces.subjects, faces.au_names, folds=folds, seed=seed)

    results: dict[str, dict[str, ProbeScore]] = {}
    for name, vit in encoders.items():
        features = encoder_features(vit, faces.images, mean=mean, std=std, device=device)
        results[name] = {kind: probe(x) for kind, x in features.items()}
        if faces.neutral is not None:
            twin = encoder_features(vit, faces.neutral, mean=mean, std=std, device=device)
            results[name]["grid - neutral twin"] = probe(features["grid"] - twin["grid"])
    pixels = pixel_features(faces.images)
    results["pixels"] = {"28x28 grey": probe(pixels)}
    if faces.neutral is not None:
        results["pixels"]["28x28 grey - neutral twin"] = probe(pixels - pixel_features(faces.neutral))
    return results
