"""``aucli labels list|import|export|rename|delete`` on a real store."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_frame_folder
from store_fixtures import build_store

from aucli.cli.main import cli
from aucli.store import open_store


@pytest.fixture
def runner() -> CliRunner:
    """Wide output, so that rich does not wrap the messages the tests look for."""
    return CliRunner(env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def store(tmp_path):
    write_frame_folder(tmp_path / "data" / "F001" / "T1", (1, 2, 3), size=(96, 72))
    write_frame_folder(tmp_path / "data" / "F002" / "T1", (1, 2), size=(96, 72))
    path = build_store(tmp_path / "s.h5", [tmp_path / "data"])
    (tmp_path / "F001_T1.csv").write_text("0,1,2,4\n1,1,0,0\n2,1,1,9\n3,0,0,9\n")
    return path


def test_import_list_export_and_reimport(runner, store, tmp_path) -> None:
    result = runner.invoke(
        cli,
        ["labels", "import", str(store), str(tmp_path / "F001_T1.csv"), "--format", "bp4d", "--as", "human", "--aus", "1,2,4"],
    )
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert (
        "Label set human (bp4d): 3 face(s) labelled from 3 labelled frame(s) in 1 file(s); 0 without a face, 0 not in the store."
        in output
    )
    assert "Warning: 1 stored source(s) have no labels: F002/T1" in output

    listed = runner.invoke(cli, ["labels", "list", str(store)])
    assert listed.exit_code == 0
    assert "human" in listed.stdout and "0.667 (2/3)" in listed.stdout and "0.000 (0/1)" in listed.stdout
    stats = json.loads(runner.invoke(cli, ["labels", "list", str(store), "--json"]).stdout)
    assert stats[0]["name"] == "human" and stats[0]["rates"] == {"AU1": 0.6667, "AU2": 0.3333, "AU4": 0.0}
    assert stats[0]["labelled_faces"] == 3 and stats[0]["known"]["AU4"] == 1

    csv_path = tmp_path / "human.csv"
    result = runner.invoke(cli, ["labels", "export", str(store), "human", "--out", str(csv_path)])
    assert result.exit_code == 0 and "Wrote 3 row(s) of label set 'human'" in flat(result.output)
    assert csv_path.read_text().splitlines() == [
        "source,subject,frame,timestamp,track,AU1,AU2,AU4",
        "F001/T1,F001,1,,0,1,0,0",
        "F001/T1,F001,2,,0,1,1,-1",
        "F001/T1,F001,3,,0,0,0,-1",
    ]
    result = runner.invoke(cli, ["labels", "import", str(store), str(csv_path), "--format", "csv", "--as", "copy"])
    assert result.exit_code == 0, result.output
    with open_store(store) as opened:
        assert np.array_equal(opened.read_labels("human").occurrence, opened.read_labels("copy").occurrence)
        assert opened.label_sets() == ["copy", "human"]


def test_rename_and_delete(runner, store, tmp_path) -> None:
    runner.invoke(cli, ["labels", "import", str(store), str(tmp_path / "F001_T1.csv"), "--format", "bp4d", "--as", "draft"])
    runner.invoke(cli, ["labels", "import", str(store), str(tmp_path / "F001_T1.csv"), "--format", "bp4d", "--as", "other"])
    result = runner.invoke(cli, ["labels", "rename", str(store), "draft", "other"])
    assert result.exit_code == 1 and "Error: label set 'other' already exists" in flat(result.output)
    result = runner.invoke(cli, ["labels", "rename", str(store), "draft", "coder1"])
    assert result.exit_code == 0 and "Renamed label set 'draft' to 'coder1'." in result.output

    result = runner.invoke(cli, ["labels", "delete", str(store), "coder1"], input="n\n")
    assert result.exit_code == 1 and "Delete label set 'coder1' (bp4d, 12 AUs)" in result.output and "Aborted!" in result.output
    result = runner.invoke(cli, ["labels", "delete", str(store), "coder1"], input="y\n")
    assert result.exit_code == 0 and "Deleted label set 'coder1'." in result.output
    result = runner.invoke(cli, ["labels", "delete", str(store), "other", "--yes"])
    assert result.exit_code == 0
    with open_store(store) as opened:
        assert opened.label_sets() == []
    result = runner.invoke(cli, ["labels", "delete", str(store), "other", "--yes"])
    assert result.exit_code == 1 and f"Error: no label set 'other' in {store}; the store has none" in flat(result.output)


def test_import_errors(runner, store, tmp_path) -> None:
    bad = tmp_path / "F001_T1.csv"
    bad.write_text("0,1\n1,5\n")
    result = runner.invoke(cli, ["labels", "import", str(store), str(bad), "--format", "bp4d", "--as", "x", "--aus", "1"])
    assert result.exit_code == 1 and f"Error: {bad}, line 2: value '5' for AU1; BP4D codes 0, 1 or 9 (not coded)" in flat(
        result.output
    )
    result = runner.invoke(cli, ["labels", "import", str(store), str(bad), "--format", "excel", "--as", "x"])
    assert result.exit_code == 2 and "Invalid value for '--format'" in result.output
    result = runner.invoke(cli, ["labels", "import", str(tmp_path / "none.h5"), str(bad), "--format", "bp4d", "--as", "x"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(cli, ["labels", "import", str(store), str(tmp_path / "missing.csv"), "--format", "csv", "--as", "x"])
    assert result.exit_code == 1 and "missing.csv: no such label file or folder" in flat(result.output)
    result = runner.invoke(cli, ["labels", "import", str(store), str(bad), "--format", "bp4d", "--as", "bad name"])
    assert result.exit_code == 2 and "invalid label set name 'bad name'" in flat(result.output)
    with open_store(store) as opened:
        assert opened.label_sets() == []


def test_label_set_events(runner, store, tmp_path) -> None:
    runner.invoke(cli, ["labels", "import", str(store), str(tmp_path / "F001_T1.csv"), "--format", "bp4d", "--as", "human",
                        "--aus", "1,2,4"])
    # F001/T1 frames 1, 2, 3: AU1 coded 1, 1, 0 -> one event [1, 2]; AU2 0, 1, 0 -> [2, 2]; AU4 never present
    result = runner.invoke(cli, ["labels", "events", str(store), "human"])
    assert result.exit_code == 2 and "source 'F001/T1' has no clock (a frame folder); give --fps" in flat(result.output)
    out = tmp_path / "events.csv"
    result = runner.invoke(cli, ["labels", "events", str(store), "human", "--fps", "25", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [(t["source"], t["track"], t["fps"]) for t in payload] == [("F001/T1", 0, 25.0)]
    events = payload[0]["events"]
    assert [(e["au"], e["onset_frame"], e["apex_frame"], e["offset_frame"]) for e in events] == [("AU1", 1, 1, 2), ("AU2", 2, 2, 2)]
    assert events[0]["onset_s"] == pytest.approx(1 / 25) and events[0]["duration_s"] == pytest.approx(2 / 25)
    assert events[0]["peak_intensity"] is None  # BP4D occurrence codes carry no intensity
    lines = out.read_text().splitlines()
    assert lines[0].startswith("source,track,au,onset_frame,apex_frame,offset_frame,onset_s")
    assert lines[1].startswith("F001/T1,0,AU1,1,1,2,0.040000,") and len(lines) == 3
    table = runner.invoke(cli, ["labels", "events", str(store), "human", "--fps", "25", "--source", "F001/T1"])
    assert table.exit_code == 0 and "2 event(s) of label set 'human' in 1 track(s)." in flat(table.output)
    missing = runner.invoke(cli, ["labels", "events", str(store), "human", "--fps", "25", "--source", "F009/T1"])
    assert missing.exit_code == 1 and "the store has no source 'F009/T1'" in flat(missing.output)
