"""``aucli predict export --to openface``: OpenFace 2.0 CSVs that OpenFace readers take back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_face_video
from predict_fixtures import TINY_AUS, tiny_checkpoint

from aucli.aus import openface_column
from aucli.cli.main import cli
from aucli.engine.predict.tables import read_table
from aucli.labels.openface import read_openface

FAST = ["--detector", "centerface", "--crop-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_face_video(folder / "clips" / "a.mp4", n_frames=6, no_face=(2, 3))
    checkpoint = tiny_checkpoint(folder / "tiny")
    out = folder / "preds"
    result = CliRunner().invoke(cli, ["predict", str(folder / "clips"), "-c", str(checkpoint), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


def test_the_openface_export_reads_back_as_the_tables_decisions(predicted: Path, tmp_path: Path) -> None:
    out = tmp_path / "of"
    result = CliRunner().invoke(cli, ["predict", "export", str(predicted), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["files"] == ["a.csv"] and summary["rows"] == 6
    header = (out / "a.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["frame", " face_id", " timestamp", " confidence", " success"]
    assert header[5:] == [" AU01_c", " AU02_c", " AU04_c", " AU12_c"]  # OpenFace's order, presence block only
    table = read_table(predicted / "a.csv")
    labels = read_openface([out / "a.csv"]).recordings[0]
    assert labels.frames.tolist() == table["frame"].tolist() == list(range(6))
    face = table["face_id"] >= 0
    for j, au in enumerate(TINY_AUS):
        expected = np.where(face, table[openface_column(au, "c")], -1)
        assert labels.occurrence[:, j].tolist() == expected.tolist(), au  # no face: success 0, read as uncoded
    assert labels.occurrence[face, 0].tolist() == [1] * int(face.sum())  # AU1's threshold is 0

    again = CliRunner().invoke(cli, ["predict", "export", str(predicted), "--out", str(out)])
    assert again.exit_code == 2 and again.output.startswith("Error: ") and "add --overwrite" in again.output
    assert CliRunner().invoke(cli, ["predict", "export", str(predicted), "--out", str(out), "--overwrite"]).exit_code == 0
