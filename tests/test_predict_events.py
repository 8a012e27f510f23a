"""``aucli predict events``: the events tables of a predictions folder, checked against its own tables."""

from __future__ import annotations

import csv
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

FAST = ["--detector", "centerface", "--crop-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("events")
    write_face_video(folder / "clips" / "a.mp4", n_frames=8, no_face=(2,))
    write_face_video(folder / "clips" / "b.mp4", n_frames=4, no_face=(0, 1, 2, 3))
    checkpoint = tiny_checkpoint(folder / "tiny")
    out = folder / "preds"
    result = CliRunner().invoke(cli, ["predict", str(folder / "clips"), "-c", str(checkpoint), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_raw_events_are_the_runs_of_the_tables_decisions(predicted: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", "events", str(predicted), "--no-smooth", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["files"] == ["events/a.csv", "events/b.csv"] and summary["skipped"] == [] and not summary["smoothed"]
    table = read_table(predicted / "a.csv")
    faces = table["face_id"] == 0
    face_frames = set(table["frame"][faces].tolist())
    assert face_frames == {0, 1, 3, 4, 5, 6, 7}
    events = _rows(predicted / "events" / "a.csv")
    assert all(row["face_id"] == "0" for row in events)
    for au in TINY_AUS:
        decided = set(table["frame"][faces & (table[openface_column(au, "c")] == 1)].tolist())
        covered = set()
        for row in (r for r in events if r["au"] == au):
            onset, apex, offset = int(row["onset_frame"]), int(row["apex_frame"]), int(row["offset_frame"])
            assert onset <= apex <= offset and apex in face_frames
            covered |= set(range(onset, offset + 1)) & face_frames
        assert covered == decided, au  # threshold 0: every face frame; threshold 1: none
    au1 = [r for r in events if r["au"] == "AU1"]
    assert len(au1) == 1 and (au1[0]["onset_frame"], au1[0]["offset_frame"]) == ("0", "7")  # one missed frame bridged
    assert float(au1[0]["duration_s"]) == pytest.approx(8 / 25.0, abs=1e-5)  # write_face_video's 25 fps, from the clock
    assert sum(summary["events"].values()) == len(events)
    assert _rows(predicted / "events" / "b.csv") == []  # no face: a header and no event


def test_smoothing_only_merges_or_drops_short_runs_and_reruns_give_the_same_files(predicted: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", "events", str(predicted)])
    assert result.exit_code == 0, result.output
    first = (predicted / "events" / "a.csv").read_bytes()
    assert CliRunner().invoke(cli, ["predict", "events", str(predicted)]).exit_code == 0
    assert (predicted / "events" / "a.csv").read_bytes() == first
    events = _rows(predicted / "events" / "a.csv")
    assert {r["au"] for r in events} <= {"AU1", "AU4", "AU12"}  # AU2's threshold is 1: never
    assert len([r for r in events if r["au"] == "AU1"]) == 1


def test_a_folder_without_a_manifest_and_tables_without_a_clock_get_one_error_line(predicted: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["predict", "events", str(predicted), "--no-smooth"]).exit_code == 0
    expected = (predicted / "events" / "a.csv").read_text()
    result = CliRunner().invoke(cli, ["predict", "events", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("Error: ") and "holds no predictions.json" in result.output
    assert len(result.output.strip().splitlines()) == 1

    manifest = json.loads((predicted / "predictions.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in manifest["inputs"]:
        table = read_table(predicted / entry["table"])
        lines = (predicted / entry["table"]).read_text().splitlines()
        header = lines[0].split(",")
        stamp = header.index("timestamp")
        body = [",".join("" if j == stamp else cell for j, cell in enumerate(line.split(","))) for line in lines[1:]]
        (copy / entry["table"]).write_text("\n".join([lines[0], *body]) + "\n")
        assert len(body) == table["frame"].size
    (copy / "predictions.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["predict", "events", str(copy), "--no-smooth", "--json"])
    assert result.exit_code == 0, result.output  # a bad item of a batch: a warning, the others written
    summary = json.loads(result.output)
    assert summary["files"] == ["events/b.csv"] and len(summary["skipped"]) == 1
    assert summary["skipped"][0].startswith("a.mp4: no timestamps") and "give --fps" in summary["skipped"][0]
    (copy / "b.csv").unlink()
    result = CliRunner().invoke(cli, ["predict", "events", str(copy), "--no-smooth"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: no events table written: a.mp4: no timestamps to give its frame rate (frame folder or image): give --fps"]
    result = CliRunner().invoke(cli, ["predict", "events", str(copy), "--no-smooth", "--fps", "25", "--json"])
    assert result.exit_code == 0, result.output
    assert (copy / "events" / "a.csv").read_text() == expected  # --fps 25 stands in for the clock
