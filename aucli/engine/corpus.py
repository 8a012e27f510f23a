"""What a training run reads: a store's labelled faces aligned to the model's AUs, split into subject folds.

:func:`prepare_corpus` resolves the label set and the AU columns and splits the subjects into the
protocol's partitions; :func:`fold_indices` gives a fold's training, validation and test faces
(validation subjects are drawn from the training partitions; ``train.train_fraction`` keeps a
seeded share of the remaining training subjects).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from aucli.config import Recipe
from aucli.engine.data import label_columns, resolve_label_set, store_dataset
from aucli.errors import StoreError, UsageError
from aucli.protocols import FoldSplit, fold_split, protocol_partitions
from aucli.store import CorpusStore

__all__ = ["Corpus", "fold_indices", "prepare_corpus"]


@dataclass
class Corpus:
    """The labelled faces of a store, aligned to the model's AUs, and the protocol's partitions.

    ``splits``: explicit subjects of some folds (fold number -> :class:`FoldSplit`), used instead
    of the partitions for those folds (a final model whose validation subjects are also its
    "test"). ``train_repeats``: ``(len(dataset),)`` times each face appears in a training epoch
    (0 leaves it out of training; validation and test always see every face once); None: once.
    """

    store: Path
    label_set: str
    columns: dict[str, str]
    dataset: Any
    subjects: np.ndarray
    partitions: tuple[tuple[str, ...], ...]
    splits: dict[int, FoldSplit] | None = None
    train_repeats: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels


def prepare_corpus(store: str | Path, recipe: Recipe) -> Corpus:
    """Resolve the label set and AU columns, read the labelled rows and split subjects into partitions."""
    with CorpusStore.open(store) as opened:
        label_set = resolve_label_set(opened, recipe.data.labels)
        label_aus = opened.read_labels(label_set).au_names
    columns = label_columns(recipe.model.au_names, label_aus, recipe.data.au_map, require_all=True)
    dataset = store_dataset(store, labels=label_set, label_aus=list(columns.values()))
    if len(dataset) == 0:
        raise StoreError(f"label set {label_set!r} of {store} labels no face for the AUs {', '.join(columns.values())}")
    subjects = np.asarray(dataset.subjects, dtype=object)
    protocol = recipe.train.protocol
    partitions = protocol_partitions(protocol, sorted(set(subjects.tolist())), n_folds=recipe.train.n_folds, seed=recipe.train.seed)
    return Corpus(Path(store), label_set, columns, dataset, subjects, partitions)


def fold_indices(corpus: Corpus, fold: int, recipe: Recipe) -> tuple[FoldSplit, np.ndarray, np.ndarray, np.ndarray]:
    """The fold's subjects (after ``train_fraction``) and dataset positions of train, validation, test."""
    if corpus.splits is not None and fold in corpus.splits:
        split = corpus.splits[fold]
    else:
        split = fold_split(corpus.partitions, fold, validation_fraction=recipe.train.validation_fraction, seed=recipe.train.seed)
    fraction = recipe.train.train_fraction
    if fraction < 1.0:
        keep = max(1, round(len(split.train) * fraction))
        chosen = random.Random(recipe.train.seed * 7919 + fold).sample(sorted(split.train), keep)
        split = replace(split, train=tuple(sorted(chosen)))
    train = np.flatnonzero(np.isin(corpus.subjects, list(split.train)))
    if corpus.train_repeats is not None:
        train = np.repeat(train, corpus.train_repeats[train])
    validation = np.flatnonzero(np.isin(corpus.subjects, list(split.validation)))
    test = np.flatnonzero(np.isin(corpus.subjects, list(split.test)))
    if train.size == 0:
        raise UsageError(f"fold {fold} has no labelled training face; check the label set and the protocol")
    if test.size == 0:
        raise UsageError(f"fold {fold} has no labelled test face; check the label set and the protocol")
    return split, train, validation, test
