from __future__ import annotations

import pytest

from aucli.errors import UsageError
from aucli.protocols import BP4D_PARTITIONS, DISFA_PARTITIONS, balanced_partitions, fold_split, protocol_partitions


def test_official_partitions_have_the_published_sizes() -> None:
    assert [len(p) for p in BP4D_PARTITIONS] == [14, 14, 13]
    assert len({s for p in BP4D_PARTITIONS for s in p}) == 41
    assert [len(p) for p in DISFA_PARTITIONS] == [9, 9, 9]
    assert len({s for p in DISFA_PARTITIONS for s in p}) == 27


def test_fold_one_tests_on_partition_three() -> None:
    split = fold_split(BP4D_PARTITIONS, 1, validation_fraction=0.0)
    assert split.test == BP4D_PARTITIONS[2]
    assert set(split.train) == set(BP4D_PARTITIONS[0]) | set(BP4D_PARTITIONS[1])
    assert fold_split(BP4D_PARTITIONS, 3).test == BP4D_PARTITIONS[0]


def test_validation_comes_from_training_subjects_only() -> None:
    split = fold_split(DISFA_PARTITIONS, 2, validation_fraction=0.2, seed=3)
    assert split.validation and not set(split.validation) & set(split.test)
    assert not set(split.validation) & set(split.train)
    assert set(split.validation) | set(split.train) == set(DISFA_PARTITIONS[0]) | set(DISFA_PARTITIONS[2])


def test_auto_protocol_uses_official_lists_or_balances() -> None:
    assert protocol_partitions("auto", ["F001", "M011", "F007"]) == (("F001",), ("M011",), ("F007",))
    parts = protocol_partitions("auto", [f"S{i:02d}" for i in range(10)])
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert balanced_partitions([f"S{i}" for i in range(10)], 3, seed=1) == balanced_partitions([f"S{i}" for i in range(10)], 3, seed=1)


def test_bad_folds_are_refused() -> None:
    with pytest.raises(UsageError, match="fold must be between 1 and 3, got 4"):
        fold_split(BP4D_PARTITIONS, 4)
    with pytest.raises(UsageError, match="not part of the bp4d protocol"):
        protocol_partitions("bp4d", ["F001", "X999"])
