"""Helpers for the predict tests: tiny random AUFormer checkpoints and a small real media corpus.

The checkpoints are real ``aucli-checkpoint-1`` files (safetensors + JSON) of a 32-pixel test ViT
with random weights (the backbone travels inside the checkpoint), so predictions are not
meaningful, but every step a real checkpoint goes through is taken. The media are real videos,
a BP4D-style frame folder and a still image written by ``media_fixtures`` from the astronaut photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from media_fixtures import VideoPlan, astronaut, write_corrupt_video, write_face_video, write_frame_folder

from aucli.config import ModelConfig
from aucli.model import build_model
from aucli.model.checkpoint import save_checkpoint

TINY_AUS = ("AU1", "AU2", "AU4", "AU12")
#: One AU always on (threshold 0), one never (1), two decided at 0.5.
TINY_THRESHOLDS = (0.0, 1.0, 0.5, 0.5)


def tiny_checkpoint(path: Path, *, seed: int = 0, thresholds=TINY_THRESHOLDS) -> Path:
    """Write ``path.safetensors`` + ``path.json``: a 2-block, 32-dim test ViT AUFormer with random
    non-zero experts and heads; returns the JSON path."""
    torch.manual_seed(seed)
    config = ModelConfig(
        backbone="test_vit",
        backbone_overrides={"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        img_size=32,
        au_names=list(TINY_AUS),
    )
    model = build_model(config, weights="random")
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    _, meta = save_checkpoint(path, model.eval(), thresholds=list(thresholds))
    return meta


@dataclass
class Corpus:
    """The media written by :func:`write_corpus`."""

    folder: Path
    image: Path
    videos: dict[str, VideoPlan]
    frame_numbers: list[int]
    frame_no_face: tuple[int, ...]
    corrupt: Path


def write_corpus(folder: Path, *, corrupt: bool = True) -> Corpus:
    """``folder/clips/a.mp4`` (10 frames, no face on 3 and 4), ``folder/clips/b.mp4`` (6 frames),
    ``folder/F001/T1/`` (BP4D frames 2440..2442, no face on 2441), optionally ``folder/clips/bad.mp4``
    (corrupt), and ``folder.parent/still.png`` (a still, outside the folder)."""
    import cv2

    videos = {
        "clips/a.mp4": write_face_video(folder / "clips" / "a.mp4", n_frames=10, no_face=(3, 4)),
        "clips/b.mp4": write_face_video(folder / "clips" / "b.mp4", n_frames=6, fps=10.0),
    }
    numbers, no_face = [2440, 2441, 2442], (2441,)
    write_frame_folder(folder / "F001" / "T1", numbers, no_face=no_face)
    bad = folder / "clips" / "bad.mp4"
    if corrupt:
        write_corrupt_video(bad, n_frames=4)
    image = folder.parent / "still.png"
    cv2.imwrite(str(image), astronaut()[..., ::-1])
    return Corpus(folder, image, videos, numbers, no_face, bad)
