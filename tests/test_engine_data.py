"""Engine data pipeline: label-set resolution, AU columns, augmentation, samplers, folds, schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fixtures import TOY_AUS, TOY_PATCHES, make_toy_store, toy_recipe

from aucli.config import load_recipe
from aucli.engine.data import (
    AugmentedFaces,
    EpochBatchSampler,
    FaceTransform,
    ShardBatchSampler,
    label_columns,
    resize_side,
    resolve_label_set,
    store_dataset,
)
from aucli.engine.corpus import fold_indices, prepare_corpus
from aucli.engine.fold import lr_at
from aucli.errors import StoreError, UsageError
from aucli.store import CorpusStore


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("data") / "toy.h5", subjects=6, frames=8)


def test_label_set_resolution(tmp_path, toy_store):
    with CorpusStore.open(toy_store) as store:
        assert resolve_label_set(store, None) == "manual"
        assert resolve_label_set(store, "manual") == "manual"
        with pytest.raises(StoreError, match=r"no label set 'human' in .*toy.h5; available label sets: manual"):
            resolve_label_set(store, "human")
    bare = make_toy_store(tmp_path / "bare.h5", subjects=2, frames=2, label_set=None)
    with CorpusStore.open(bare) as store, pytest.raises(StoreError, match="has no label sets; import labels first"):
        resolve_label_set(store, None)
    with CorpusStore.open(toy_store) as store:
        labels = store.read_labels("manual")
    two = make_toy_store(tmp_path / "two.h5", subjects=2, frames=2)
    with CorpusStore.open(two, "a") as store:
        store.write_labels("second", list(TOY_AUS), np.zeros((4, 4), np.int8))
    with CorpusStore.open(two) as store, pytest.raises(UsageError, match=r"several label sets \(manual, second\); choose one with --labels"):
        resolve_label_set(store, None)
    assert labels.au_names == list(TOY_AUS)


def test_label_columns_map_and_missing():
    assert label_columns(["AU1", "AU12"], ["AU1", "AU12R"], {"AU12": "AU12R"}) == {"AU1": "AU1", "AU12": "AU12R"}
    with pytest.raises(StoreError, match=r"no column for AU24 \(its AUs: AU1, AU2\)"):
        label_columns(["AU1", "AU24"], ["AU1", "AU2"])
    assert label_columns(["AU1", "AU24"], ["AU1", "AU2"], require_all=False) == {"AU1": "AU1"}
    with pytest.raises(StoreError, match="no AU in common"):
        label_columns(["AU9"], ["AU1"], require_all=False)
    assert label_columns(["AU1", "AU10L"], ["AU1"], {"AU10L": "AU1"}, require_all=False) == {"AU10L": "AU1"}
    with pytest.raises(StoreError, match=r"no column for AU1 \(its column is mapped to AU10L\)"):
        label_columns(["AU1", "AU10L"], ["AU1"], {"AU10L": "AU1"})
    with pytest.raises(UsageError, match="the AU map names AU5, which the model does not detect"):
        label_columns(["AU1"], ["AU1"], {"AU5": "AU1"})


def test_transform_views():
    image = torch.arange(3 * 48 * 48, dtype=torch.int64).remainder(251).to(torch.uint8).view(3, 48, 48)
    assert resize_side(32, None) == 37 and resize_side(224, None) == 256
    with pytest.raises(UsageError, match=r"data.resize \(20\) must be at least the model's input size \(32\)"):
        resize_side(32, 20)
    evaluation = FaceTransform(img_size=40, resize=48, train=False)
    out, flipped = evaluation(image)
    assert out.shape == (3, 40, 40) and out.dtype == torch.uint8 and not flipped
    assert torch.equal(out, image[:, 4:44, 4:44])  # the centre crop, no resize needed
    train = FaceTransform(img_size=32, resize=37, train=True, hflip=0.5, color_jitter=0.2)
    first = train(image, torch.Generator().manual_seed(5))
    again = train(image, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    views = {train(image, torch.Generator().manual_seed(s))[0].float().sum().item() for s in range(6)}
    assert len(views) > 1


def test_flip_swaps_side_coded_labels(toy_store):
    base = store_dataset(toy_store, labels="manual", label_aus=list(TOY_AUS))
    plain = AugmentedFaces(base, FaceTransform(img_size=48, resize=48, train=True, random_crop=False, hflip=0.0))
    always = AugmentedFaces(base, FaceTransform(img_size=48, resize=48, train=True, random_crop=False, hflip=1.0))
    index = int(np.flatnonzero((base.labels[:, 2] == 1) & (base.labels[:, 3] == 0))[0])
    a, b = plain[(index, 1)], always[(index, 1)]
    assert torch.equal(b["image"], a["image"].flip(-1))
    assert a["labels"].tolist()[2:] == [1, 0] and b["labels"].tolist()[2:] == [0, 1]
    assert b["labels"].tolist()[:2] == a["labels"].tolist()[:2]
    # The square moved with the image: AU10L's square is now where AU10R's would be.
    rows, cols = TOY_PATCHES["AU10R"]
    assert b["image"][:, rows, cols].float().mean() > a["image"][:, rows, cols].float().mean() + 50


def test_epoch_sampler_is_seeded_resumable_and_splits_ranks():
    sampler = EpochBatchSampler(50, 8, seed=3)
    assert sampler.batches_per_epoch == 6 and len(sampler) == 6
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0, start_batch=4)
    assert list(sampler) == epoch0[4:] and len(sampler) == 2
    indices = [i for batch in epoch0 for i, _ in batch]
    assert len(set(indices)) == 48  # one epoch: distinct faces, incomplete last batch dropped
    ranks = [EpochBatchSampler(50, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(0)
    split = [a + b for a, b in zip(*ranks)]
    assert split == epoch0  # same samples, same augmentation seeds, whatever the number of processes
    small = EpochBatchSampler(5, 8, seed=0)
    assert small.batches_per_epoch == 1 and len(next(iter(small))) == 5
    shards = [list(ShardBatchSampler(10, 3, rank=r, world_size=2)) for r in (0, 1)]
    assert [i for shard in shards for batch in shard for i in batch] == list(range(10))


def test_folds_keep_validation_inside_training_subjects(tmp_path):
    store = make_toy_store(tmp_path / "twelve.h5", subjects=12, frames=2)
    recipe = toy_recipe(**{"train.validation_fraction": 0.25})
    corpus = prepare_corpus(store, recipe)
    tested = set()
    for fold in (1, 2, 3):
        split, train, validation, test = fold_indices(corpus, fold, recipe)
        assert set(split.validation).isdisjoint(split.test) and set(split.train).isdisjoint(split.test)
        assert set(split.validation).isdisjoint(split.train) and len(split.validation) == 2
        assert set(corpus.subjects[validation]) == set(split.validation)
        assert set(corpus.subjects[test]) == set(split.test)
        tested |= set(split.test)
    assert len(tested) == 12
    fraction = toy_recipe(**{"train.train_fraction": 0.5})
    first = fold_indices(corpus, 1, fraction)[0]
    full = fold_indices(corpus, 1, recipe)[0]
    assert len(first.train) == 3 and first == fold_indices(corpus, 1, fraction)[0]
    assert set(first.train) < set(full.train) and first.validation == full.validation and first.test == full.test


def test_lr_schedule():
    kwargs = dict(lr=1.0, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, **kwargs) == pytest.approx(0.1) and lr_at(9, **kwargs) == pytest.approx(1.0)
    assert lr_at(10, **kwargs) == pytest.approx(1.0)
    assert lr_at(55, **kwargs) == pytest.approx(0.55)
    assert lr_at(100, **kwargs) == pytest.approx(0.1)
    values = [lr_at(s, **kwargs) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_recipe_sections_and_errors():
    recipe = load_recipe(None, ["train.fold=all", "data.au_map=AU12=AU12R", "optim.lr=1.0e-3", "train.method=lora"])
    assert recipe.train.fold == "all" and recipe.data.au_map == {"AU12": "AU12R"} and recipe.optim.lr == 0.001
    with pytest.raises(UsageError, match=r"unknown key 'train.metod'; did you mean 'train.method'\?"):
        load_recipe(None, ["train.metod=lora"])
    with pytest.raises(UsageError, match="train.method must be one of auformer, linear, adaptformer, lora, full"):
        load_recipe(None, ["train.method=dora"])
    with pytest.raises(UsageError, match=r"train.validation_fraction must be between 0.0 and 0.9 \(found 0.95\)"):
        load_recipe(None, ["train.validation_fraction=0.95"])
    with pytest.raises(UsageError, match="sends several model AUs to AU2"):
        load_recipe(None, ["data.au_map=AU1=AU2,AU3=AU2"])
