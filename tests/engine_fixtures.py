"""Tiny real corpus stores and recipes for the engine tests (train, eval, OOF).

Each AU of the toy corpus draws a bright square at a fixed place of a noisy face-sized image, so a
tiny model can learn it in seconds. ``AU10L`` sits on the image's left, ``AU10R`` on its right: a
horizontal flip moves the square to the other side, and the labels must swap with it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from aucli.config import Recipe, load_recipe
from aucli.store import CorpusStore, SourceInfo

TOY_AUS = ("AU1", "AU2", "AU10L", "AU10R")

#: (row slice, column slice) of each AU's square on a 48 x 48 crop.
TOY_PATCHES = {
    "AU1": (slice(8, 18), slice(19, 29)),
    "AU2": (slice(30, 40), slice(19, 29)),
    "AU10L": (slice(19, 29), slice(6, 16)),
    "AU10R": (slice(19, 29), slice(32, 42)),
}


#: Colour channel of each AU's square in ``colour`` mode (a frozen random ViT sees colour, hardly position).
TOY_CHANNELS = {"AU1": 0, "AU2": 1, "AU10L": 2, "AU10R": 2}


def toy_image(rng: np.random.Generator, present: dict[str, bool], size: int = 48, tint: float = 0.0, colour: bool = False) -> np.ndarray:
    """(size, size, 3) uint8: noise around mid-grey, a bright (``colour``: one-channel) square per present AU."""
    image = rng.normal(110 + tint, 18, size=(size, size, 3))
    scale = size / 48
    for au, on in present.items():
        if on:
            rows, cols = TOY_PATCHES[au]
            r = slice(int(rows.start * scale), int(rows.stop * scale))
            c = slice(int(cols.start * scale), int(cols.stop * scale))
            if colour:
                image[r, c, TOY_CHANNELS[au]] += 120
            else:
                image[r, c] += 110
    return np.clip(image, 0, 255).astype(np.uint8)


def make_toy_store(
    path: Path,
    *,
    subjects: int = 6,
    frames: int = 16,
    size: int = 48,
    seed: int = 0,
    aus: tuple[str, ...] = TOY_AUS,
    label_set: str | None = "manual",
    rate: float = 0.4,
    unknown: float = 0.05,
    colour: bool = False,
) -> Path:
    """A store of ``subjects`` x ``frames`` faces, with a label set (``None``: no labels at all).

    A fraction ``unknown`` of the labels is -1; the images follow the true labels. ``colour``: each
    AU's square brightens one colour channel (AU1 red, AU2 green, AU10L/AU10R blue).
    """
    rng = np.random.default_rng(seed)
    occurrence = []
    with CorpusStore.create(path, crop_size=size) as store:
        for s in range(subjects):
            subject = f"S{s + 1:02d}"
            info = SourceInfo(key=f"{subject}/T1", path=f"/toy/{subject}/T1", kind="frames", subject=subject, recording="T1")
            writer = store.begin_source(info)
            tint = 0.0 if colour else rng.normal(0, 8)
            for frame in range(frames):
                present = {au: bool(rng.random() < rate) for au in TOY_AUS}
                face = SimpleNamespace(
                    crop=toy_image(rng, present, size, tint, colour), box=np.array([0, 0, size, size], np.float32),
                    landmarks=np.zeros((5, 2), np.float32), score=1.0, track_id=0,
                )
                writer.add_frame(frame, float("nan"), [face])
                occurrence.append([1 if present.get(au, False) else 0 for au in aus])
            writer.commit()
        if label_set is not None:
            labels = np.asarray(occurrence, dtype=np.int8)
            labels[rng.random(labels.shape) < unknown] = -1
            store.write_labels(label_set, list(aus), labels, attrs={"format": "toy"})
    return path


def toy_overrides(**extra: object) -> dict[str, object]:
    """Dotted overrides of a tiny, fast recipe: 32 px test ViT of depth 2, random frozen backbone."""
    overrides: dict[str, object] = {
        "model.backbone": "test_vit",
        "model.backbone_overrides": {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        "model.backbone_weights": "random",
        "model.img_size": 32,
        "model.au_names": list(TOY_AUS),
        "model.moke.bottleneck": 4,
        "data.batch_size": 16,
        "data.num_workers": 0,
        "data.color_jitter": 0.1,
        "optim.epochs": 2,
        "optim.lr": 0.003,
        "optim.warmup_epochs": 0.5,
        "train.device": "cpu",
        "train.protocol": "balanced",
        "train.n_folds": 3,
        "train.validation_fraction": 0.25,
        "train.log_every": 2,
    }
    overrides.update(extra)
    return overrides


def toy_recipe(**extra: object) -> Recipe:
    return load_recipe(None, toy_overrides(**extra))


def toy_override_args(**extra: object) -> list[str]:
    """The same overrides as ``--override key=value`` command-line arguments."""
    import json

    args = []
    for key, value in toy_overrides(**extra).items():
        args += ["--override", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args
