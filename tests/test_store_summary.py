"""The store summary (``summarize_store`` / ``render_store_summary``, used by ``aucli info STORE``)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from store_fixtures import add_source, source_info

from aucli.errors import StoreError
from aucli.store import CorpusStore
from aucli.store.summary import render_store_summary, summarize_store


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "corpus.h5"
    with CorpusStore.create(path, crop_size=16, preprocess={"detector": "centerface", "margin": 0.25}) as opened:
        add_source(opened, "F001/T1", range(10), subject="F001", recording="T1", noface=(4,))
        add_source(opened, "F002/T1", range(6), subject="F002", recording="T1", tracks=2)
        opened.record_failure(source_info("F003/T1", "F003"), "F003/T1: not a readable video")
        occurrence = np.full((opened.n_faces, 2), -1, np.int8)
        occurrence[:9] = [[1, 0]] * 4 + [[0, 0]] * 5
        opened.write_labels("human", ["AU1", "AU12"], occurrence, attrs={"format": "bp4d"})
        opened.write_run(
            "predictions", "fold1", {"probs": np.zeros((opened.n_faces, 2), np.float32)}, {"checkpoint": "ck.safetensors"}
        )
        opened.write_run("audit", "round1", {"score": np.zeros(3)}, {"labels": "human"})
    return path


def test_summary_counts_everything(store) -> None:
    summary = summarize_store(store)
    assert summary["schema_version"] == 1 and summary["crop_size"] == 16 and summary["compression"] == "none"
    assert summary["sources"] == {"done": 2, "failed": 1, "by_kind": {"video": 2}}
    assert summary["subjects"] == [
        {"subject": "F001", "sources": 1, "frames": 10, "faces": 9},
        {"subject": "F002", "sources": 1, "frames": 6, "faces": 12},
    ]
    assert summary["frames"] == 16 and summary["faces"] == 21 and summary["frames_without_face"] == 1
    assert summary["faces_off_subject_track"] == 6
    (labels,) = summary["label_sets"]
    assert labels["name"] == "human" and labels["labelled_faces"] == 9
    assert labels["rates"] == {"AU1": 0.4444, "AU12": 0.0} and labels["positives"] == {"AU1": 4, "AU12": 0}
    assert summary["predictions"][0]["name"] == "fold1" and summary["predictions"][0]["checkpoint"] == "ck.safetensors"
    assert summary["audit"][0]["labels"] == "human"
    assert summary["failed_sources"] == [{"key": "F003/T1", "message": "F003/T1: not a readable video"}]
    json.dumps(summary)  # plain values only: --json prints it as is


def test_rendered_tables(store, capsys) -> None:
    render_store_summary(summarize_store(store))
    out = capsys.readouterr().out
    for text in (
        "version 1, 16x16 crops, compression none",
        "2 done (2 videos), 1 failed",
        "16 sampled, 1 without a face",
        "21 (6 of other people than the subject)",
        "Subjects",
        "F002",
        "0.444 (4/9)",
        "fold1",
        "round1",
        "F003/T1: not a readable video",
    ):
        assert text in out, text


def test_summary_of_something_that_is_not_a_store(tmp_path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        summarize_store(tmp_path / "missing.h5")


def test_aucli_info_store_end_to_end(store, tmp_path) -> None:
    from click.testing import CliRunner

    from aucli.cli.main import cli

    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(cli, ["info", str(store)])
    assert result.exit_code == 0, result.output
    for text in ("2 done (2 videos), 1 failed", "Subjects", "0.444 (4/9)", "fold1", "round1"):
        assert text in result.stdout, text
    data = json.loads(runner.invoke(cli, ["info", str(store), "--json"]).stdout)
    assert data["faces"] == 21 and data["label_sets"][0]["name"] == "human"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["aucli_store"] = "corpus"
        f.attrs["schema_version"] = 0
    result = runner.invoke(cli, ["info", str(other)])
    assert result.exit_code == 1
    assert (
        f"Error: {other}: store schema version 0, but this aucli reads version 1; re-run `aucli preprocess` into a new store"
        in (result.output)
    )
