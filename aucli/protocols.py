"""Subject-independent evaluation protocols: the field's official 3-fold partitions and generic ones.

BP4D and DISFA are evaluated with the 3-fold subject partitions of JAA-Net / ME-GraphAU / FMAE
(DESIGN.md section 4): fold 1 tests on partition 3, fold 2 on partition 2, fold 3 on partition 1.
Any other corpus gets a deterministic, balanced split of its subjects into k partitions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from aucli.errors import UsageError

BP4D_PARTITIONS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)

DISFA_PARTITIONS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)

#: Named protocols: partitions of subjects; fold f (1-based) tests on partition ``k - f``.
PROTOCOLS: dict[str, tuple[tuple[str, ...], ...]] = {"bp4d": BP4D_PARTITIONS, "disfa": DISFA_PARTITIONS}


@dataclass(frozen=True)
class FoldSplit:
    """The subjects of one fold: train (minus validation), validation (for thresholds) and test."""

    fold: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]

    def subjects(self) -> dict[str, list[str]]:
        """``{"train": [...], "validation": [...], "test": [...]}`` for JSON records."""
        return {"train": list(self.train), "validation": list(self.validation), "test": list(self.test)}


def balanced_partitions(subjects: Sequence[str], n_folds: int, *, seed: int = 0) -> tuple[tuple[str, ...], ...]:
    """Split subjects into ``n_folds`` partitions whose sizes differ by at most one (deterministic)."""
    unique = sorted(set(subjects))
    if n_folds < 2:
        raise UsageError(f"a subject-independent protocol needs at least 2 folds, got {n_folds}")
    if len(unique) < n_folds:
        raise UsageError(f"{len(unique)} subjects cannot be split into {n_folds} folds; use fewer folds")
    rng = random.Random(seed)
    rng.shuffle(unique)
    return tuple(tuple(sorted(unique[i::n_folds])) for i in range(n_folds))


def protocol_partitions(
    protocol: str | Sequence[Sequence[str]], subjects: Sequence[str], *, n_folds: int = 3, seed: int = 0
) -> tuple[tuple[str, ...], ...]:
    """Partitions for a named protocol (``bp4d``, ``disfa``, ``auto``) or explicit lists.

    ``auto`` uses the official partitions when every subject of the corpus belongs to them, else a
    balanced split. Official partitions are restricted to the subjects present.
    """
    present = set(subjects)
    if isinstance(protocol, str):
        key = protocol.lower()
        if key == "auto":
            for partitions in PROTOCOLS.values():
                if present and present <= {s for p in partitions for s in p}:
                    return tuple(tuple(s for s in p if s in present) for p in partitions)
            return balanced_partitions(subjects, n_folds, seed=seed)
        if key == "balanced":
            return balanced_partitions(subjects, n_folds, seed=seed)
        if key not in PROTOCOLS:
            raise UsageError(f"unknown protocol {protocol!r}; choose auto, balanced, {', '.join(PROTOCOLS)} or give subject lists")
        partitions = PROTOCOLS[key]
        missing = present - {s for p in partitions for s in p}
        if missing:
            raise UsageError(f"subjects {', '.join(sorted(missing))} are not part of the {key} protocol")
        return tuple(tuple(s for s in p if s in present) for p in partitions)
    return tuple(tuple(p) for p in protocol)


def fold_split(
    partitions: Sequence[Sequence[str]], fold: int, *, validation_fraction: float = 0.15, seed: int = 0
) -> FoldSplit:
    """Train / validation / test subjects of ``fold`` (1-based); fold f tests on partition k - f.

    Validation subjects are drawn from the training partitions (never the test fold) and serve
    threshold calibration and model selection.
    """
    k = len(partitions)
    if not 1 <= fold <= k:
        raise UsageError(f"fold must be between 1 and {k}, got {fold}")
    test = tuple(partitions[k - fold])
    train_pool = sorted(s for i, p in enumerate(partitions) if i != k - fold for s in p)
    if not test or not train_pool:
        raise UsageError(f"fold {fold} has no test or no training subjects in this corpus")
    n_validation = round(len(train_pool) * validation_fraction) if validation_fraction > 0 else 0
    n_validation = min(max(n_validation, 1 if validation_fraction > 0 else 0), len(train_pool) - 1)
    rng = random.Random(seed * 1000 + fold)
    validation = tuple(sorted(rng.sample(train_pool, n_validation)))
    train = tuple(s for s in train_pool if s not in validation)
    return FoldSplit(fold=fold, train=train, validation=validation, test=test)
