"""aucli.engine.predict on real media (PyAV videos, a frame folder, a still) through the real
CenterFace detector and a tiny random AUFormer checkpoint: tables, faceless frames, thresholds,
Parquet, stores, agreement with the training evaluation path, bad inputs, resuming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from predict_fixtures import TINY_AUS, TINY_THRESHOLDS, Corpus, tiny_checkpoint, write_corpus

from aucli.aus import openface_column
from aucli.engine.predict import Predictor, parse_shard, predict_sources, predict_store, shard_of
from aucli.engine.predict.tables import BASE_COLUMNS, read_table, table_columns, table_names
from aucli.errors import UsageError
from aucli.faces.pipeline import FaceOptions

OPTIONS = FaceOptions(detector="centerface", crop_size=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    return Predictor(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return write_corpus(tmp_path_factory.mktemp("media") / "corpus")


@pytest.fixture(scope="module")
def predicted(corpus, predictor, tmp_path_factory):
    """One run over the whole corpus (batch 4: batches span frames and inputs)."""
    out = tmp_path_factory.mktemp("out") / "preds"
    summary = predict_sources(
        [corpus.folder, corpus.image], predictor, out, face_options=OPTIONS, batch_size=4, show_progress=False
    )
    return out, summary


def outcome(summary, key):
    return next(o for o in summary.outcomes if o.key == key)


def test_one_row_per_sampled_frame_with_openface_columns(corpus, predicted) -> None:
    out, summary = predicted
    assert [(o.key, o.status) for o in summary.outcomes] == [
        ("corpus/clips/a.mp4", "done"),
        ("corpus/clips/b.mp4", "done"),
        ("corpus/clips/bad.mp4", "failed"),
        ("corpus/F001/T1", "done"),
        ("still.png", "done"),
    ]
    for key, plan in corpus.videos.items():
        table = read_table(out / outcome(summary, f"corpus/{key}").table)
        assert list(table) == table_columns(TINY_AUS)
        assert table["frame"].tolist() == list(range(plan.n_frames))
        np.testing.assert_allclose(table["timestamp"], plan.timestamps, atol=1e-6)
        assert table["success"].tolist() == [int(f) for f in plan.has_face]
        faced = table["success"] == 1
        assert (table["face_id"][faced] == 0).all() and (table["face_id"][~faced] == -1).all()
        assert (table["confidence"][faced] > 0.5).all() and (table["FaceRectWidth"][faced] > 20).all()
        centres_x = table["FaceRectX"][faced] + table["FaceRectWidth"][faced] / 2
        expected_x = np.array([c[0] for c in plan.centres if c is not None])
        assert np.abs(centres_x - expected_x).max() < 15  # the box is on the pasted face
        for name in TINY_AUS:
            p, c = table[openface_column(name, "p")], table[openface_column(name, "c")]
            assert np.isnan(p[~faced]).all() and (c[~faced] == -1).all()  # empty cells on faceless frames
            assert ((p[faced] >= 0) & (p[faced] <= 1)).all()
    assert outcome(summary, "corpus/clips/a.mp4").frames == 10 and outcome(summary, "corpus/clips/a.mp4").faces == 8


def test_thresholds_decide_the_c_columns(predicted) -> None:
    out, summary = predicted
    table = read_table(out / outcome(summary, "corpus/clips/a.mp4").table)
    faced = table["success"] == 1
    for name, threshold in zip(TINY_AUS, TINY_THRESHOLDS):
        p, c = table[openface_column(name, "p")][faced], table[openface_column(name, "c")][faced]
        assert (c == (p >= threshold)).all(), name
    assert (table["AU01_c"][faced] == 1).all() and (table["AU02_c"][faced] == 0).all()  # thresholds 0 and 1
    assert summary.thresholds == list(TINY_THRESHOLDS) and summary.au_names == list(TINY_AUS)


def test_frame_folder_numbers_and_a_still_image(corpus, predicted) -> None:
    out, _ = predicted
    folder = read_table(out / "corpus/F001/T1.csv")
    assert folder["frame"].tolist() == corpus.frame_numbers  # BP4D: the number in the file name
    assert folder["success"].tolist() == [0 if n in corpus.frame_no_face else 1 for n in corpus.frame_numbers]
    assert np.isnan(folder["timestamp"]).all()
    still = read_table(out / "still.csv")
    assert still["frame"].tolist() == [0] and still["success"].tolist() == [1]


def test_a_corrupt_video_is_a_failed_line_and_the_others_complete(corpus, predicted) -> None:
    out, summary = predicted
    bad = outcome(summary, "corpus/clips/bad.mp4")
    assert bad.status == "failed" and "bad.mp4: not a readable video" in bad.message and bad.message in summary.problems
    assert not (out / "corpus/clips/bad.csv").exists()
    assert summary.count("done") == 4 and summary.frames == 10 + 6 + 3 + 1 and summary.faces == 8 + 6 + 2 + 1
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["complete"] and manifest["au_names"] == list(TINY_AUS) and manifest["thresholds"] == list(TINY_THRESHOLDS)
    assert {e["key"]: e["status"] for e in manifest["inputs"]}["corpus/clips/bad.mp4"] == "failed"
    assert manifest["columns"] == table_columns(TINY_AUS) and manifest["shard"] is None


def test_the_table_holds_the_models_probabilities_of_the_aligned_crops(corpus, predicted, predictor) -> None:
    """Independent path: extract the faces, apply the training evaluation transform, run the model."""
    import torch

    from aucli.engine.data import FaceTransform, normalize
    from aucli.faces.pipeline import extract_faces
    from aucli.media import discover_sources

    out, summary = predicted
    source = discover_sources([corpus.videos["clips/b.mp4"].path]).sources[0]
    crops = [face.crop for result in extract_faces(source, OPTIONS) for face in result.faces]
    transform = FaceTransform(img_size=32, resize=37, train=False)  # 32 * 256 / 224 = 36.6 -> 37
    images = torch.stack([transform(torch.from_numpy(c).permute(2, 0, 1))[0] for c in crops])
    with torch.no_grad():
        logits = predictor.model(normalize(images, [0.5] * 3, [0.5] * 3, device=torch.device("cpu"))).logits
    expected = torch.sigmoid(logits).numpy()
    table = read_table(out / outcome(summary, "corpus/clips/b.mp4").table)
    got = np.stack([table[openface_column(a, "p")] for a in TINY_AUS], axis=1)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_parquet_tables(corpus, predictor, tmp_path) -> None:
    import pyarrow.parquet as pq

    summary = predict_sources(
        [corpus.videos["clips/a.mp4"].path],
        predictor,
        tmp_path / "pq",
        face_options=OPTIONS,
        table_format="parquet",
        show_progress=False,
    )
    path = tmp_path / "pq" / "a.parquet"
    assert [o.table for o in summary.outcomes] == ["a.parquet"] and path.is_file()
    data = pq.read_table(path)
    assert data.column_names == table_columns(TINY_AUS)
    assert str(data.schema.field("AU12_c").type) == "int8" and str(data.schema.field("face_id").type) == "int32"
    assert data.column("AU12_p").null_count == 2 and data.column("success").to_pylist()[3:5] == [0, 0]
    assert json.loads(data.schema.metadata[b"aucli"])["au_names"] == list(TINY_AUS)
    table = read_table(path)
    assert table["frame"].tolist() == list(range(10))


def test_a_store_gets_a_predictions_run_equal_to_the_tables(corpus, predicted, predictor, tmp_path) -> None:
    from aucli.engine.data import AugmentedFaces, FaceTransform
    from aucli.engine.evaluate import predict_logits
    from aucli.preprocess import run_preprocess
    from aucli.store import CorpusStore
    from aucli.store.dataset import StoreDataset

    store = tmp_path / "corpus.h5"
    run_preprocess([corpus.videos["clips/a.mp4"].path], store, face_options=OPTIONS, show_progress=False)
    summary = predict_store(store, predictor, batch_size=3, show_progress=False)
    run = summary.outcomes[0].table
    assert run == "/predictions/tiny" and summary.outcomes[0].faces == 8
    with CorpusStore.open(store) as opened:
        written = opened.read_run("predictions", "tiny")
    probs = written.arrays["probs"]
    assert probs.shape == (8, 4) and probs.dtype == np.float32
    assert (
        list(written.arrays["au_names"]) == list(TINY_AUS)
        and written.attrs["checkpoint"]["weights_sha256"] == predictor.identity["weights_sha256"]
    )
    np.testing.assert_array_equal(
        written.arrays["decisions"], (np.round(probs.astype(np.float64), 6) >= np.array(TINY_THRESHOLDS)).astype(np.int8)
    )
    # the store's crops are the crops the media run scored: same probabilities as the table
    table = read_table(predicted[0] / outcome(predicted[1], "corpus/clips/a.mp4").table)
    faced = table["success"] == 1
    np.testing.assert_allclose(np.stack([table[openface_column(a, "p")][faced] for a in TINY_AUS], 1), probs, atol=2e-6)
    # and the training evaluation path (H6's predict_logits over the store) agrees
    faces = AugmentedFaces(StoreDataset(store, labelled_only=False), FaceTransform(32, 37, train=False))
    _, logits = predict_logits(predictor.model, faces, device=predictor.device, batch_size=5, mean=[0.5] * 3, std=[0.5] * 3)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probs, atol=2e-6)
    # a second run of the same checkpoint is skipped
    again = predict_store(store, predictor, show_progress=False)
    assert again.outcomes[0].status == "skipped"


def test_rerun_skips_finished_tables_and_redoes_a_missing_one(corpus, predictor, tmp_path) -> None:
    inputs = [corpus.videos["clips/a.mp4"].path, corpus.videos["clips/b.mp4"].path]
    out = tmp_path / "resume"
    first = predict_sources(inputs, predictor, out, face_options=OPTIONS, show_progress=False)
    assert [o.status for o in first.outcomes] == ["done", "done"]
    stamp = os.stat(out / "a.csv").st_mtime_ns
    (out / "b.csv").unlink()
    manifest = json.loads((out / "predictions.json").read_text())
    second = predict_sources(inputs, predictor, out, face_options=OPTIONS, show_progress=False)
    assert [(o.key, o.status, o.frames, o.faces) for o in second.outcomes] == [
        ("a.mp4", "skipped", 10, 8),
        ("b.mp4", "done", 6, 6),
    ]
    assert os.stat(out / "a.csv").st_mtime_ns == stamp
    assert json.loads((out / "predictions.json").read_text())["inputs"] == manifest["inputs"]
    assert (os.stat(out / "a.csv").st_mode & 0o777) == 0o666 & ~_umask()  # not mkstemp's 0600
    # killed after a table was renamed but before the manifest said so: the table counts
    pending = [dict(e, status="pending", frames=0, faces=0) if e["key"] == "b.mp4" else e for e in manifest["inputs"]]
    (out / "predictions.json").write_text(json.dumps(dict(manifest, inputs=pending, complete=False)))
    resumed = predict_sources(inputs, predictor, out, face_options=OPTIONS, show_progress=False)
    assert [(o.status, o.frames, o.faces) for o in resumed.outcomes] == [("skipped", 10, 8), ("skipped", 6, 6)]
    assert json.loads((out / "predictions.json").read_text())["complete"]
    with pytest.raises(UsageError, match=r"holds predictions made differently \(.*every 1 -> 2"):
        predict_sources(
            inputs, predictor, out, face_options=FaceOptions(detector="centerface", crop_size=64, every=2), show_progress=False
        )
    third = predict_sources(inputs, predictor, out, face_options=OPTIONS, overwrite=True, show_progress=False)
    assert [o.status for o in third.outcomes] == ["done", "done"]


def test_shards_partition_the_sorted_inputs() -> None:
    keys = [f"k{i}" for i in range(7)]
    for n in (1, 2, 3, 7, 9):
        parts = [shard_of(keys, (i, n)) for i in range(1, n + 1)]
        assert sorted(j for part in parts for j in part) == list(range(7))
    assert shard_of(keys, (2, 3)) == [1, 4]
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "2-4", "1/0"):
        with pytest.raises(UsageError, match="shard"):
            parse_shard(bad)


def test_table_names_keep_the_suffix_only_where_names_collide() -> None:
    names = table_names(["clips/a.mp4", "clips/a.avi", "clips/b.mp4", "F001/T1", "x.y/T2.5"], "csv")
    assert names == {
        "clips/a.mp4": "clips/a.mp4.csv",
        "clips/a.avi": "clips/a.avi.csv",
        "clips/b.mp4": "clips/b.csv",
        "F001/T1": "F001/T1.csv",
        "x.y/T2.5": "x.y/T2.5.csv",
    }
    assert BASE_COLUMNS[:4] == ("frame", "timestamp", "face_id", "success")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_several_faces_on_a_frame_are_rows_by_face_id(predictor, tmp_path) -> None:
    from media_fixtures import render_frame, write_video

    frames = [render_frame(480, 240, centre=(120 + 4 * i, 120), scale=0.9, others=(((360 - 4 * i, 125), 0.8),)) for i in range(3)]
    frames.append(render_frame(480, 240, centre=None, scale=0.9))
    video = write_video(tmp_path / "two.mp4", frames)
    options = FaceOptions(detector="centerface", crop_size=64, select="all", max_faces=2)
    summary = predict_sources([video], predictor, tmp_path / "out", face_options=options, show_progress=False)
    table = read_table(tmp_path / "out" / "two.csv")
    assert table["frame"].tolist() == [0, 0, 1, 1, 2, 2, 3] and table["face_id"].tolist() == [0, 1, 0, 1, 0, 1, -1]
    assert table["success"].tolist() == [1] * 6 + [0]
    left = table["FaceRectX"][table["face_id"] == 0]
    assert np.all(np.diff(left) >= 0) or np.all(np.diff(left) <= 0)  # a track follows one face
    assert (summary.outcomes[0].frames, summary.outcomes[0].faces) == (4, 6)
