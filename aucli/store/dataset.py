"""A torch ``Dataset`` over a corpus store: face crops and label vectors for a DataLoader.

The dataset holds the store's path, never an open h5py object: each DataLoader worker opens the
file itself on first use (h5py handles do not survive a fork; h5py serialises threads, so use
worker processes). Pass ``persistent_workers=True`` so each worker opens the file once.

Everything about which rows and labels is decided in the main process when the dataset is built
(a label set, an AU order, subjects, explicit rows); a worker only reads crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from aucli.errors import StoreError, UsageError
from aucli.store.store import CorpusStore

__all__ = ["StoreDataset"]


class StoreDataset(Dataset):
    """Face crops of a store, with the label vector of one label set.

    Each item is a dict:
        ``image``: (3, S, S) uint8 tensor, RGB (after ``transform`` if given);
        ``labels``: (K,) int8 tensor, 1 / 0 / -1 unknown (only with ``labels``);
        ``intensity``: (K,) float32 tensor, NaN unknown (only with ``intensity=True``);
        ``row``: the face row in the store (int).

    Args:
        store: path of the store.
        labels: name of a label set; None for unlabelled reading (predict).
        au_names: AU columns and their order (default: the label set's); AUs the set lacks are -1.
        rows: face rows to consider (default all); combined with ``subjects``.
        subjects: keep faces of these subjects only (subject-independent folds).
        labelled_only: with ``labels``, drop rows where every AU is unknown (frames without labels,
            faces that are not the subject's track).
        intensity: also return the set's intensities (the set must have them).
        transform: callable applied to the (3, S, S) uint8 image tensor inside the worker. A
            horizontal flip must also permute side-coded AUs (``aucli.aus.flip_permutation``): do
            flips on the batch where the labels are at hand.
    """

    def __init__(
        self,
        store: str | Path,
        *,
        labels: str | None = None,
        au_names: Sequence[str] | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
        subjects: Sequence[str] | None = None,
        labelled_only: bool = True,
        intensity: bool = False,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.path = Path(store)
        self.transform = transform
        with CorpusStore.open(self.path, "r") as opened:
            self.crop_size = opened.crop_size
            selected = opened.rows(subjects=subjects)
            if rows is not None:
                wanted = np.asarray(rows, dtype=np.int64)
                if wanted.size and (wanted.min() < 0 or wanted.max() >= opened.n_faces):
                    raise UsageError(f"rows must be in 0..{opened.n_faces - 1}")
                selected = wanted[np.isin(wanted, selected)]
            self.label_set = labels
            self.au_names: list[str] = []
            self._labels: np.ndarray | None = None
            self._intensity: np.ndarray | None = None
            if labels is not None:
                label_set = opened.read_labels(labels, au_names=au_names)
                self.au_names = label_set.au_names
                occurrence = label_set.occurrence[selected]
                if labelled_only:
                    keep = (occurrence >= 0).any(axis=1)
                    selected, occurrence = selected[keep], occurrence[keep]
                self._labels = np.ascontiguousarray(occurrence, dtype=np.int8)
                if intensity:
                    if label_set.intensity is None:
                        raise StoreError(f"label set {labels!r} has no intensities")
                    self._intensity = np.ascontiguousarray(label_set.intensity[selected], dtype=np.float32)
            elif intensity:
                raise UsageError("intensity=True needs a label set (labels=NAME)")
            self.rows = np.asarray(selected, dtype=np.int64)
            self.subjects = opened.face_subjects()[self.rows] if self.rows.size else np.zeros(0, object)
        self._file = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def labels(self) -> np.ndarray | None:
        """(len, K) int8 label matrix of the selected rows (None without a label set)."""
        return self._labels

    def _images(self):
        # Opened on first use in each process; a forked worker never reuses its parent's handle.
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["frames"]["image"]

    def _item(self, index: int, image: np.ndarray) -> dict[str, Any]:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        item: dict[str, Any] = {"image": self.transform(tensor) if self.transform else tensor, "row": int(self.rows[index])}
        if self._labels is not None:
            item["labels"] = torch.from_numpy(self._labels[index])
        if self._intensity is not None:
            item["intensity"] = torch.from_numpy(self._intensity[index])
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = int(index) % len(self)
        return self._item(index, self._images()[int(self.rows[index])])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch: runs of consecutive rows are read as one slab (fast for unshuffled loading)."""
        indices = [int(i) % len(self) for i in indices]
        rows = self.rows[indices]
        unique, inverse = np.unique(rows, return_inverse=True)
        dataset = self._images()
        data = np.empty((unique.size, self.crop_size, self.crop_size, 3), dtype=np.uint8)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run in np.split(np.arange(unique.size), breaks):
            if run.size:
                data[run[0] : run[-1] + 1] = dataset[unique[run[0]] : unique[run[-1]] + 1]
        return [self._item(i, data[j]) for i, j in zip(indices, inverse)]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        handle = getattr(self, "_file", None)
        if handle is not None:
            try:
                handle.close()
            except Exception:  # interpreter shutdown: the file may already be gone
                pass

    def __repr__(self) -> str:
        labels = f", labels={self.label_set!r}, aus={len(self.au_names)}" if self.label_set else ""
        return f"StoreDataset({str(self.path)!r}, items={len(self)}{labels})"
