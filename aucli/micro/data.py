"""Micro-expression training data: CASME II-style label sets, event windows, training repeats, subject folds.

A CASME II coding sheet labels each clip's onset..offset frames (the clip's AUs present, every other
AU of the sheet absent) and leaves the clip's other frames unknown (:mod:`aucli.labels.casme2`).
For training and evaluation those other frames are what the field treats them as: the neutral
face before and after the movement, negative for every AU (``outside="negative"``, the default).
Frames of clips the sheet does not code stay unknown and are not used.

Micro AUs are rare (a brief event in a long neutral clip) and weak; what training sees can be
rebalanced per face, for training only (validation and test faces are always seen once):

- *event windows* are runs of consecutive faces of a clip on which a fine-tuned AU is present;
  the central ``apex_fraction`` of each window is repeated ``event_repeat`` times per epoch. The
  store keeps onset..offset but not the coded apex, so the window's centre stands in for it;
- faces without any present AU (neutral, or another AU's event) are kept with probability
  ``neutral_fraction`` (seeded).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aucli.errors import StoreError, UsageError
from aucli.protocols import FoldSplit, balanced_partitions, fold_split
from aucli.store.dataset import StoreDataset
from aucli.store.schema import SUBJECT_TRACK

__all__ = [
    "MICRO_FORMATS",
    "MicroFaces",
    "MicroLabels",
    "final_split",
    "label_set_format",
    "micro_fold_splits",
    "micro_labels",
    "resolve_micro_label_set",
    "training_repeats",
]

#: Label-set formats whose coded frames are onset..offset windows of clips.
MICRO_FORMATS = ("casme2",)


def label_set_format(store, name: str) -> str:
    """The format of label set ``name``; a set corrected by ``aucli audit`` has its base set's format."""
    seen: set[str] = set()
    while name not in seen:
        seen.add(name)
        attrs = store.label_attrs(name)
        base = attrs.get("base")
        if attrs.get("format") == "audit-corrections" and isinstance(base, str) and base in store.label_sets():
            name = base
            continue
        return str(attrs.get("format") or "")
    return ""


def resolve_micro_label_set(store, name: str | None, *, outside: str) -> str:
    """The label set to fine-tune on: ``name``, or the store's only micro-expression set.

    A set of another format is accepted only with ``outside="unknown"`` (its frames are then used
    as they are coded): reading its uncoded frames as neutral would invent negatives.

    Raises:
        StoreError: the store has no (micro-expression) label set, or not ``name``.
        UsageError: several micro sets and no ``name``, or a set of another format.
    """
    available = store.label_sets()
    formats = {n: label_set_format(store, n) for n in available}
    micro = [n for n in available if formats[n] in MICRO_FORMATS]
    listed = ", ".join(f"{n} ({formats[n] or 'no format'})" for n in available)
    importing = f"import a CASME II coding sheet with `aucli labels import {store.path} CASME2-coding.csv --format casme2 --as coded`"
    if name is None:
        if not micro:
            found = f"its label sets: {listed}" if available else "it has no label set"
            raise StoreError(f"{store.path} has no micro-expression label set ({found}); {importing}")
        if len(micro) > 1:
            raise UsageError(f"{store.path} has several micro-expression label sets ({', '.join(micro)}); choose one with --labels NAME")
        return micro[0]
    if name not in available:
        raise StoreError(f"no label set {name!r} in {store.path}; available label sets: {listed or 'none'}")
    if formats[name] not in MICRO_FORMATS and outside == "negative":
        raise UsageError(
            f"label set {name!r} has format {formats[name] or 'none'!r}, not CASME II onset..offset windows, so its uncoded "
            "frames cannot be read as neutral; use a casme2 label set, or add -o micro.outside=unknown to train on its coded frames only"
        )
    return name


@dataclass
class MicroLabels:
    """The faces a micro fine-tuning uses, with their labels (all arrays ``(n,)`` unless said).

    Attributes:
        rows: store face rows, sorted.
        labels: ``(n, K)`` int8 in the label-set columns' order: 1 present, 0 absent, -1 unknown.
        subjects: subject of each face.
        source: /sources row of each face; ``frame``: its frame index.
        coded: the sheet codes the face (inside an onset..offset window); the others were read as
            neutral (``outside="negative"``).
        event: a fine-tuned AU is present on the face.
        apex_zone: the face lies in the central ``apex_fraction`` of its event window.
        n_windows: number of event windows.
    """

    rows: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    source: np.ndarray
    frame: np.ndarray
    coded: np.ndarray
    event: np.ndarray
    apex_zone: np.ndarray
    n_windows: int

    def __len__(self) -> int:
        return int(self.rows.size)


def micro_labels(
    store, label_set: str, label_aus: Sequence[str], *, outside: str = "negative", apex_fraction: float = 0.5
) -> MicroLabels:
    """Read ``label_set``'s columns ``label_aus`` and complete them as the module docstring says.

    Args:
        store: an open :class:`aucli.store.CorpusStore`.
        label_aus: the label-set AUs fine-tuned, in the model's AU order.
        outside: ``negative``: the subject's uncoded faces of a coded clip are neutral (0 for every
            AU); ``unknown``: only coded faces are used.
        apex_fraction: central share of each event window that is its apex zone.
    """
    if outside not in ("negative", "unknown"):
        raise UsageError(f"micro.outside must be negative or unknown (found {outside!r})")
    every = store.read_labels(label_set).occurrence
    chosen = store.read_labels(label_set, au_names=list(label_aus)).occurrence
    table = store.face_table(["source", "frame", "track"])
    coded_any = (every >= 0).any(axis=1)
    subject_track = table["track"] == SUBJECT_TRACK
    coded_sources = np.unique(table["source"][coded_any & subject_track])
    labels = chosen.copy()
    use = coded_any & subject_track
    if outside == "negative":
        neutral = subject_track & ~coded_any & np.isin(table["source"], coded_sources)
        labels[neutral] = 0
        use |= neutral
    use &= (labels >= 0).any(axis=1)
    rows = np.flatnonzero(use)
    source, frame = table["source"][rows], table["frame"][rows]
    order = np.lexsort((frame, source))  # by source, then frame: event windows are runs in this order
    rows, source, frame = rows[order], source[order], frame[order]
    labels = labels[rows]
    event = (labels == 1).any(axis=1)
    apex_zone, n_windows = _apex_zones(event, source, apex_fraction)
    back = np.argsort(rows, kind="stable")  # store-row order (fast slab reads)
    return MicroLabels(
        rows=rows[back], labels=np.ascontiguousarray(labels[back]), subjects=store.face_subjects()[rows[back]],
        source=source[back], frame=frame[back], coded=coded_any[rows[back]], event=event[back], apex_zone=apex_zone[back],
        n_windows=n_windows,
    )


def _apex_zones(event: np.ndarray, source: np.ndarray, apex_fraction: float) -> tuple[np.ndarray, int]:
    """Faces in the central ``apex_fraction`` of each run of ``event`` within a source (sorted input).

    A run of L faces has centre c = (L - 1) / 2; its face i is in the zone when
    ``|i - c| <= max(apex_fraction * L / 2, 0.5)`` (so at least the middle face or two).
    """
    if not 0.0 <= apex_fraction <= 1.0:
        raise UsageError(f"micro.apex_fraction must be between 0 and 1 (found {apex_fraction})")
    zone = np.zeros(event.size, dtype=bool)
    starts = np.flatnonzero(event & ~np.r_[False, event[:-1] & (source[1:] == source[:-1])])
    for start in starts:
        stop = start
        while stop + 1 < event.size and event[stop + 1] and source[stop + 1] == source[start]:
            stop += 1
        length = stop - start + 1
        offsets = np.arange(length) - (length - 1) / 2
        zone[start : stop + 1] = np.abs(offsets) <= max(apex_fraction * length / 2, 0.5)
    return zone, int(starts.size)


def training_repeats(
    micro: MicroLabels, *, event_repeat: int = 3, neutral_fraction: float = 1.0, seed: int = 0
) -> np.ndarray:
    """``(n,)`` times each face appears in a training epoch (see the module docstring).

    Apex-zone faces: ``event_repeat``; other event faces: 1; faces without a present AU: 1 with
    probability ``neutral_fraction`` (a seeded draw), else 0.
    """
    if event_repeat < 1:
        raise UsageError(f"micro.event_repeat must be at least 1 (found {event_repeat})")
    if not 0.0 <= neutral_fraction <= 1.0:
        raise UsageError(f"micro.neutral_fraction must be between 0 and 1 (found {neutral_fraction})")
    repeats = np.ones(len(micro), dtype=np.int64)
    repeats[micro.apex_zone] = event_repeat
    neutral = ~micro.event
    draw = np.random.default_rng([int(seed), 17]).random(len(micro))
    repeats[neutral & (draw >= neutral_fraction)] = 0
    return repeats


class MicroFaces(StoreDataset):
    """A :class:`StoreDataset` of exactly ``micro.rows``, labelled with ``micro.labels``.

    Args:
        store: path of the store.
        micro: the faces and labels (:func:`micro_labels`).
        label_set: the label set they came from.
        label_aus: the label-set AUs of ``micro.labels``' columns (side-coded AUs swap on flips).
    """

    def __init__(self, store: str | Path, micro: MicroLabels, *, label_set: str, label_aus: Sequence[str]) -> None:
        super().__init__(store, labels=label_set, au_names=list(label_aus), rows=micro.rows, labelled_only=False)
        if not np.array_equal(self.rows, micro.rows):
            raise StoreError(f"{store}: face rows changed while the micro-expression data was read; run again")
        self._labels = np.ascontiguousarray(micro.labels, dtype=np.int8)


def micro_fold_splits(
    subjects: Sequence[str], *, protocol: str, n_folds: int, validation_fraction: float, seed: int
) -> list[FoldSplit]:
    """The folds' subjects: fold f tests on the f-th subject (loso) or the f-th balanced group (kfold).

    Validation subjects are drawn from each fold's training subjects (:func:`aucli.protocols.fold_split`).
    """
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise UsageError(f"a subject-independent protocol needs at least 2 subjects; the micro data has {len(unique)}")
    if protocol == "loso":
        groups: tuple[tuple[str, ...], ...] = tuple((s,) for s in unique)
    elif protocol == "kfold":
        groups = balanced_partitions(unique, n_folds, seed=seed)
    else:
        raise UsageError(f"micro.protocol must be loso or kfold (found {protocol!r})")
    partitions = tuple(reversed(groups))  # fold_split: fold f tests on partition k - f
    return [fold_split(partitions, f, validation_fraction=validation_fraction, seed=seed) for f in range(1, len(groups) + 1)]


def final_split(subjects: Sequence[str], *, fold: int, validation_fraction: float, seed: int) -> FoldSplit:
    """Every subject but a seeded ``validation_fraction`` of them (at least one), which are both the
    validation and the nominal test subjects of the final model."""
    unique = sorted(set(subjects))
    if validation_fraction <= 0:
        raise UsageError("the final model needs validation subjects for its thresholds: set train.validation_fraction > 0, or add --no-final")
    n_validation = min(max(round(len(unique) * validation_fraction), 1), len(unique) - 1)
    validation = tuple(sorted(random.Random(seed * 1000 + 999).sample(unique, n_validation)))
    train = tuple(s for s in unique if s not in validation)
    return FoldSplit(fold=fold, train=train, validation=validation, test=validation)
