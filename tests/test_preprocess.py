"""``aucli preprocess`` end to end: real videos, frame folders and photos, the real CenterFace
detector, real HDF5 stores; resumable and idempotent runs, interrupted runs (SIGINT, SIGKILL),
bad inputs as warnings, fatal problems as one line and a non-zero exit."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import (
    astronaut,
    background,
    write_corrupt_video,
    write_face_video,
    write_frame_folder,
    write_not_media,
    write_truncated_video,
    write_zero_byte,
)

from aucli.cli.main import cli
from aucli.store import open_store


@pytest.fixture
def runner() -> CliRunner:
    """Wide output, so that rich does not wrap the messages the tests look for."""
    return CliRunner(env={"COLUMNS": "400"})


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_json(runner, args):
    result = runner.invoke(cli, ["preprocess", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), flat(result.stderr)


def test_real_media_with_centerface_then_a_second_run_adds_nothing(runner, tmp_path) -> None:
    data = tmp_path / "data"
    plan = write_face_video(data / "clips" / "a.mp4", n_frames=12, no_face=(4, 5))
    write_frame_folder(data / "F001" / "T1", (2440, 2441, 2442), no_face=(2441,))
    (data / "photos").mkdir()
    cv2.imwrite(str(data / "photos" / "astronaut.png"), astronaut()[..., ::-1])
    cv2.imwrite(str(data / "photos" / "wall.png"), background(200, 160)[..., ::-1])
    out = tmp_path / "corpus.h5"
    # a folder of images is one frame sequence: single photos are named one by one
    inputs = [data / "clips", data / "F001", data / "photos" / "astronaut.png", data / "photos" / "wall.png"]
    args = [*inputs, "--out", out, "--detector", "centerface", "--crop-size", "64"]

    summary, log = run_json(runner, args)
    assert summary["sources"] == {"done": 4, "skipped": 0, "changed": 0, "failed": 0}
    assert summary["frames"] == 12 + 3 + 2 and summary["faces"] == 10 + 2 + 1
    assert "Warning: photos/wall.png: no face found in the image" in log
    with open_store(out) as store:
        records = {s.key: s for s in store.sources()}
        assert sorted(records) == ["F001/T1", "clips/a.mp4", "photos/astronaut.png", "photos/wall.png"]
        assert records["F001/T1"].subject == "F001" and records["F001/T1"].recording == "T1"
        faces = store.face_table()
        video = records["clips/a.mp4"]
        frames = faces["frame"][video.rows].tolist()
        assert frames == [f for f in range(12) if plan.has_face[f]]
        assert np.allclose(faces["timestamp"][video.rows], [plan.timestamps[f] for f in frames])
        assert store.noface_frames(video).tolist() == [4, 5]
        for row, frame in zip(video.rows, frames):  # the stored box is the face the video shows
            centre = (faces["box"][row][:2] + faces["box"][row][2:]) / 2
            assert np.hypot(*(centre - plan.centres[frame])) < 20
        folder = records["F001/T1"]
        assert faces["frame"][folder.rows].tolist() == [2440, 2442] and store.noface_frames(folder).tolist() == [2441]
        assert records["photos/wall.png"].n_faces == 0 and records["photos/wall.png"].status == "done"
        assert store.images(list(video.rows)).std() > 20  # real face crops, not blank ones
        n_rows, n_faces = len(store.sources(latest=False)), store.n_faces

    again, _ = run_json(runner, args)
    assert again["sources"] == {"done": 0, "skipped": 4, "changed": 0, "failed": 0}
    assert again["frames"] == 0 and again["faces"] == 0 and again["store_faces"] == n_faces
    with open_store(out) as store:
        assert len(store.sources(latest=False)) == n_rows and store.n_faces == n_faces

    result = runner.invoke(cli, ["preprocess", *map(str, args)])  # the rich summary
    assert result.exit_code == 0
    assert "Store: 4 source(s), 13 face(s)." in result.stdout


def test_bad_inputs_are_warnings_and_the_batch_goes_on(runner, tmp_path) -> None:
    data = tmp_path / "in"
    write_face_video(data / "good.mp4", n_frames=8, size=(96, 64))
    write_corrupt_video(data / "corrupt.mp4")
    write_truncated_video(data / "truncated.mp4", n_frames=20)
    write_not_media(data / "notes.mp4")
    write_not_media(data / "notes.csv")
    write_zero_byte(data / "empty.mp4")
    (data / "no_frames").mkdir()
    names = ["good.mp4", "corrupt.mp4", "truncated.mp4", "notes.mp4", "notes.csv", "empty.mp4", "no_frames"]
    out = tmp_path / "s.h5"
    args = [*[data / n for n in names], "--out", out, "--detector", "none", "--crop-size", "32"]

    summary, log = run_json(runner, args)
    assert summary["sources"] == {"done": 2, "skipped": 0, "changed": 0, "failed": 2}
    expected = [
        f"{data}/notes.csv: not a video or image (extension '.csv'; expected one of .avi, .bmp,",
        f"{data}/empty.mp4: empty file (0 bytes), skipped",
        f"{data}/no_frames: folder holds no frame images or videos",
        f"{data}/corrupt.mp4: not a readable video (Invalid data found when processing input); "
        "the file is corrupt, truncated or not a video.",
        f"{data}/notes.mp4: not a readable video (Invalid data found when processing input);",
        f"{data}/truncated.mp4: decoded 2 frames but the file declares 20; the file is truncated or damaged. "
        "Kept the 2 frame(s) decoded before the damage.",
    ]
    for message in expected:
        assert f"Warning: {message}" in log, message
        assert any(message in p for p in summary["problems"]), message
    with open_store(out) as store:
        records = {s.key: s for s in store.sources()}
        assert records["good.mp4"].n_faces == 8 and records["truncated.mp4"].n_faces == 2
        assert records["corrupt.mp4"].status == "failed" and records["corrupt.mp4"].n_faces == 0
        assert store.n_faces == 10
        n_rows = len(store.sources(latest=False))

    again, log = run_json(runner, args)  # failed sources are not retried while unchanged
    assert again["sources"] == {"done": 0, "skipped": 2, "changed": 0, "failed": 2}
    assert "(failed before, unchanged since: not retried)" in log
    with open_store(out) as store:
        assert len(store.sources(latest=False)) == n_rows and store.n_faces == 10
    retried, _ = run_json(runner, [*args, "--retry-failed"])
    assert retried["sources"]["failed"] == 2


def test_a_changed_source_is_reported_and_its_stored_faces_kept(runner, tmp_path) -> None:
    video = tmp_path / "v" / "clip.mp4"
    write_face_video(video, n_frames=6, size=(96, 64))
    out = tmp_path / "s.h5"
    run_json(runner, [video, "--out", out, "--detector", "none", "--crop-size", "32"])
    os.utime(video, ns=(1, 1))  # touched, not changed: compared by content, skipped
    summary, _ = run_json(runner, [video, "--out", out, "--detector", "none", "--crop-size", "32"])
    assert summary["sources"]["skipped"] == 1
    write_face_video(video, n_frames=9, size=(96, 64))
    summary, log = run_json(runner, [video, "--out", out, "--detector", "none", "--crop-size", "32"])
    assert summary["sources"]["changed"] == 1
    assert "Warning: clip.mp4: changed since it was stored" in log and "the stored faces are kept" in log
    with open_store(out) as store:
        assert store.n_faces == 6


def test_fatal_problems_are_one_line_and_leave_the_store_as_it_was(runner, tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    write_face_video(video, n_frames=4, size=(96, 64))
    fast = ["--detector", "none", "--crop-size", "32"]

    def fails(args, code, message):
        result = runner.invoke(cli, ["preprocess", *map(str, args)])
        assert result.exit_code == code, result.output
        assert message in flat(result.output), result.output
        assert "Traceback" not in result.output
        return result

    missing = tmp_path / "missing.mp4"
    fails(
        [missing, "--out", tmp_path / "new.h5", *fast],
        1,
        f"Error: no usable input: the inputs name no video, image or frame folder: {missing}: no such file or folder",
    )
    assert not (tmp_path / "new.h5").exists()
    fails([video, "--out", tmp_path, *fast], 2, f"Error: Invalid value for '--out' / '-o': File '{tmp_path}' is a directory.")
    fails(
        [video, "--out", tmp_path / "nowhere" / "s.h5", *fast],
        1,
        f"folder {tmp_path / 'nowhere'} does not exist; create it first",
    )
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    fails([video, "--out", blocker / "s.h5", *fast], 1, f"Error: cannot write {blocker / 's.h5'}: {blocker} is not a folder")

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["aucli_store"] = "corpus"
        f.attrs["schema_version"] = 7
    before = digest(other)
    fails(
        [video, "--out", other, *fast],
        1,
        f"Error: {other}: store schema version 7, but this aucli reads version 1; upgrade aucli to read it",
    )
    assert digest(other) == before
    notes = tmp_path / "notes.h5"
    notes.write_text("not a store")
    fails([video, "--out", notes, *fast], 1, f"Error: {notes}: not an aucli store (not an HDF5 file)")
    assert notes.read_text() == "not a store"

    good = tmp_path / "good.h5"
    run_json(runner, [video, "--out", good, *fast])
    before = digest(good)
    fails(
        [video, "--out", good, "--detector", "none", "--crop-size", "48"],
        1,
        f"Error: {good}: holds 32x32 crops, but --crop-size is 48; use --crop-size 32 or another --out",
    )
    bad_labels = tmp_path / "F001_T1.csv"
    bad_labels.write_text("0,1,smile\n1,1,0\n")
    fails(
        [video, "--out", good, *fast, "--labels", bad_labels, "--label-format", "bp4d"],
        1,
        f"Error: {bad_labels}, line 1: unknown AU name 'smile' in the header",
    )
    assert digest(good) == before
    fails([video, "--out", good, *fast, "--every", "2", "--fps", "5"], 2, "Error: Use either every or fps, not both.")
    fails([video, "--out", good, *fast, "--labels", bad_labels], 2, "Error: --labels needs --label-format")
    assert digest(good) == before


def test_labels_imported_with_the_faces(runner, tmp_path) -> None:
    write_frame_folder(tmp_path / "BP4D" / "F001" / "T1", (10, 11, 12), size=(96, 72))
    write_frame_folder(tmp_path / "BP4D" / "F002" / "T1", (10, 11), size=(96, 72))
    occ = tmp_path / "AU_OCC"
    occ.mkdir()
    (occ / "F001_T1.csv").write_text("0,1,2,4\n10,1,0,9\n11,0,1,0\n12,1,1,1\n13,1,1,1\n")
    (occ / "F002_T1.csv").write_text("0,1,2,4\n10,0,0,0\n11,0,0,1\n")
    out = tmp_path / "bp4d.h5"
    args = [
        tmp_path / "BP4D",
        "--out",
        out,
        "--detector",
        "none",
        "--crop-size",
        "32",
        "--labels",
        occ,
        "--label-format",
        "bp4d",
        "--label-aus",
        "1,2,4",
        "--as",
        "human",
    ]
    summary, log = run_json(runner, args)
    assert summary["labels"]["matched_faces"] == 5 and summary["labels"]["au_names"] == ["AU1", "AU2", "AU4"]
    assert "F001_T1.csv: 1 labelled frame(s) not in the store (frames 13" in log
    with open_store(out) as store:
        labels = store.read_labels("human")
        rows = store.frame_rows(store.find_source("F001/T1"))
        assert labels.occurrence[rows[10]].tolist() == [1, 0, -1] and labels.occurrence[rows[12]].tolist() == [1, 1, 1]
    again, _ = run_json(runner, args)  # the same command again: nothing added, the set kept
    assert again["sources"]["skipped"] == 2 and "already in the store (same files); kept" in again["label_note"]
    (occ / "F003_T1.csv").write_text("0,1,2,4\n10,0,0,0\n")
    result = runner.invoke(cli, ["preprocess", *map(str, args)])
    assert result.exit_code == 1 and "Error: label set 'human' already exists" in flat(result.output)

    # labels that match no stored face: the faces stay, the run fails with what to do next
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "F009_T1.csv").write_text("0,1\n10,1\n")
    other = tmp_path / "other.h5"
    result = runner.invoke(
        cli,
        [
            "preprocess",
            str(tmp_path / "BP4D"),
            "--out",
            str(other),
            "--detector",
            "none",
            "--crop-size",
            "32",
            "--labels",
            str(tmp_path / "elsewhere"),
            "--label-format",
            "bp4d",
        ],
    )
    assert result.exit_code == 1
    assert "none of the 1 labelled frames in 1 file(s) matches a stored face" in flat(result.output)
    assert f"The faces are stored; fix the labels and run `aucli labels import {other} FILES --format bp4d --as bp4d`" in flat(
        result.output
    )
    with open_store(other) as store:
        assert store.n_faces == 5 and store.label_sets() == []


def test_compression_is_chosen_when_the_store_is_created(runner, tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    write_face_video(video, n_frames=4, size=(96, 64))
    out = tmp_path / "s.h5"
    run_json(runner, [video, "--out", out, "--detector", "none", "--crop-size", "32", "--compression", "lzf"])
    with h5py.File(out, "r") as f:
        assert f["frames/image"].compression == "lzf" and f["frames/image"].chunks == (1, 32, 32, 3)


# A preprocess run in a subprocess, slowed down (as if detection took 12 ms a frame) and announcing
# each commit on stdout, so a test can interrupt it in the middle of a source. After its first commit
# the run slows to 100 ms a frame: the next source then takes 8 s, so a signal sent 0.5 s after the
# announcement lands inside it even when a loaded machine makes the test late to read it.
# A shell without job control starts background jobs with SIGINT ignored and Python then keeps it
# ignored, so the child puts back Python's own Ctrl-C handler: the test stands for a terminal user.
_SLOW_RUN = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from aucli.store import writer
add_frame, commit = writer.SourceWriter.add_frame, writer.Appender.commit
committed = []
def slow(self, *args, **kwargs):
    time.sleep(0.1 if committed else 0.012)
    return add_frame(self, *args, **kwargs)
def announce(self):
    keys = [row["key"] for row in self.pending]
    commit(self)
    committed.extend(keys)
    for key in keys:
        print("committed", key, flush=True)
writer.SourceWriter.add_frame, writer.Appender.commit = slow, announce
from aucli.cli.main import cli
cli(sys.argv[1:])
"""


def interrupt_after_one_commit(args, sig) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUN, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    line = process.stdout.readline()
    assert line.startswith("committed"), (line, process.stderr.read())
    time.sleep(0.5)  # well inside the next source (80 frames x 100 ms)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def test_interrupted_runs_resume_without_duplicate_or_missing_frames(runner, tmp_path) -> None:
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_face_video(tmp_path / "data" / name, n_frames=80, size=(96, 64))
    out = tmp_path / "s.h5"
    args = ["preprocess", tmp_path / "data", "--out", out, "--detector", "none", "--crop-size", "32"]

    code, err = interrupt_after_one_commit(args, signal.SIGINT)  # Ctrl-C
    assert code == 130 and "Interrupted. Stored data is consistent; rerun the same command to resume." in err
    with open_store(out) as store:
        assert [s.key for s in store.sources()] == ["a.mp4"] and store.n_faces == 80
        assert store.h5["frames/image"].shape[0] == 80  # the writer dropped the partial source itself

    code, _ = interrupt_after_one_commit(args, signal.SIGKILL)  # kill -9
    assert code == -signal.SIGKILL
    with open_store(out) as store:  # readable; the half-written source is invisible
        assert [s.key for s in store.sources()] == ["a.mp4", "b.mp4"] and store.n_faces == 2 * 80
        assert store.face_table(["frame"])["frame"].shape == (160,)

    summary, _ = run_json(runner, args[1:])
    assert summary["sources"] == {"done": 1, "skipped": 2, "changed": 0, "failed": 0}
    with open_store(out) as store:
        assert store.h5["frames/image"].shape[0] == store.n_faces == 3 * 80
        faces = store.face_table(["source", "frame"])
        for record in store.sources():
            frames = faces["frame"][record.rows].tolist()
            assert frames == list(range(80)), record.key  # --detector none: every frame is a face
            assert (faces["source"][record.rows] == record.index).all()
        assert len(store.sources(latest=False)) == 3


def test_worker_processes_give_the_same_store(runner, tmp_path) -> None:
    data = tmp_path / "data"
    for i in range(3):
        write_face_video(data / f"v{i}.mp4", n_frames=12, size=(96, 64))
    write_truncated_video(data / "truncated.mp4", n_frames=20)
    write_corrupt_video(data / "corrupt.mp4")
    common = [data, "--detector", "none", "--crop-size", "32"]
    one, _ = run_json(runner, [*common, "--out", tmp_path / "one.h5"])
    two, log = run_json(runner, [*common, "--out", tmp_path / "two.h5", "--workers", "2"])
    assert one["sources"] == two["sources"] == {"done": 4, "skipped": 0, "changed": 0, "failed": 1}
    assert "truncated.mp4: decoded 2 frames but the file declares 20" in log
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "two.h5", "r") as b:
        for name in ("image", "source", "frame", "timestamp", "track", "box", "landmarks", "score"):
            assert np.array_equal(a["frames"][name][()], b["frames"][name][()]), name
        assert list(a["sources/key"].asstr()[()]) == list(b["sources/key"].asstr()[()])
    assert not list(tmp_path.glob(".two.h5.parts"))  # the workers' parts are gone
