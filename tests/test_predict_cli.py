"""``aucli predict`` and ``aucli predict merge`` end to end: real videos, CenterFace, tiny checkpoints."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_corrupt_video, write_face_video
from predict_fixtures import TINY_AUS, tiny_checkpoint

from aucli.cli.main import cli
from aucli.engine.predict.tables import check_table_format, read_table
from aucli.errors import UsageError

FAST = ["--detector", "centerface", "--crop-size", "64", "--device", "cpu"]


@pytest.fixture
def runner() -> CliRunner:
    """Wide output, so that rich does not wrap the messages the tests look for."""
    return CliRunner(env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ck")
    return tiny_checkpoint(folder / "tiny"), tiny_checkpoint(folder / "other", seed=1)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media") / "clips"
    write_face_video(folder / "a.mp4", n_frames=6, no_face=(2,))
    write_face_video(folder / "b.mp4", n_frames=4)
    write_face_video(folder / "c.mp4", n_frames=4, no_face=(0, 1, 2, 3))
    write_corrupt_video(folder / "bad.mp4", n_frames=4)
    return folder


@pytest.fixture(scope="module")
def whole(media, checkpoints, tmp_path_factory) -> tuple[Path, dict, str]:
    """``aucli predict FOLDER`` (the default form, tables on stdout/stderr): output folder, JSON, log."""
    out = tmp_path_factory.mktemp("whole") / "preds"
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        cli, ["predict", str(media), "-c", str(checkpoints[0]), "--out", str(out), *FAST]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "predictions.json").read_text()), flat(result.output)


def test_default_form_shows_the_au_set_a_summary_and_the_bad_input(whole) -> None:
    out, manifest, log = whole
    assert "Predicting with checkpoint" in log and "4 AUs AU1 AU2 AU4 AU12; device cpu, fp32" in log
    assert "Warning: " in log and "bad.mp4: not a readable video" in log
    assert "Predict: " in log and "c.mp4: no face found in the 4 sampled frame(s)" in log
    statuses = {e["key"]: (e["status"], e["frames"], e["faces"]) for e in manifest["inputs"]}
    assert statuses == {"a.mp4": ("done", 6, 5), "b.mp4": ("done", 4, 4), "bad.mp4": ("failed", 0, 0), "c.mp4": ("done", 4, 0)}
    assert (read_table(out / "c.csv")["success"] == 0).all()


def test_explicit_run_form_json_and_resume(whole, media, checkpoints, runner) -> None:
    out = whole[0]
    result = runner.invoke(cli, ["predict", "run", str(media), "-c", str(checkpoints[0]), "--out", str(out), *FAST, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {o["key"]: o["status"] for o in summary["outcomes"]} == {
        "a.mp4": "skipped",
        "b.mp4": "skipped",
        "bad.mp4": "failed",
        "c.mp4": "skipped",
    }
    assert summary["au_names"] == list(TINY_AUS) and summary["inputs"] == {"done": 0, "skipped": 3, "failed": 1}


def test_missing_checkpoint_is_one_error_line(media, tmp_path, runner) -> None:
    missing = tmp_path / "nothing.safetensors"
    result = runner.invoke(cli, ["predict", str(media), "-c", str(missing), "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: checkpoint not found: {tmp_path / 'nothing.json'} (a checkpoint is NAME.safetensors with NAME.json beside it)\n"
    )
    assert not (tmp_path / "o").exists()


def test_without_a_checkpoint_the_registered_models_are_listed(tmp_path, runner, monkeypatch) -> None:
    from aucli.model.registry import load_registry, registered_backbones

    args = ["predict", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "o")]
    monkeypatch.delenv("AUCLI_MODELS", raising=False)  # the shipped registry, whatever it lists
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "Traceback" not in result.output and not (tmp_path / "o").exists()
    assert result.output.startswith("Error: no checkpoint given: pass --checkpoint NAME (a registered checkpoint) or --checkpoint PATH")
    shipped = load_registry()
    for name in [*shipped, *registered_backbones()]:
        assert name in result.output
    assert ("No checkpoint is registered yet" in result.output) == (not shipped)
    assert "synthface-vit-s112 (vit_tiny_patch16_224, 112 px, embedded:synthface)" in flat(result.output)

    # a registry with checkpoints: one line each (name, backbone, AUs) and how to pick one
    entry = {"files": {"weights": "x.safetensors", "config": "x.json"}, "sha256": {}, "size": {}, "card": "cards/x.md"}
    registry = {"format_version": 1, "checkpoints": {
        "tiny-b": {**entry, "backbone": "vit_tiny_patch16_224", "au_names": ["AU1", "AU2", "AU12"]},
        "tiny-a": {**entry, "backbone": "vit_base_patch16_224", "au_names": ["AU4"]},
    }}
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setenv("AUCLI_MODELS", str(tmp_path))
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: no checkpoint given") and lines[1] == f"Registered checkpoints ({tmp_path / 'registry.json'}):"
    assert lines[2:4] == ["  tiny-a  backbone vit_base_patch16_224, 1 AU: AU4", "  tiny-b  backbone vit_tiny_patch16_224, 3 AUs: AU1 AU2 AU12"]
    assert lines[4] == "Pick one with --checkpoint tiny-a (or another name above), or pass a checkpoint file." and len(lines) == 5

    # an empty registry says so, and how to get a checkpoint
    (tmp_path / "registry.json").write_text(json.dumps({"format_version": 1, "checkpoints": {}}))
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert "No checkpoint is registered yet" in result.output and "aucli train STORE.h5 --recipe synthetic" in result.output


def test_usage_errors(media, checkpoints, tmp_path, runner, monkeypatch) -> None:
    ck = str(checkpoints[0])
    result = runner.invoke(cli, ["predict", str(media), "-c", ck, *FAST])
    assert (
        result.exit_code == 2
        and result.output == "Error: videos, images and frame folders need --out DIR for their prediction tables\n"
    )
    result = runner.invoke(cli, ["predict", str(media), "-c", ck, "--out", str(tmp_path / "o"), "--shard", "3/2", *FAST])
    assert result.exit_code == 2 and "Error: --shard 3/2: shards are numbered 1..n" in result.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(UsageError, match=r"--format parquet needs pyarrow: pip install 'aucli\[parquet\]'"):
        check_table_format("parquet")


def test_shards_partition_the_inputs_and_merge_joins_them(whole, media, checkpoints, tmp_path, runner) -> None:
    ck, other = (str(c) for c in checkpoints)
    shards = []
    for i in (1, 2):
        result = runner.invoke(
            cli, ["predict", str(media), "-c", ck, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2", *FAST, "--json"]
        )
        assert result.exit_code == 0, result.output
        shards.append({o["key"] for o in json.loads(result.stdout)["outcomes"]})
    assert shards == [{"a.mp4", "bad.mp4"}, {"b.mp4", "c.mp4"}]  # sorted keys a, b, bad, c: every 2nd

    result = runner.invoke(
        cli, ["predict", "merge", str(tmp_path / "s2"), str(tmp_path / "s1"), "--out", str(tmp_path / "merged"), "--json"]
    )
    assert result.exit_code == 0, result.output
    merged = json.loads(result.stdout)
    assert (merged["shards"], merged["inputs"], merged["done"], merged["failed"], merged["frames"], merged["faces"]) == (
        2,
        4,
        3,
        1,
        14,
        9,
    )
    manifest = json.loads((tmp_path / "merged" / "predictions.json").read_text())
    assert (
        manifest["shard"] is None
        and manifest["complete"]
        and [e["key"] for e in manifest["inputs"]] == ["a.mp4", "b.mp4", "bad.mp4", "c.mp4"]
    )
    for name in ("a.csv", "b.csv", "c.csv"):  # the same tables as one unsharded run
        got, expected = read_table(tmp_path / "merged" / name), read_table(whole[0] / name)
        assert got.keys() == expected.keys()
        for column in got:
            np.testing.assert_allclose(got[column], expected[column], atol=2e-6, equal_nan=True)

    def refused(folders, message):
        result = runner.invoke(cli, ["predict", "merge", *map(str, folders), "--out", str(tmp_path / "refused")])
        assert result.exit_code == 2, result.output
        assert message in flat(result.output), result.output
        assert not (tmp_path / "refused").exists()

    refused([tmp_path / "s1"], "shard(s) 2/2 missing: give all 2 shard folders")
    refused([tmp_path / "s1", tmp_path / "s1"], "shard 1/2 is given twice")
    edited = tmp_path / "s2-edited"  # a shard whose manifest lost an input
    shutil.copytree(tmp_path / "s2", edited)
    manifest = json.loads((edited / "predictions.json").read_text())
    manifest["inputs"] = [e for e in manifest["inputs"] if e["key"] != "c.mp4"]
    (edited / "predictions.json").write_text(json.dumps(manifest))
    refused([tmp_path / "s1", edited], "the shards hold 3 input(s), the corpus has 4: some inputs are missing")
    result = runner.invoke(
        cli, ["predict", str(media), "-c", other, "--out", str(tmp_path / "s2-other"), "--shard", "2/2", *FAST]
    )
    assert result.exit_code == 0, result.output
    refused([tmp_path / "s1", tmp_path / "s2-other"], "was predicted with checkpoint")
    refused([tmp_path / "s1", tmp_path / "s2-other"], "shards must come from the same checkpoint")
    # a shard folder cannot be resumed with another checkpoint either
    result = runner.invoke(cli, ["predict", str(media), "-c", other, "--out", str(tmp_path / "s1"), "--shard", "1/2", *FAST])
    assert result.exit_code == 2 and "holds predictions made differently (checkpoint" in flat(result.output)


def test_a_store_input_gets_a_run_and_names_are_guarded(media, checkpoints, tmp_path, runner) -> None:
    from aucli.faces.pipeline import FaceOptions
    from aucli.preprocess import run_preprocess
    from aucli.store import CorpusStore

    ck, other = (str(c) for c in checkpoints)
    store = tmp_path / "corpus.h5"
    run_preprocess([media / "b.mp4"], store, face_options=FaceOptions(detector="centerface", crop_size=64), show_progress=False)
    result = runner.invoke(cli, ["predict", str(store), "-c", ck, "--device", "cpu", "--run-name", "fold1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outcomes"][0]["table"] == "/predictions/fold1" and summary["outcomes"][0]["faces"] == 4
    result = runner.invoke(cli, ["predict", str(store), "-c", other, "--device", "cpu", "--run-name", "fold1"])
    assert result.exit_code == 1
    assert flat(result.output).endswith(
        f"Error: {store} already has predictions run 'fold1' made with another checkpoint; pass --overwrite to replace it or choose another --run-name "
    )
    result = runner.invoke(
        cli, ["predict", str(store), "-c", other, "--device", "cpu", "--run-name", "fold1", "--overwrite", "--json"]
    )
    assert result.exit_code == 0, result.output
    with CorpusStore.open(store) as opened:
        assert opened.runs("predictions") == ["fold1"]
        run = opened.read_run("predictions", "fold1")
    assert run.attrs["checkpoint"]["config_sha256"] == json.loads(result.stdout)["checkpoint"]["config_sha256"]
    assert run.arrays["probs"].shape == (4, 4)
    result = runner.invoke(cli, ["predict", str(store), "-c", ck, "--shard", "1/2", "--device", "cpu"])
    assert result.exit_code == 2 and "a store is predicted whole" in result.output
