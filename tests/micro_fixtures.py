"""Micro-expression test data: tiny AUFormer checkpoints, CASME II-style stores (hand-made and
rendered by ``aucli synth --micro``'s machinery), and fast finetune-micro overrides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from aucli.config import ModelConfig
from aucli.model import build_model
from aucli.model.checkpoint import save_checkpoint
from aucli.store import CorpusStore, SourceInfo

MICRO_CKPT_AUS = ("AU1", "AU2", "AU4", "AU12")


def micro_model_config(aus=MICRO_CKPT_AUS, **model: object) -> ModelConfig:
    """A 2-block, 32-dim test ViT AUFormer at 32 px (random frozen backbone)."""
    values: dict[str, object] = dict(
        backbone="test_vit",
        backbone_overrides={"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        img_size=32,
        au_names=list(aus),
        moke={"bottleneck": 4},
    )
    values.update(model)
    return ModelConfig.from_dict(values, "model")


def randomise_adapters(model: torch.nn.Module, *, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Give every expert and head tensor small random values (up-projections included: at their zero
    init every way of cutting experts would agree trivially)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.copy_(std * torch.randn(param.shape, generator=generator))
    return model


def micro_checkpoint(path: Path, *, aus=MICRO_CKPT_AUS, seed: int = 0, thresholds=None, **model: object) -> Path:
    """``path.safetensors`` + ``path.json``: a trained-looking tiny AUFormer; returns the JSON path."""
    torch.manual_seed(seed)
    net = randomise_adapters(build_model(micro_model_config(aus, **model), weights="random"), seed=seed + 1)
    _, meta = save_checkpoint(path, net.eval(), thresholds=thresholds)
    return meta


def synth_micro_store(folder: Path, *, subjects: int = 4, clips: int = 3, frames: int = 20, seed: int = 0) -> Path:
    """A store of ``aucli synth --micro`` clips (64 px frames, 40 px crops, no face detector), with the
    casme2 label sets ``synth`` and ``synth_clean``."""
    from aucli.synth.corpus import CorpusConfig, corpus_to_store, make_corpus

    manifest = make_corpus(CorpusConfig(folder / "corpus", layout="casme2", subjects=subjects, clips=clips, frames=frames, size=64, seed=seed))
    store = folder / "micro.h5"
    corpus_to_store(manifest, store, detector="none", crop_size=40, show_progress=False)
    return store


def _face(rng: np.random.Generator, size: int, track: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        crop=rng.integers(0, 255, (size, size, 3), dtype=np.uint8), box=np.array([0, 0, size, size], np.float32),
        landmarks=np.zeros((5, 2), np.float32), score=1.0, track_id=track,
    )


def clip_store(path: Path, clips, *, aus=("AU1", "AU4", "AU12"), label_set: str | None = "coded", format: str = "casme2",
               size: int = 40, second_face: tuple[str, int] | None = None) -> Path:
    """A hand-made CASME II-style store.

    ``clips``: ``(subject, clip, n_frames, window, present)``: frames 0..n_frames-1; ``window``
    ``(onset, offset)`` inclusive, or None for a clip the sheet does not code; ``present`` the AUs
    on in the window. ``second_face``: (clip, frame) that also holds a second face (track 1).
    Labels follow the CASME II importer: window frames coded (present 1, others 0), the rest -1.
    """
    rng = np.random.default_rng(0)
    rows = []
    with CorpusStore.create(path, crop_size=size) as store:
        for subject, clip, n_frames, window, present in clips:
            info = SourceInfo(key=f"{subject}/{clip}", path=f"/micro/{subject}/{clip}", kind="frames", subject=subject, recording=clip)
            writer = store.begin_source(info)
            for frame in range(n_frames):
                faces = [_face(rng, size)]
                if second_face == (clip, frame):
                    faces.append(_face(rng, size, track=1))
                writer.add_frame(frame, float("nan"), faces)
                coded = window is not None and window[0] <= frame <= window[1]
                row = [(1 if au in present else 0) if coded else -1 for au in aus]
                rows.extend([row] + [[-1] * len(aus)] * (len(faces) - 1))
            writer.commit()
        if label_set is not None:
            store.write_labels(label_set, list(aus), np.asarray(rows, np.int8), attrs={"format": format})
    return path


def fast_overrides(**extra: object) -> list[str]:
    """``-o`` arguments of a finetune-micro run that takes seconds on a CPU."""
    values: dict[str, object] = {
        "optim.max_steps": 2, "optim.lr": 1e-3, "data.batch_size": 8, "data.num_workers": 0, "train.device": "cpu",
        "train.log_every": 1, "micro.event_repeat": 2,
    }
    values.update(extra)
    args: list[str] = []
    for key, value in values.items():
        args += ["-o", f"{key}={value}"]
    return args
