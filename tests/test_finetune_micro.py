"""``aucli finetune-micro``: AU transfer, micro labels, folds, the engine hooks it uses, the command
end to end on ``aucli synth --micro`` clips, and users' mistakes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from micro_fixtures import (
    clip_store,
    fast_overrides,
    micro_checkpoint,
    micro_model_config,
    randomise_adapters,
    synth_micro_store,
)

from aucli.cli.main import cli
from aucli.micro.data import final_split, micro_fold_splits, micro_labels, resolve_micro_label_set, training_repeats
from aucli.micro.recipe import split_micro_recipe
from aucli.micro.report import pooled_report
from aucli.micro.transfer import map_micro_aus, transfer_config, transfer_state
from aucli.errors import StoreError, UsageError
from aucli.model import build_model
from aucli.store import CorpusStore

torch.set_num_threads(2)

#: The checkpoint's AUs; the rendered label set (seed 0, 3 subjects x 2 clips) codes AU4, AU9, AU14, AU15, AU23.
CKPT_AUS = ("AU4", "AU12", "AU14", "AU15")
SHARED = ["AU4", "AU14", "AU15"]


# ------------------------------------------------------------------------------------ transfer
@pytest.mark.parametrize("model", [{}, {"head_hidden": 8, "head_pool": "both", "expert_supervision": "all", "expert_pool": "both"}])
def test_transferred_model_computes_the_kept_aus_as_the_checkpoint(model):
    cfg = micro_model_config(("AU1", "AU2", "AU4", "AU12", "AU15"), **model)
    torch.manual_seed(0)
    source = randomise_adapters(build_model(cfg, weights="random"), seed=1).eval()
    keep = ["AU2", "AU12", "AU15"]
    dropped = [i for i, a in enumerate(cfg.au_names) if a not in keep]
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    target_cfg = transfer_config(cfg, ["AU15", "AU2", "AU12"])  # any order in, the checkpoint's order out
    assert target_cfg.au_names == keep and target_cfg.moke.scale == pytest.approx(cfg.moke.scale * 3 / 5)

    def transferred() -> torch.nn.Module:
        target = build_model(target_cfg, weights="random")
        target.load_state_dict(transfer_state(source.state_dict(), cfg.au_names, keep, head_hidden=cfg.head_hidden), strict=True)
        return target.eval()

    with torch.no_grad():
        differs = transferred()(images).logits
        expected = source(images)
        assert not torch.allclose(differs, expected.logits[:, [1, 3, 4]], atol=1e-4)  # dropped experts did contribute
        for group in [*source.attn_experts, *source.mlp_experts]:  # silence them: the rest must agree exactly
            group.up_weight[dropped] = 0
            group.up_bias[dropped] = 0
        expected = source(images)
        got = transferred()(images)
    torch.testing.assert_close(got.logits, expected.logits[:, [1, 3, 4]], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.expert_logits, expected.expert_logits[..., [1, 3, 4]], rtol=1e-4, atol=1e-5)


def test_au_mapping_keeps_shared_aus_in_checkpoint_order():
    pairs, missing = map_micro_aus(CKPT_AUS, ["AU15", "AU4", "AU9", "AU12R"], label_set="coded")
    assert pairs == {"AU4": "AU4", "AU15": "AU15"} and missing == ["AU9", "AU12R"]
    pairs, missing = map_micro_aus(CKPT_AUS, ["AU15", "AU4", "AU9", "AU12R"], label_set="coded", au_map={"AU12": "AU12R"})
    assert pairs == {"AU4": "AU4", "AU12": "AU12R", "AU15": "AU15"} and missing == ["AU9"]
    assert map_micro_aus(CKPT_AUS, ["AU15", "AU4"], label_set="coded", requested=["AU15"])[0] == {"AU15": "AU15"}
    with pytest.raises(UsageError) as error:
        map_micro_aus(CKPT_AUS, ["AU9", "AU4"], label_set="coded", requested=["AU4", "AU9"])
    assert str(error.value).startswith("the checkpoint does not detect AU9 (it detects AU4, AU12, AU14, AU15); an AU is an expert")
    with pytest.raises(StoreError, match=r"^label set 'coded' codes no AU14 \(its AUs: AU9, AU4\)$"):
        map_micro_aus(CKPT_AUS, ["AU9", "AU4"], label_set="coded", requested=["AU14"])
    with pytest.raises(StoreError) as error:
        map_micro_aus(CKPT_AUS, ["AU9", "AU23"], label_set="coded")
    assert str(error.value) == ("no AU in common between the checkpoint (AU4, AU12, AU14, AU15) and label set 'coded' (AU9, AU23); "
                                "map differently named AUs with -o data.au_map=\"{AU12: AU12R}\"")


# ------------------------------------------------------------------------------------ micro labels
CLIPS = [
    # subject, clip, frames, coded window, AUs present in it
    ("sub01", "EP01", 10, (3, 7), ("AU4",)),
    ("sub01", "EP02", 8, (2, 5), ("AU1", "AU12")),
    ("sub02", "EP01", 8, (1, 4), ("AU9",)),  # coded, but none of the fine-tuned AUs
    ("sub02", "EP02", 6, None, ()),  # the sheet does not code this clip
]


def test_micro_labels_read_uncoded_frames_of_coded_clips_as_neutral(tmp_path):
    store = clip_store(tmp_path / "clips.h5", CLIPS, aus=("AU1", "AU4", "AU9", "AU12"), second_face=("EP01", 0))
    with CorpusStore.open(store) as opened:
        data = micro_labels(opened, "coded", ["AU4", "AU1"], apex_fraction=0.5)
        coded_only = micro_labels(opened, "coded", ["AU4", "AU1"], outside="unknown")
    # every subject-track face of the three coded clips (the second face and the uncoded clip: unused)
    assert len(data) == 10 + 8 + 8 and data.n_windows == 2
    frames = {(s, int(f)): i for i, (s, f) in enumerate(zip(data.source, data.frame))}
    ep01 = [data.labels[frames[(0, f)]].tolist() for f in range(10)]
    assert ep01 == [[0, 0]] * 3 + [[1, 0]] * 5 + [[0, 0]] * 2
    assert data.labels[frames[(1, 3)]].tolist() == [0, 1] and data.labels[frames[(2, 2)]].tolist() == [0, 0]
    assert data.coded.sum() == 5 + 4 + 4 and data.event.sum() == 5 + 4
    # apex zone: central half of each window (|i - c| <= L / 4, at least the middle face or two)
    assert [f for f in range(10) if data.apex_zone[frames[(0, f)]]] == [4, 5, 6]
    assert [f for f in range(8) if data.apex_zone[frames[(1, f)]]] == [3, 4]
    assert np.all(np.diff(data.rows) > 0) and set(data.subjects.tolist()) == {"sub01", "sub02"}
    assert len(coded_only) == 13 and (coded_only.labels >= 0).all()
    repeats = training_repeats(data, event_repeat=3, neutral_fraction=1.0)
    assert repeats[data.apex_zone].tolist() == [3] * 5 and (repeats[~data.apex_zone] == 1).all()
    thinned = training_repeats(data, event_repeat=1, neutral_fraction=0.5, seed=4)
    assert (thinned[data.event] == 1).all() and 0 < (thinned[~data.event] == 0).sum() < (~data.event).sum()
    assert np.array_equal(thinned, training_repeats(data, event_repeat=1, neutral_fraction=0.5, seed=4))


def test_only_casme2_label_sets_count_as_micro(tmp_path):
    plain = clip_store(tmp_path / "plain.h5", CLIPS[:1], label_set="manual", format="csv")
    bare = clip_store(tmp_path / "bare.h5", CLIPS[:1], label_set=None)
    with CorpusStore.open(bare) as opened:
        with pytest.raises(StoreError) as error:
            resolve_micro_label_set(opened, None, outside="negative")
    assert str(error.value) == (f"{bare} has no micro-expression label set (it has no label set); import a CASME II coding sheet "
                                f"with `aucli labels import {bare} CASME2-coding.csv --format casme2 --as coded`")
    with CorpusStore.open(plain, "a") as opened:
        with pytest.raises(StoreError, match=r"has no micro-expression label set \(its label sets: manual \(csv\)\)"):
            resolve_micro_label_set(opened, None, outside="negative")
        with pytest.raises(UsageError, match=r"^label set 'manual' has format 'csv', not CASME II onset..offset windows"):
            resolve_micro_label_set(opened, "manual", outside="negative")
        assert resolve_micro_label_set(opened, "manual", outside="unknown") == "manual"
        labels = opened.read_labels("manual")
        opened.write_labels("fixed", labels.au_names, labels.occurrence, attrs={"format": "audit-corrections", "base": "coded"})
        opened.write_labels("coded", labels.au_names, labels.occurrence, attrs={"format": "casme2"})
        with pytest.raises(UsageError, match="several micro-expression label sets \\(coded, fixed\\)"):
            resolve_micro_label_set(opened, None, outside="negative")
        assert resolve_micro_label_set(opened, "fixed", outside="negative") == "fixed"


# ------------------------------------------------------------------------------------ folds and recipe
def test_loso_folds_test_each_subject_once_and_validate_on_others():
    subjects = ["sub03", "sub01", "sub02", "sub01", "sub04", "sub05"]
    splits = micro_fold_splits(subjects, protocol="loso", n_folds=5, validation_fraction=0.25, seed=0)
    assert [s.test for s in splits] == [("sub01",), ("sub02",), ("sub03",), ("sub04",), ("sub05",)]
    for split in splits:
        assert len(split.validation) == 1 and not set(split.validation) & set(split.test)
        assert sorted(split.train + split.validation + split.test) == ["sub01", "sub02", "sub03", "sub04", "sub05"]
    kfold = micro_fold_splits(subjects, protocol="kfold", n_folds=2, validation_fraction=0.25, seed=0)
    assert sorted(len(s.test) for s in kfold) == [2, 3] and sorted(kfold[0].test + kfold[1].test) == sorted(set(subjects))
    final = final_split(subjects, fold=6, validation_fraction=0.25, seed=0)
    assert final.validation == final.test and len(final.validation) == 1 and len(final.train) == 4
    with pytest.raises(UsageError, match="needs at least 2 subjects"):
        micro_fold_splits(["sub01"], protocol="loso", n_folds=5, validation_fraction=0.2, seed=0)


def test_recipe_defaults_and_refusals():
    recipe, micro = split_micro_recipe({"micro": {"aus": "casme2", "tune": "heads"}, "optim": {"epochs": 2}})
    assert recipe.optim.lr == 1e-4 and recipe.optim.epochs == 2 and recipe.optim.warmup_epochs == 0.5
    assert micro.aus == ["AU1", "AU2", "AU4", "AU7", "AU12", "AU14", "AU15", "AU17"] and micro.tune == "heads"
    with pytest.raises(UsageError, match="^finetune-micro takes the model from --checkpoint; remove the model: section"):
        split_micro_recipe({"model": {"au_names": "casme2"}})
    with pytest.raises(UsageError, match="^train.protocol does not apply to finetune-micro"):
        split_micro_recipe({"train": {"protocol": "bp4d"}})
    with pytest.raises(UsageError, match="^unknown key 'micro.event_repeats'; did you mean 'micro.event_repeat'"):
        split_micro_recipe({"micro": {"event_repeats": 2}})


def test_the_casme2_recipe_resolves_to_the_finetune_defaults():
    from aucli.config import read_yaml
    from aucli.micro.recipe import MICRO_DEFAULTS, MicroConfig

    recipe, micro = split_micro_recipe(read_yaml("casme2"))
    assert {k: getattr(recipe.optim, k) for k in MICRO_DEFAULTS["optim"]} == MICRO_DEFAULTS["optim"]
    assert micro.aus == ["AU1", "AU2", "AU4", "AU7", "AU12", "AU14", "AU15", "AU17"]
    assert {k: v for k, v in micro.to_dict().items() if k != "aus"} == {k: v for k, v in MicroConfig().to_dict().items() if k != "aus"}


def test_pooled_f1_sums_counts_over_folds():
    labels = np.array([[1, 0], [1, -1], [0, 1], [0, 0]], np.int8)
    decisions = np.array([[1, 1], [0, 1], [1, 1], [0, 0]], bool)
    report = pooled_report(decisions, labels, ["AU1", "AU2"], "pooled")
    # AU1: TP 1, FN 1, FP 1 -> 0.5; AU2: TP 1, FP 1 (the unknown row does not count) -> 2/3
    np.testing.assert_allclose(report.f1, [0.5, 2 / 3])
    assert report.n_valid.tolist() == [4, 3] and np.isnan(report.auc).all()


# ------------------------------------------------------------------------------------ engine hooks
def test_fold_indices_repeat_training_faces_and_honour_explicit_splits(tmp_path):
    from dataclasses import replace

    from engine_fixtures import make_toy_store, toy_recipe

    from aucli.engine.corpus import fold_indices, prepare_corpus
    from aucli.protocols import FoldSplit

    recipe = toy_recipe()
    corpus = prepare_corpus(make_toy_store(tmp_path / "toy.h5", subjects=4, frames=5), recipe)
    explicit = FoldSplit(7, train=("S01", "S02"), validation=("S03",), test=("S03",))
    repeats = np.where(np.isin(corpus.subjects, ["S01"]), 2, 1)
    repeats[np.flatnonzero(corpus.subjects == "S02")[0]] = 0
    corpus = replace(corpus, splits={7: explicit}, train_repeats=repeats)
    split, train, validation, test = fold_indices(corpus, 7, recipe)
    s01, s02 = (np.flatnonzero(corpus.subjects == s) for s in ("S01", "S02"))
    assert split == explicit and np.array_equal(validation, test)
    assert sorted(train.tolist()) == sorted(np.repeat(s01, 2).tolist() + s02[1:].tolist())


def test_checkpoints_keep_frozen_experts(tmp_path):
    from aucli.config import Recipe
    from aucli.model.checkpoint import load_model_checkpoint, save_checkpoint

    cfg = micro_model_config(("AU1", "AU2"))
    model = randomise_adapters(build_model(cfg, weights="random"), seed=3)
    model.attn_experts.requires_grad_(False)
    model.mlp_experts.requires_grad_(False)
    save_checkpoint(tmp_path / "heads", model, recipe=Recipe(model=cfg), thresholds=[0.4, 0.6])
    loaded = load_model_checkpoint(tmp_path / "heads.json")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


# ------------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("micro")
    store = synth_micro_store(folder, subjects=3, clips=2, frames=20, seed=0)
    checkpoint = micro_checkpoint(folder / "macro", aus=CKPT_AUS, thresholds=[0.5, 0.5, 0.3, 0.7])
    return folder, store, checkpoint


@pytest.fixture(scope="module")
def loso_run(micro_data):
    folder, store, checkpoint = micro_data
    out = folder / "run"
    args = ["finetune-micro", str(store), "--checkpoint", str(checkpoint), "--out", str(out), "--labels", "synth", "--quiet",
            *fast_overrides()]
    return CliRunner().invoke(cli, args), out


def test_loso_run_reports_before_and_after_and_writes_its_folder(loso_run, micro_data):
    result, out = loso_run
    assert result.exit_code == 0, result.output
    assert "AU F1 (%), test predictions of 3 LOSO folds pooled" in result.output
    assert "before (val thr)" in result.output and "Mean F1 (%) per fold" in result.output
    assert "Note: not fine-tuned, the checkpoint has no expert for them: AU9, AU23" in result.output
    micro = json.loads((out / "micro.json").read_text())
    assert micro["au_pairs"] == {a: a for a in SHARED} and micro["label_set"] == "synth"
    assert [f["test"] for f in micro["folds"]] == [["sub01"], ["sub02"], ["sub03"]]
    assert micro["faces"] == 120 and micro["event_windows"] == 5 and micro["training_faces_per_epoch"] > 120
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["scope"], r["stage"]) for r in records[-3:]] == [("pooled", "before"), ("pooled", "before_refit"), ("pooled", "after")]
    assert len(records) == 3 * 3 + 3 and all(r["per_au"]["au"] == SHARED for r in records)
    pooled = {r["stage"]: r for r in records if r["scope"] == "pooled"}
    assert pooled["after"]["faces"] == 120 and pooled["after"]["per_au"]["n_positive"] == [17, 9, 18]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 12 and rows[0]["test"] == "sub01" and "f1_AU15" in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean_f1"]) == {"before", "before_refit", "after"} and summary["n_folds"] == 3
    # the "before" columns are the checkpoint's own scores: recompute fold 1 from the stored logits
    from aucli.engine.runs import load_tensors
    from aucli.metrics import evaluate

    zero = load_tensors(out / "zero_shot.safetensors")
    with CorpusStore.open(micro_data[1]) as opened:
        data = micro_labels(opened, "synth", SHARED)
    test = data.subjects == "sub01"
    probs = torch.sigmoid(zero["logits"][:, [0, 2, 3]]).numpy()
    expected = evaluate(probs[test], data.labels[test], thresholds=[0.5, 0.3, 0.7])
    fold1 = next(r for r in records if r["fold"] == 1 and r["stage"] == "before")
    np.testing.assert_allclose([np.nan if v is None else v for v in fold1["per_au"]["f1"]], expected.f1)


def test_finetuned_checkpoint_loads_in_predict(loso_run, micro_data, tmp_path):
    result, out = loso_run
    folder, store, checkpoint = micro_data
    meta = json.loads((out / "finetuned.json").read_text())
    assert meta["au_names"] == SHARED and meta["method"] == "auformer" and len(meta["thresholds"]) == 3
    assert meta["recipe"]["model"]["moke"]["scale"] == pytest.approx(0.75)
    info = meta["training"]["finetune_micro"]
    assert info["source_au_names"] == list(CKPT_AUS) and info["au_pairs"] == {a: a for a in SHARED}
    assert sorted(meta["training"]["subjects"]["train"] + meta["training"]["subjects"]["validation"]) == ["sub01", "sub02", "sub03"]
    clips = folder / "corpus" / "CASME2" / "CASME2_RAW"
    predicted = CliRunner().invoke(cli, ["predict", str(clips), "--checkpoint", str(out / "finetuned.safetensors"),
                                         "--out", str(tmp_path / "preds"), "--detector", "none", "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    tables = sorted((tmp_path / "preds").rglob("*.csv"))
    assert len(tables) == 6
    lines = tables[0].read_text().splitlines()
    header = lines[0].split(",")
    assert {"AU04_c", "AU14_c", "AU15_c"} <= set(header) and "AU12_c" not in header and len(lines) == 21


def test_resume_of_a_finished_run_gives_the_same_summary(loso_run, micro_data):
    result, out = loso_run
    folder, store, checkpoint = micro_data
    before = json.loads((out / "summary.json").read_text())
    args = ["finetune-micro", str(store), "-c", str(checkpoint), "--out", str(out), "--labels", "synth", "--resume", "--json",
            *fast_overrides()]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    payload = json.loads(again.output[again.output.index("{"):])
    assert payload["pooled"] == before["pooled"] and payload["finetuned"] == before["finetuned"]
    changed = CliRunner().invoke(cli, [*args[:-len(fast_overrides())], *fast_overrides(**{"micro.event_repeat": 5})])
    assert changed.exit_code == 2
    assert f"Error: cannot resume {out} with other finetune-micro settings (micro); see {out / 'micro.json'}" in changed.output


def test_heads_only_kfold_keeps_the_checkpoint_experts(micro_data):
    folder, store, checkpoint = micro_data
    out = folder / "heads"
    args = ["finetune-micro", str(store), "-c", str(checkpoint), "--out", str(out), "--labels", "synth", "--aus", "4,15",
            "--folds", "2", "--heads-only", "--no-final", "--json", *fast_overrides()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert payload["n_folds"] == 2 and payload["tune"] == "heads" and payload["finetuned"] is None
    assert payload["au_pairs"] == {"AU4": "AU4", "AU15": "AU15"} and not (out / "finetuned.json").exists()
    from aucli.model.checkpoint import load_checkpoint

    source, _ = load_checkpoint(checkpoint)
    tuned, meta = load_checkpoint(out / "fold1" / "best.json")
    expected = transfer_state(source.state_dict(), list(CKPT_AUS), ["AU4", "AU15"], head_hidden=0)
    assert meta["parameters"]["trainable"] < sum(p.numel() for n, p in tuned.named_parameters() if not n.startswith("backbone."))
    for name, tensor in tuned.state_dict().items():
        if "experts." in name and not name.startswith("expert_heads"):
            torch.testing.assert_close(tensor, expected[name])
    head = "head.mlp.0.weight"
    assert not torch.allclose(tuned.state_dict()[head], expected[head])


def test_users_mistakes(micro_data, tmp_path):
    folder, store, checkpoint = micro_data
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, ["finetune-micro", *args, "--out", str(tmp_path / "out"), "--quiet", *fast_overrides()])

    missing = run(str(store), "-c", str(tmp_path / "nothing.safetensors"))
    assert missing.exit_code == 1
    assert missing.output.strip() == (f"Error: checkpoint not found: {tmp_path / 'nothing.json'} "
                                      "(a checkpoint is NAME.safetensors with NAME.json beside it)")
    plain = clip_store(tmp_path / "plain.h5", CLIPS[:2], label_set="manual", format="bp4d")
    no_micro = run(str(plain), "-c", str(checkpoint))
    assert no_micro.exit_code == 1
    assert no_micro.output.strip() == (f"Error: {plain} has no micro-expression label set (its label sets: manual (bp4d)); import a "
                                       f"CASME II coding sheet with `aucli labels import {plain} CASME2-coding.csv --format casme2 --as coded`")
    other = micro_checkpoint(tmp_path / "other", aus=("AU1", "AU2"))
    disjoint = run(str(store), "-c", str(other), "--labels", "synth")
    assert disjoint.exit_code == 1
    assert disjoint.output.strip() == ("Error: no AU in common between the checkpoint (AU1, AU2) and label set 'synth' (AU4, AU9, "
                                       "AU14, AU15, AU23); map differently named AUs with -o data.au_map=\"{AU12: AU12R}\"")
    lacking = run(str(store), "-c", str(checkpoint), "--labels", "synth", "--aus", "4,9")
    assert lacking.exit_code == 2 and lacking.output.startswith("Error: the checkpoint does not detect AU9 (it detects AU4, AU12")
    both = run(str(store), "-c", str(checkpoint), "--protocol", "loso", "--folds", "3")
    assert both.exit_code == 2
    assert both.output.strip() == "Error: --folds applies to --protocol kfold; leave-one-subject-out has one fold per subject"
    assert len(missing.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
