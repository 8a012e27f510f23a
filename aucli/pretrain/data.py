"""Synthetic faces for pretraining and probing, aligned as ``aucli preprocess`` aligns a corpus.

A face here goes through the same path as a frame of the default synthetic corpus on its way into
AUFormer: a ``frame_size`` frame in video framing (head and shoulders, :func:`aucli.synth.scene.compose_frame`),
5 landmarks (the renderer's own, plus a little Gaussian jitter standing in for a detector's error),
:func:`aucli.faces.align.align_face` onto the 256 px margin template (preprocess's default crop),
then the training recipe's resize to ``crop_size`` (``round(img_size * 256 / 224)``: 128 for a
112 px model) with the same antialiased bilinear filter as :class:`aucli.engine.data.FaceTransform`.
Training then takes the recipe's random ``img_size`` crops, flips and colour jitter of these.

Identities are drawn from their own seed streams (``[STREAM, seed, split, k]``), never the
``[seed, 0, i]`` streams of ``aucli synth`` corpora, so a pretraining or probe identity is a fresh
draw from the same distribution as a corpus subject, not a copy of one. Everything is a pure
function of its seed: a face block renders identically in any process, in any order.

:class:`FaceCache` keeps the rendered crops of a pretraining run in one ``.npy`` file (memory
mapped) with a JSON list of finished blocks beside it, so an interrupted run renders only what is
missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "STREAM",
    "Split",
    "FaceSampling",
    "FaceBlock",
    "sample_pretrain_intensities",
    "sample_probe_intensities",
    "render_block",
    "FaceCache",
    "seed_of",
]

#: First word of every pretraining seed stream ("aucli pretrain"); corpora use ``[seed, 0, i]``.
STREAM = 0xA0C11
Split = Literal["train", "val", "probe"]
_SPLIT_WORD = {"train": 0, "val": 1, "probe": 2}


def seed_of(*words: int) -> int:
    """A 63-bit seed from non-negative integers (``np.random.SeedSequence``), for torch generators."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass(frozen=True)
class FaceSampling:
    """How faces are rendered and cropped (every field changes the pixels).

    Attributes:
        frame_size: side of the rendered frame (video framing, as ``aucli synth --size``).
        crop_size: side of the stored face (the training recipe's resize side).
        align_size: side of the aligned crop before the resize (``aucli preprocess``'s crop size).
        frames_per_identity: faces rendered per identity (one block).
        scenes_per_identity: recordings (background, light, camera) the block's faces come from.
        landmark_jitter: standard deviation (frame pixels) of the noise added to the landmarks.
        occlusion_rate: share of recordings with a hand or object passing over the face.
    """

    frame_size: int = 224
    crop_size: int = 128
    align_size: int = 256
    frames_per_identity: int = 24
    scenes_per_identity: int = 2
    landmark_jitter: float = 1.0
    occlusion_rate: float = 0.25

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class FaceBlock:
    """One identity's faces.

    Attributes:
        crops: (F, crop_size, crop_size, 3) uint8 aligned, resized faces.
        intensity: (F, n_aus, 2) float32 AU intensity per side, :data:`aucli.synth.facs.SYNTH_AUS` order.
        pose: (F, 3) float32 yaw, pitch, roll in degrees.
        neutral: (F, crop_size, crop_size, 3) uint8 the same faces without any AU (same identity,
            recording, frame and pose; aligned on their own landmarks), when asked for.
    """

    crops: np.ndarray
    intensity: np.ndarray
    pose: np.ndarray
    neutral: np.ndarray | None = None


def sample_pretrain_intensities(rng: np.random.Generator, n_frames: int, n_aus: int) -> np.ndarray:
    """Broad expression variety, ``(n_frames, n_aus, 2)``: 0-6 random AUs per face at 0.3-5, often asymmetric.

    No AU label is ever used in pretraining; this only makes the encoder see every AU at every
    intensity, alone and in combinations (about 1 face in 7 is neutral).
    """
    intensity = np.zeros((n_frames, n_aus, 2), np.float32)
    for f in range(n_frames):
        active = rng.choice(n_aus, size=int(rng.integers(0, 7)), replace=False)
        level = rng.uniform(0.3, 5.0, size=active.size)
        sides = np.ones((active.size, 2))
        asymmetric = rng.random(active.size) < 0.2
        sides[asymmetric, rng.integers(0, 2, int(asymmetric.sum()))] = rng.uniform(0.0, 0.8, int(asymmetric.sum()))
        intensity[f, active] = level[:, None] * sides
    return intensity


def sample_probe_intensities(rng: np.random.Generator, n_frames: int, n_aus: int, rate: float = 0.3) -> np.ndarray:
    """Probe faces, ``(n_frames, n_aus, 2)``: each AU present with probability ``rate`` at 0.5-5 (FACS A-E), both sides."""
    present = rng.random((n_frames, n_aus)) < rate
    level = rng.uniform(0.5, 5.0, size=(n_frames, n_aus)) * present
    return np.repeat(level[..., None], 2, axis=2).astype(np.float32)


def _resize(aligned: np.ndarray, side: int) -> np.ndarray:
    """(n, S, S, 3) uint8 -> (n, side, side, 3): :class:`aucli.engine.data.FaceTransform`'s antialiased bilinear resize, rounded."""
    import torch
    import torch.nn.functional as F

    if aligned.shape[1] == side:
        return aligned
    with torch.no_grad():
        x = torch.from_numpy(aligned).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp_(0, 255).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def render_block(seed: int, split: Split, index: int, sampling: FaceSampling, *, neutral: bool = False) -> FaceBlock:
    """Render identity ``index`` of ``split`` (its own seed stream): ``frames_per_identity`` aligned faces.

    ``neutral`` also renders every face's neutral twin (no AU; the same draws otherwise, so the
    faces themselves do not change).
    """
    from aucli.faces.align import align_face
    from aucli.synth.recording import SUPERSAMPLE
    from aucli.synth.face import FaceModel
    from aucli.synth.facs import SYNTH_AUS
    from aucli.synth.identity import sample_identity
    from aucli.synth.render import FaceRenderer, Framing
    from aucli.synth.scene import compose_frame, sample_nuisance, sample_scene

    rng = np.random.default_rng([STREAM, int(seed), _SPLIT_WORD[split], int(index)])
    identity = sample_identity(rng, f"P{index:06d}")
    size = sampling.frame_size
    renderer = FaceRenderer(FaceModel(identity, Framing.video(size).px_per_unit * SUPERSAMPLE))
    n = sampling.frames_per_identity
    sampler = sample_probe_intensities if split == "probe" else sample_pretrain_intensities
    intensity = sampler(rng, n, len(SYNTH_AUS))
    scenes = max(1, min(sampling.scenes_per_identity, n))
    scene_of = np.sort(np.arange(n) % scenes)
    aligned = np.empty((n, sampling.align_size, sampling.align_size, 3), np.uint8)
    twins = np.empty_like(aligned) if neutral else None
    pose = np.zeros((n, 3), np.float32)
    track = 250  # a 10 s recording at 25 fps; the block's faces are frames drawn from it
    for s in range(scenes):
        frames = np.nonzero(scene_of == s)[0]
        scene = sample_scene(rng, identity, size, framing="video")
        nuisance = sample_nuisance(rng, track, identity, size=size, occlusion_rate=sampling.occlusion_rate)
        times = rng.choice(track, size=frames.size, replace=False)
        for f, t in zip(frames, times):
            frame, truth = compose_frame(renderer, scene, nuisance, int(t), intensity[f])
            jitter = rng.normal(0.0, sampling.landmark_jitter, truth.landmarks.shape)
            aligned[f], _ = align_face(frame, truth.landmarks + jitter, size=sampling.align_size)
            pose[f] = (nuisance.yaw[t], nuisance.pitch[t], nuisance.roll[t])
            if twins is not None:
                twin, twin_truth = compose_frame(renderer, scene, nuisance, int(t), np.zeros_like(intensity[f]))
                twins[f], _ = align_face(twin, twin_truth.landmarks + jitter, size=sampling.align_size)
    side = sampling.crop_size
    return FaceBlock(_resize(aligned, side), intensity, pose, None if twins is None else _resize(twins, side))


def _render_crops(args: tuple[int, Split, int, FaceSampling]) -> tuple[int, np.ndarray]:
    seed, split, index, sampling = args
    return index, render_block(seed, split, index, sampling).crops


def _one_thread() -> None:
    """Initializer of rendering worker processes: one torch/OpenCV thread each."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class FaceCache:
    """Rendered crops of ``identities`` identities of one split, in ``folder/faces-<key>.npy``.

    Row ``k * F + j`` is face ``j`` of identity ``k`` (``F`` = ``frames_per_identity``). Finished
    identities are listed in ``faces-<key>.json``, written after the array is flushed, so a kill
    never leaves a listed block half-written.
    """

    def __init__(self, folder: str | Path, *, seed: int, split: Split, identities: int, sampling: FaceSampling) -> None:
        self.folder = Path(folder)
        self.seed, self.split, self.identities, self.sampling = int(seed), split, int(identities), sampling
        key = f"{split}-{seed}-{identities}-{sampling.key()}"
        self.array_path = self.folder / f"faces-{key}.npy"
        self.done_path = self.folder / f"faces-{key}.json"

    @property
    def n_faces(self) -> int:
        return self.identities * self.sampling.frames_per_identity

    def done(self) -> set[int]:
        if not (self.done_path.is_file() and self.array_path.is_file()):
            return set()
        return set(json.loads(self.done_path.read_text(encoding="utf-8"))["done"])

    def ensure(self, *, workers: int = 1, on_block: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Render the missing identities (``workers`` processes) and return the (n, C, C, 3) uint8 array (memory mapped).

        ``on_block(done, total)`` is called after every finished identity.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        shape = (self.n_faces, self.sampling.crop_size, self.sampling.crop_size, 3)
        done = self.done()
        if done and self.array_path.is_file():
            array = np.load(self.array_path, mmap_mode="r+")
            if array.shape != shape:
                done, array = set(), None
        else:
            array = None
        if array is None:
            done = set()
            array = np.lib.format.open_memmap(self.array_path, mode="w+", dtype=np.uint8, shape=shape)
        todo = [k for k in range(self.identities) if k not in done]
        frames = self.sampling.frames_per_identity
        if on_block:
            on_block(len(done), self.identities)
        tasks = [(self.seed, self.split, k, self.sampling) for k in todo]

        def store(index: int, crops: np.ndarray) -> None:
            array[index * frames : (index + 1) * frames] = crops
            done.add(index)
            if len(done) % 8 == 0 or len(done) == self.identities:
                self._commit(array, done)
            if on_block:
                on_block(len(done), self.identities)

        try:
            if workers > 1 and len(tasks) > 1:
                with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread) as pool:
                    for index, crops in pool.map(_render_crops, tasks, chunksize=1):
                        store(index, crops)
            else:
                for task in tasks:
                    store(*_render_crops(task))
        finally:
            self._commit(array, done)
        return np.load(self.array_path, mmap_mode="r")

    def _commit(self, array: np.ndarray, done: set[int]) -> None:
        array.flush()
        temporary = self.done_path.with_name(f".{self.done_path.name}.tmp")
        temporary.write_text(json.dumps({"done": sorted(done)}), encoding="utf-8")
        os.replace(temporary, self.done_path)

    def remove(self) -> None:
        self.array_path.unlink(missing_ok=True)
        self.done_path.unlink(missing_ok=True)
