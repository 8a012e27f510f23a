"""Training and evaluation data: label-set resolution, deterministic augmentation, samplers, loaders.

Faces stream from the store through DataLoader worker processes (:class:`aucli.store.dataset.StoreDataset`
opens the HDF5 file lazily in each worker). Augmentation follows the field (DESIGN.md section 4):
resize the stored crop to ``R = round(img_size * 256 / 224)`` (256 for a 224 model), take a random
``img_size`` crop in training and the centre crop in evaluation, flip horizontally with probability
``hflip`` (side-coded AU labels swap with the image, :func:`aucli.aus.flip_permutation`), and jitter
brightness, contrast and saturation.

Every random choice of a training sample is drawn from a generator seeded by ``(seed, epoch,
position in the epoch)``. The data order is a seeded permutation per epoch. So a run resumed in the
middle of an epoch sees exactly the samples and augmentations an uninterrupted run would, whatever
the number of workers or DDP processes.

Images leave the workers as uint8 ``(B, 3, img_size, img_size)``; :func:`normalize` turns them into
the model's input on the device (cheap to transfer, normalised where the compute is).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from aucli.aus import flip_permutation
from aucli.config import DataConfig
from aucli.errors import StoreError, UsageError
from aucli.store.dataset import StoreDataset

__all__ = [
    "resolve_label_set",
    "label_columns",
    "resize_side",
    "FaceTransform",
    "AugmentedFaces",
    "EpochBatchSampler",
    "ShardBatchSampler",
    "collate_faces",
    "make_loader",
    "normalize",
    "sample_seed",
]


# ------------------------------------------------------------------------------------ labels
def resolve_label_set(store, name: str | None) -> str:
    """The label set to use: ``name`` when the store has it, or the store's only set when ``name`` is None.

    Args:
        store: an open :class:`aucli.store.CorpusStore`.
    Raises:
        StoreError: the store has no label set, or not ``name`` (the message lists what it has).
        UsageError: ``name`` is None and the store has several sets.
    """
    available = store.label_sets()
    if not available:
        raise StoreError(
            f"{store.path} has no label sets; import labels first (`aucli labels import ...`) or train on a store that has them"
        )
    if name is None:
        if len(available) > 1:
            raise UsageError(f"{store.path} has several label sets ({', '.join(available)}); choose one with --labels NAME")
        return available[0]
    if name not in available:
        raise StoreError(f"no label set {name!r} in {store.path}; available label sets: {', '.join(available)}")
    return name


def label_columns(
    model_aus: Sequence[str], label_aus: Sequence[str], au_map: Mapping[str, str] | None = None, *, require_all: bool = True
) -> dict[str, str]:
    """Model AU -> label-set AU: through ``au_map`` where given, else by the same name.

    A label-set AU that the map assigns to one model AU is not matched by name to another. With
    ``require_all`` every model AU must be found (training); otherwise AUs without a column are
    left out (cross-corpus evaluation on the common AUs).
    """
    au_map = dict(au_map or {})
    unknown = [a for a in au_map if a not in model_aus]
    if unknown:
        raise UsageError(f"the AU map names {', '.join(unknown)}, which the model does not detect (model AUs: {', '.join(model_aus)})")
    claimed = set(au_map.values())
    columns: dict[str, str] = {}
    missing: list[str] = []
    for au in model_aus:
        target = au_map.get(au, au)
        if au not in au_map and target in claimed:
            missing.append(f"{au} (its column is mapped to {next(a for a, t in au_map.items() if t == target)})")
        elif target in label_aus:
            columns[au] = target
        else:
            missing.append(au if target == au else f"{au} (mapped to {target})")
    if missing and require_all:
        raise StoreError(
            f"the label set has no column for {', '.join(missing)} (its AUs: {', '.join(label_aus)}); train on its AUs "
            "(model.au_names) or map names with data.au_map / --au-map MODEL_AU=STORE_AU"
        )
    if not columns:
        raise StoreError(f"no AU in common between the model ({', '.join(model_aus)}) and the label set ({', '.join(label_aus)})")
    return columns


# ------------------------------------------------------------------------------------ transforms
def resize_side(img_size: int, resize: int | None) -> int:
    """Side the stored crop is resized to: ``resize``, or ``round(img_size * 256 / 224)``."""
    side = int(resize) if resize is not None else int(round(img_size * 256 / 224))
    if side < img_size:
        raise UsageError(f"data.resize ({side}) must be at least the model's input size ({img_size})")
    return side


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the augmentation of the sample at ``position`` of ``epoch``."""
    mixed = np.random.SeedSequence([int(seed), int(epoch), int(position)]).generate_state(2, np.uint32)
    return int((int(mixed[0]) << 31) ^ int(mixed[1])) & ((1 << 63) - 1)


@dataclass(frozen=True)
class FaceTransform:
    """Resize, crop, flip and colour jitter on one uint8 ``(3, S, S)`` face (in a worker).

    ``train=False`` gives the deterministic evaluation view: resize, centre crop.
    """

    img_size: int
    resize: int
    train: bool
    random_crop: bool = True
    hflip: float = 0.5
    color_jitter: float = 0.0

    @classmethod
    def from_config(cls, cfg: DataConfig, img_size: int, *, train: bool) -> FaceTransform:
        return cls(img_size, resize_side(img_size, cfg.resize), train, cfg.random_crop, cfg.hflip, cfg.color_jitter)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, bool]:
        """``image (3, S, S) uint8`` -> ``(3, img_size, img_size) uint8`` and whether it was flipped."""
        side, size = self.resize, self.img_size
        if image.shape[-1] != side or image.shape[-2] != side:
            image = F.interpolate(image[None].float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]
            image = image.clamp_(0, 255).add_(0.5).to(torch.uint8)  # rounds: uint8 conversion truncates
        draws = torch.rand(6, generator=generator, dtype=torch.float64).tolist() if self.train else [0.5] * 6
        if self.train and self.random_crop:
            top, left = int(draws[0] * (side - size + 1)), int(draws[1] * (side - size + 1))
        else:
            top = left = (side - size) // 2
        image = image[:, top : top + size, left : left + size]
        flipped = self.train and draws[2] < self.hflip
        if flipped:
            image = image.flip(-1)
        if self.train and self.color_jitter > 0:
            image = _jitter(image, self.color_jitter, draws[3:6])
        return image.contiguous(), flipped


def _jitter(image: torch.Tensor, strength: float, draws: Sequence[float]) -> torch.Tensor:
    """Brightness, contrast and saturation factors drawn from ``[1 - strength, 1 + strength]``."""
    brightness, contrast, saturation = (1.0 + strength * (2.0 * d - 1.0) for d in draws)
    x = image.float() * brightness
    gray = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    x = (x - gray.mean()) * contrast + gray.mean()
    gray = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    x = (x - gray) * saturation + gray
    return x.clamp_(0, 255).add_(0.5).to(torch.uint8)


class AugmentedFaces(Dataset):
    """A :class:`StoreDataset` seen through a :class:`FaceTransform`.

    Keys are ``index`` or ``(index, seed)``: the seed drives the sample's augmentation (see
    :class:`EpochBatchSampler`). A flipped sample's labels are permuted with the image.

    Args:
        base: the store dataset.
        transform: the view (training or evaluation).
        indices: positions in ``base`` this dataset covers (a fold's subjects); default all.
    """

    def __init__(self, base: StoreDataset, transform: FaceTransform, indices: np.ndarray | None = None) -> None:
        self.base = base
        self.transform = transform
        self.indices = np.arange(len(base), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self.flip_perm = torch.as_tensor(flip_permutation(base.au_names), dtype=torch.long) if base.au_names else None

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def labels(self) -> np.ndarray | None:
        """(len, K) int8 labels of the covered items (None without a label set)."""
        return None if self.base.labels is None else self.base.labels[self.indices]

    @property
    def rows(self) -> np.ndarray:
        """(len,) store rows of the covered items."""
        return self.base.rows[self.indices]

    def _apply(self, item: dict[str, Any], seed: int | None) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        image, flipped = self.transform(item["image"], generator)
        item["image"] = image
        if flipped and "labels" in item and self.flip_perm is not None:
            item["labels"] = item["labels"][self.flip_perm]
        return item

    @staticmethod
    def _split(key: Any) -> tuple[int, int | None]:
        if isinstance(key, tuple):
            return int(key[0]), int(key[1])
        return int(key), None

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, seed = self._split(key)
        return self._apply(self.base[int(self.indices[index])], seed)

    def __getitems__(self, keys: Sequence[Any]) -> list[dict[str, Any]]:
        split = [self._split(key) for key in keys]
        items = self.base.__getitems__([int(self.indices[index]) for index, _ in split])
        return [self._apply(item, seed) for item, (_, seed) in zip(items, split)]


def collate_faces(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Items -> ``image (B, 3, H, W) uint8``, ``labels (B, K) int8`` (when present), ``row (B,) int64``."""
    batch = {"image": torch.stack([item["image"] for item in items]), "row": torch.as_tensor([item["row"] for item in items])}
    if "labels" in items[0]:
        batch["labels"] = torch.stack([item["labels"] for item in items])
    return batch


# ------------------------------------------------------------------------------------ samplers
class EpochBatchSampler:
    """Training batches: a seeded permutation per epoch, split across DDP ranks, resumable mid-epoch.

    Each batch of the global batch size is cut into ``world_size`` equal parts; rank r takes part r.
    Incomplete last batches are dropped (every step sees the same batch size), except that a set
    smaller than one batch is one batch. Keys are ``(index, augmentation seed)``.

    Args:
        n: number of samples.
        batch_size: global batch size (all ranks together).
        seed: seed of the order and the augmentations.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if n < world_size:
            raise UsageError(f"{n} training faces cannot be split across {world_size} processes")
        self.n = int(n)
        global_batch = min(int(batch_size), self.n)
        self.global_batch = global_batch - global_batch % world_size
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip the batches already trained (resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        per_rank = self.global_batch // self.world_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            start = batch * self.global_batch + self.rank * per_rank
            yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in range(start, start + per_rank)]


class ShardBatchSampler:
    """Evaluation batches in order over this rank's contiguous share of ``range(n)`` (no augmentation)."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        bounds = np.linspace(0, n, world_size + 1).round().astype(int)
        self.start, self.stop = int(bounds[rank]), int(bounds[rank + 1])
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return math.ceil((self.stop - self.start) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(self.start, self.stop, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.stop)))


def make_loader(dataset: Dataset, batch_sampler: Any, *, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``batch_sampler`` with persistent worker processes (each opens the store once)."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate_faces,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 on ``device``, scaled to [0, 1] and normalised per channel."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    return x.sub_(mean_t).div_(std_t)


def store_dataset(
    store: str | Path, *, labels: str | None, label_aus: Sequence[str] | None, rows: np.ndarray | None = None
) -> StoreDataset:
    """A :class:`StoreDataset` of labelled rows (helper shared by training, evaluation and OOF)."""
    return StoreDataset(store, labels=labels, au_names=label_aus, rows=rows, labelled_only=labels is not None)
