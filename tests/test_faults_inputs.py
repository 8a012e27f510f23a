"""Hostile inputs: file names that are not UTF-8, a batch where nothing succeeds, review queues
and label files saved by Excel (cp1252, UTF-8 with BOM, UTF-16, ``;`` delimiters), empty queues."""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_corrupt_video, write_face_video, write_frame_folder
from store_fixtures import add_source

from aucli.cli.main import cli
from aucli.store import CorpusStore, open_store


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "400"})


def args(inputs, out: Path) -> list[str]:
    return ["preprocess", *map(str, inputs), "--out", str(out), "--detector", "none", "--crop-size", "32", "--json"]


# -- file names that are not UTF-8 ------------------------------------------------------------------


def rename_to_bytes(path: Path, name: bytes) -> bytes:
    target = os.path.join(os.fsencode(path.parent), name)
    os.rename(os.fsencode(path), target)
    return target


def test_a_name_that_is_not_utf8_is_a_warning_and_the_rest_goes_in(runner, tmp_path) -> None:
    data = tmp_path / "data"
    write_face_video(data / "good.mp4", n_frames=6, size=(96, 64))
    write_face_video(data / "bad.mp4", n_frames=30, size=(96, 64))
    rename_to_bytes(data / "bad.mp4", b"caf\xe9.mp4")  # Latin-1, as an old camera or zip tool writes it
    write_frame_folder(data / "F001" / "T1", (1, 2, 3), size=(96, 64))
    folder = write_frame_folder(data / "F002" / "T1", (1, 2), size=(96, 64))[0].parent
    rename_to_bytes(folder, b"T\xff1")
    frames = write_frame_folder(data / "F003" / "T1", (1, 2), size=(96, 64))
    rename_to_bytes(frames[1], b"2\xe9.jpg")  # a bad frame file inside a good folder: read by its bytes
    out = tmp_path / "s.h5"

    result = runner.invoke(cli, args([data], out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sources"] == {"done": 3, "skipped": 0, "changed": 0, "failed": 0}
    bad = [p for p in summary["problems"] if "not valid UTF-8" in p]
    assert sorted(p.split(":")[0] for p in bad) == sorted([f"{data}/caf\\xe9.mp4", f"{data}/F002/T\\xff1"])
    assert all("rename it (e.g. `convmv -f latin1 -t utf-8 --notest PATH`), skipped" in p for p in bad)
    assert f"Warning: {data}/caf\\xe9.mp4: the path is not valid UTF-8 text" in result.stderr
    with open_store(out) as store:
        assert sorted(s.key for s in store.sources()) == ["F001/T1", "F003/T1", "good.mp4"]
        assert store.n_faces == 6 + 3 + 2
    with h5py.File(out, "r") as f:  # no orphan crops of the skipped video
        assert f["frames/image"].shape[0] == 11
    size = out.stat().st_size

    again = runner.invoke(cli, args([data], out))
    assert again.exit_code == 0 and json.loads(again.stdout)["sources"]["skipped"] == 3
    assert out.stat().st_size == size


def test_only_bad_names_is_no_usable_input(tmp_path) -> None:
    video = tmp_path / "v.mp4"
    write_face_video(video, n_frames=3, size=(96, 64))
    named = rename_to_bytes(video, b"\xe9t\xe9.mp4")
    out = tmp_path / "s.h5"
    done = subprocess.run(
        [sys.executable, "-m", "aucli", "preprocess", named, "--out", str(out), "--detector", "none"],
        capture_output=True, timeout=120,
    )
    stderr = done.stderr.decode("utf-8")
    assert done.returncode == 1 and "Traceback" not in stderr
    assert stderr.strip().endswith("\\xe9t\\xe9.mp4: the path is not valid UTF-8 text, which the store needs for its names; "
                                   "rename it (e.g. `convmv -f latin1 -t utf-8 --notest PATH`), skipped")
    assert not out.exists()


# -- a batch where nothing succeeds -------------------------------------------------------------------


def test_preprocess_exits_1_when_no_input_was_stored(runner, tmp_path) -> None:
    bad = write_corrupt_video(tmp_path / "bad.mp4")
    out = tmp_path / "s.h5"
    for extra in ([], ["--json"]):
        result = runner.invoke(cli, [a for a in args([bad], out) if a != "--json"] + extra)
        assert result.exit_code == 1, result.output
        assert result.stderr.rstrip().splitlines()[-1] == "Error: no input was stored (1 failed); see the problems above"
        assert "Store:" in result.stdout or json.loads(result.stdout)["sources"]["failed"] == 1
    good = tmp_path / "good.mp4"
    write_face_video(good, n_frames=3, size=(96, 64))
    mixed = runner.invoke(cli, args([bad, good], out))
    assert mixed.exit_code == 0 and json.loads(mixed.stdout)["sources"]["done"] == 1
    assert runner.invoke(cli, args([bad, good], out)).exit_code == 0  # good.mp4 is in the store: skipped


# -- review queues and label files as spreadsheets save them ------------------------------------------


@pytest.fixture
def labelled(tmp_path) -> Path:
    """A store with two sources (one name with an accent) and a label set ``human``."""
    path = tmp_path / "s.h5"
    with CorpusStore.create(path, crop_size=16) as store:
        add_source(store, "vidéo.mp4", range(4), subject="F001", recording="T1")
        add_source(store, "clip.mp4", range(3), subject="F002", recording="T1")
        store.write_labels("human", ["AU1", "AU12"], np.zeros((7, 2), np.int8))
    return path


QUEUE = [
    ["source", "frame_start", "frame_stop", "au", "corrected", "label_set"],
    ["vidéo.mp4", "1", "2", "AU12", "1", "human"],
    ["clip.mp4", "0", "0", "AU1", "1", "human"],
    ["clip.mp4", "2", "2", "AU1", "", "human"],
]


def save(path: Path, rows, encoding: str, delimiter: str = ",", bom: bytes = b"") -> Path:
    text = "\r\n".join(delimiter.join(row) for row in rows) + "\r\n"
    path.write_bytes(bom + text.encode(encoding))
    return path


@pytest.mark.parametrize(
    "encoding, delimiter, bom",
    [("cp1252", ";", b""), ("cp1252", ",", b""), ("utf-8", ",", codecs.BOM_UTF8), ("utf-16", "\t", b"")],
)
def test_audit_apply_reads_a_queue_excel_saved(runner, labelled, tmp_path, encoding, delimiter, bom) -> None:
    queue = save(tmp_path / "queue.csv", QUEUE, encoding, delimiter, bom)
    result = runner.invoke(cli, ["audit", "apply", str(queue), "--store", str(labelled), "--as", "reviewed", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["corrections"] == 2 and report["skipped"] == 1 and report["problems"] == []
    with open_store(labelled) as store:
        assert store.read_labels("reviewed").occurrence.tolist() == [[0, 0], [0, 1], [0, 1], [0, 0], [1, 0], [0, 0], [0, 0]]


def test_audit_apply_on_an_empty_queue_says_so(runner, labelled, tmp_path) -> None:
    def apply(path: Path):
        return runner.invoke(cli, ["audit", "apply", str(path), "--store", str(labelled), "--as", "x"])

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = apply(empty)
    assert result.exit_code == 1 and result.output == f"Error: {empty}: the queue is empty (an empty file)\n"
    header = save(tmp_path / "header.csv", QUEUE[:1], "cp1252", bom=b"")
    result = apply(header)
    assert result.exit_code == 1 and result.output == f"Error: {header}: the queue is empty: it has no rows; nothing to apply\n"
    unanswered = save(tmp_path / "unanswered.csv", [QUEUE[0], QUEUE[3]], "utf-8", bom=codecs.BOM_UTF8)
    result = apply(unanswered)
    assert result.exit_code == 1
    assert "the queue is empty: none of its 1 row(s) has a corrected value (1, 0 or -1); nothing to apply" in result.output
    json_queue = tmp_path / "tasks.json"
    json_queue.write_text("[]")
    assert "the queue is empty: it has no rows" in apply(json_queue).output
    with open_store(labelled) as store:
        assert store.label_sets() == ["human"]


def test_audit_apply_writes_nothing_when_no_correction_applies(runner, labelled, tmp_path) -> None:
    rows = [QUEUE[0], ["nowhere.mp4", "0", "1", "AU12", "1", "human"]]
    queue = save(tmp_path / "q.csv", rows, "utf-8")
    result = runner.invoke(cli, ["audit", "apply", str(queue), "--store", str(labelled), "--as", "x"])
    assert result.exit_code == 1
    assert "Warning: q.csv line 2: no source 'nowhere.mp4'" in result.output
    assert result.output.rstrip().endswith("Error: none of the 1 correction(s) in " + str(queue) + " could be applied "
                                           "(see the warnings above); label set 'x' was not written")
    with open_store(labelled) as store:
        assert store.label_sets() == ["human"]


@pytest.mark.parametrize("encoding, bom", [("cp1252", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16", b"")])
def test_label_files_excel_saved_import(runner, labelled, tmp_path, encoding, bom) -> None:
    plain = save(tmp_path / "plain.csv", [["source", "frame", "AU12", "AU12_r"], ["vidéo.mp4", "2", "1", "3"]], encoding, ";", bom)
    result = runner.invoke(cli, ["labels", "import", str(labelled), str(plain), "--format", "csv", "--as", "plain", "--json"])
    assert result.exit_code == 0, result.output
    bp4d = save(tmp_path / "F002_T1.csv", [["0", "1", "12"], ["0", "1", "0"], ["2", "9", "1"]], encoding, ",", bom)
    result = runner.invoke(cli, ["labels", "import", str(labelled), str(bp4d), "--format", "bp4d", "--aus", "1,12", "--as", "bp4d"])
    assert result.exit_code == 0, result.output
    with open_store(labelled) as store:
        plain_set = store.read_labels("plain")
        assert plain_set.occurrence[2].tolist() == [1] and plain_set.intensity[2].tolist() == [3.0]
        assert store.read_labels("bp4d").occurrence[4:].tolist() == [[1, 0], [-1, -1], [-1, 1]]


def test_a_binary_file_as_labels_is_one_error_line(runner, labelled, tmp_path) -> None:
    sheet = tmp_path / "labels.csv"
    sheet.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(200))  # an .xlsx renamed to .csv
    result = runner.invoke(cli, ["labels", "import", str(labelled), str(sheet), "--format", "csv", "--as", "x"])
    assert result.exit_code == 1
    assert result.output == f"Error: {sheet}: not a text file (it holds NUL bytes); save it as CSV\n"
