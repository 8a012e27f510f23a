"""Crafted files aucli reads back, and folders it did not write: nothing outside is touched.

A ``predictions.json`` (of ``aucli predict`` or a shard of ``aucli predict merge``) edited to name
a table by an absolute path, through ``..`` or through a symbolic link out of its folder; an
``--out`` folder holding label CSVs; a Label Studio folder whose image is a link elsewhere; a
review queue that names paths. Each time the command exits non-zero with one ``Error:`` line and
no traceback, and a victim file outside the folder keeps its bytes. Also: ``aucli predict`` exits 1
when no input was predicted, and a run killed with SIGKILL resumes to the tables of an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from media_fixtures import write_corrupt_video, write_face_video
from predict_fixtures import tiny_checkpoint

from aucli.cli.main import cli

FAST = ["--detector", "centerface", "--crop-size", "64", "--device", "cpu"]
VICTIM = b"a file outside every output folder\n"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media") / "clips"
    write_face_video(folder / "a.mp4", n_frames=3)
    write_face_video(folder / "b.mp4", n_frames=3)
    return folder


def predict(runner: CliRunner, inputs, checkpoint: Path, out: Path, *extra: str) -> Result:
    return runner.invoke(cli, ["predict", *map(str, inputs), "-c", str(checkpoint), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def predicted(media, checkpoint, tmp_path_factory) -> Path:
    """An uninterrupted ``aucli predict`` output: a.csv, b.csv, predictions.json."""
    out = tmp_path_factory.mktemp("predicted") / "preds"
    result = predict(CliRunner(), [media], checkpoint, out)
    assert result.exit_code == 0, result.output
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links as their target's name), to show that nothing changed."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def assert_refused(result: Result, *expected: str, code: int = 2) -> None:
    """Exit ``code``, exactly one ``Error:`` line holding ``expected``, and no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for text in expected:
        assert text in errors[0], errors[0]


def victim_file(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    return victim


def edit_manifest(folder: Path, key: str, **changes) -> None:
    manifest = json.loads((folder / "predictions.json").read_text())
    for entry in manifest["inputs"]:
        if entry["key"] == key:
            entry.update(changes)
    (folder / "predictions.json").write_text(json.dumps(manifest))


def crafted_name(kind: str, out: Path, victim: Path) -> str:
    """The table name a crafted manifest gives: ``..``, an absolute path, or a link in the folder."""
    if kind == "dotdot":
        return os.path.relpath(victim, out)
    if kind == "absolute":
        return str(victim)
    (out / "link.csv").symlink_to(victim)
    return "link.csv"


# -- predict: --overwrite and resuming read the old manifest --------------------------------------------


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "resume"])
def test_predict_refuses_a_manifest_naming_a_table_outside(runner, predicted, media, checkpoint, tmp_path, kind, overwrite):
    out = tmp_path / "preds"
    shutil.copytree(predicted, out)
    victim = victim_file(tmp_path)
    name = crafted_name(kind, out, victim)
    # --overwrite deletes an input's old table when its name changed; a resumed run counts a table
    # that the manifest lists as pending
    edit_manifest(out, "a.mp4", table=name, status="done" if overwrite else "pending")
    before = snapshot(out)
    result = predict(runner, [media], checkpoint, out, *(["--overwrite"] if overwrite else []))
    assert_refused(result, f"{out / 'predictions.json'} names {name!r}, which lies outside", "nothing was changed")
    assert victim.read_bytes() == VICTIM and snapshot(out) == before


def test_an_earlier_inputs_crafted_entry_is_refused_too(runner, predicted, media, checkpoint, tmp_path) -> None:
    """An entry for an input this run does not predict (kept from an earlier run) is checked as well."""
    out = tmp_path / "preds"
    shutil.copytree(predicted, out)
    victim = victim_file(tmp_path)
    manifest = json.loads((out / "predictions.json").read_text())
    manifest["inputs"].append(dict(manifest["inputs"][0], key="old.mp4", table=str(victim)))
    (out / "predictions.json").write_text(json.dumps(manifest))
    assert_refused(predict(runner, [media / "a.mp4"], checkpoint, out, "--overwrite"), "which lies outside")
    assert victim.read_bytes() == VICTIM


def test_a_manifest_with_fields_of_the_wrong_type_is_one_error(runner, predicted, media, checkpoint, tmp_path) -> None:
    out = tmp_path / "preds"
    shutil.copytree(predicted, out)
    edit_manifest(out, "a.mp4", frames="many")
    assert_refused(predict(runner, [media], checkpoint, out), "input 1 is not an entry aucli predict writes")
    manifest = json.loads((predicted / "predictions.json").read_text())
    (out / "predictions.json").write_text(json.dumps(dict(manifest, inputs={"a.mp4": "a.csv"})))
    assert_refused(predict(runner, [media], checkpoint, out), "'inputs' is a dict, not what aucli predict writes")
    del manifest["checkpoint"]
    (out / "predictions.json").write_text(json.dumps(manifest))
    assert_refused(merge(runner, [out], tmp_path / "merged"), "'checkpoint' is missing; it was edited")


# -- predict into a folder aucli did not write ------------------------------------------------------------


BP4D_LABELS = {"F001_T1.csv": b"0,1,2,4\n2440,0,1,9\n2441,1,1,0\n", "F001_T2.csv": b"0,1,2,4\n1,0,0,0\n"}


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_predict_into_a_folder_of_label_files_touches_nothing(runner, checkpoint, tmp_path, overwrite) -> None:
    video = write_face_video(tmp_path / "media" / "F001_T1.mp4", n_frames=3).path  # its table would be F001_T1.csv
    labels = tmp_path / "AU_OCC"
    labels.mkdir()
    for name, data in BP4D_LABELS.items():
        (labels / name).write_bytes(data)
    result = predict(runner, [video], checkpoint, labels, *(["--overwrite"] if overwrite else []))
    assert_refused(result, f"--out {labels} holds files aucli predict did not write (F001_T1.csv, F001_T2.csv)")
    assert "give a new or empty folder" in result.output
    assert snapshot(labels) == BP4D_LABELS


def test_a_file_at_a_tables_name_that_the_manifest_does_not_list_is_refused(runner, predicted, media, checkpoint, tmp_path):
    out = tmp_path / "preds"
    shutil.copytree(predicted, out)
    manifest = json.loads((out / "predictions.json").read_text())
    manifest["inputs"] = [e for e in manifest["inputs"] if e["key"] != "b.mp4"]
    (out / "predictions.json").write_text(json.dumps(manifest))
    (out / "b.csv").write_bytes(BP4D_LABELS["F001_T1.csv"])  # someone's file, where b.mp4's table goes
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        result = predict(runner, [media], checkpoint, out, *extra)
        assert_refused(result, f"{out / 'b.csv'} exists but {out / 'predictions.json'} does not list it")
        assert snapshot(out) == before
    # listed by the manifest but not a table any more: one error line, not a KeyError
    edit_manifest(out, "a.mp4", status="pending")
    (out / "a.csv").write_bytes(BP4D_LABELS["F001_T2.csv"])
    assert_refused(predict(runner, [media / "a.mp4"], checkpoint, out), f"{out / 'a.csv'} is not a prediction table aucli wrote")


def test_a_link_in_the_folder_that_leads_outside_is_never_written_through(runner, media, checkpoint, tmp_path) -> None:
    out = tmp_path / "preds"
    assert predict(runner, [media / "a.mp4"], checkpoint, out).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_face_video(tmp_path / "media" / "clips" / "c.mp4", n_frames=2)
    write_face_video(tmp_path / "media" / "other" / "c.mp4", n_frames=2)  # keys clips/c.mp4, other/c.mp4
    (out / "clips").symlink_to(elsewhere, target_is_directory=True)
    result = predict(runner, [tmp_path / "media"], checkpoint, out)
    assert_refused(result, f"{out / 'clips' / 'c.csv'} leads outside {out} (a symbolic link in the folder)")
    manifest = json.loads((out / "predictions.json").read_text())
    manifest["inputs"].append(dict(manifest["inputs"][0], key="clips/c.mp4", table="clips/c.csv", status="pending"))
    (out / "predictions.json").write_text(json.dumps(manifest))
    assert_refused(predict(runner, [tmp_path / "media"], checkpoint, out), "names 'clips/c.csv', which lies outside")
    assert list(elsewhere.iterdir()) == []


def test_leftovers_of_a_run_killed_before_its_first_manifest_are_accepted(runner, media, checkpoint, tmp_path) -> None:
    out = tmp_path / "preds"
    out.mkdir()
    (out / ".predictions.json.x1y2.tmp").write_bytes(b"{")
    result = predict(runner, [media / "a.mp4"], checkpoint, out)
    assert result.exit_code == 0, result.output
    assert (out / "a.csv").is_file() and json.loads((out / "predictions.json").read_text())["complete"]


# -- predict merge ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(media, checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shards")
    for i in (1, 2):
        result = predict(CliRunner(), [media], checkpoint, folder / f"s{i}", "--shard", f"{i}/2")
        assert result.exit_code == 0, result.output
    return folder / "s1", folder / "s2"


def merge(runner: CliRunner, folders, out: Path, *extra: str) -> Result:
    return runner.invoke(cli, ["predict", "merge", *map(str, folders), "--out", str(out), *extra])


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_merge_refuses_a_shard_table_outside_its_folder(runner, shards, tmp_path, kind) -> None:
    """Before the fix, ``../victim.txt`` copied the shard's neighbour file over ``out/../victim.txt``."""
    victim = victim_file(tmp_path)
    shard = tmp_path / "shards" / "s2"
    shutil.copytree(shards[1], shard)
    (shard.parent / "victim.txt").write_bytes(b"what a crafted shard wants written\n")
    name = crafted_name(kind, shard, victim) if kind != "dotdot" else "../victim.txt"
    edit_manifest(shard, "b.mp4", table=name)
    out = tmp_path / "merged"
    assert_refused(merge(runner, [shards[0], shard], out), f"{shard / 'predictions.json'} names {name!r}, which lies outside")
    assert victim.read_bytes() == VICTIM and not out.exists()


def test_merge_into_a_folder_it_did_not_write_touches_nothing(runner, shards, tmp_path) -> None:
    victim = victim_file(tmp_path)
    out = tmp_path / "merged"
    out.mkdir()
    (out / "b.csv").symlink_to(victim)
    for extra in ([], ["--overwrite"]):
        assert_refused(merge(runner, shards, out, *extra), f"--out {out} holds files aucli predict did not write (b.csv)")
    assert victim.read_bytes() == VICTIM and snapshot(out) == {"b.csv": str(victim).encode()}
    # an earlier merge whose manifest was edited to list the link is refused as well
    (out / "predictions.json").write_text((shards[1] / "predictions.json").read_text())
    assert_refused(merge(runner, shards, out, "--overwrite"), "names 'b.csv', which lies outside")
    assert victim.read_bytes() == VICTIM


# -- audit: the review queue and the Label Studio folder ---------------------------------------------------


def test_audit_apply_opens_no_path_a_queue_names(runner, tmp_path) -> None:
    import numpy as np
    from store_fixtures import add_source

    from aucli.store import CorpusStore, open_store

    store = tmp_path / "s.h5"
    with CorpusStore.create(store, crop_size=16) as opened:
        add_source(opened, "clip.mp4", range(3), subject="F001", recording="T1")
        opened.write_labels("human", ["AU1"], np.zeros((3, 1), np.int8))
    victim = victim_file(tmp_path)
    task = {"source": str(victim), "frame_start": 0, "frame_stop": 1, "au": "AU1", "label_set": "human",
            "image": f"/data/local-files/?d=../{victim.name}"}  # fmt: skip
    queue = tmp_path / "queue" / "export.json"
    queue.parent.mkdir()
    queue.write_text(json.dumps([{"id": 1, "data": task, "annotations": [
        {"result": [{"from_name": "corrected", "to_name": "image", "type": "choices", "value": {"choices": ["present"]}}]}
    ]}]))  # fmt: skip
    result = runner.invoke(cli, ["audit", "apply", str(queue), "--store", str(store), "--as", "reviewed"])
    assert_refused(result, "none of the 1 correction(s)", code=1)
    assert f"no source {str(victim)!r}" in result.output
    assert victim.read_bytes() == VICTIM
    with open_store(store) as opened:
        assert opened.label_sets() == ["human"]


def test_label_studio_export_never_writes_through_a_link(tmp_path) -> None:
    from types import SimpleNamespace

    import numpy as np

    from aucli.audit.export import write_label_studio
    from aucli.errors import UsageError

    victim = victim_file(tmp_path)
    folder = tmp_path / "review"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "flag_00002.png").symlink_to(victim)
    flags = type("Flags", (), {"rank": np.array([1, 2]), "__len__": lambda self: 2})()  # two flags, ranks 1 and 2
    record = SimpleNamespace(flags=flags)
    with pytest.raises(UsageError, match=r"names 'images/flag_00002.png', which lies outside"):
        write_label_studio(None, record, folder)  # refused before a store is read
    assert victim.read_bytes() == VICTIM and sorted(p.name for p in folder.rglob("*")) == ["flag_00002.png", "images"]


# -- exit codes --------------------------------------------------------------------------------------------


def test_predict_exits_1_when_no_input_was_predicted(runner, checkpoint, media, tmp_path) -> None:
    bad = write_corrupt_video(tmp_path / "bad.mp4", n_frames=4)
    result = predict(runner, [bad], checkpoint, tmp_path / "o", "--json")
    assert_refused(result, "no input was predicted (1 failed); see the problems above", code=1)
    assert json.loads(result.stdout)["inputs"] == {"done": 0, "skipped": 0, "failed": 1}  # the report comes first
    assert predict(runner, [bad, media / "a.mp4"], checkpoint, tmp_path / "o2").exit_code == 0


# -- kill -9 ------------------------------------------------------------------------------------------------

_CHILD = """
import os, signal, sys
at, phase, original, tables = int(sys.argv[1]), sys.argv[2], os.replace, [0]
def replace(source, target, *args, **kwargs):
    table = str(target).endswith(".csv")
    tables[0] += table
    if table and tables[0] == at and phase == "before":
        os.kill(os.getpid(), signal.SIGKILL)  # the table's temporary file is written, not renamed
    result = original(source, target, *args, **kwargs)
    if table and tables[0] == at and phase == "after":
        os.kill(os.getpid(), signal.SIGKILL)  # the table is in place, the manifest says pending
    return result
os.replace = replace
from aucli.cli.main import cli
for args in sys.argv[3:]:  # one command line per argument, in one process (the model is loaded once per command)
    cli.main(args.split("\\n"), standalone_mode=False)
"""


def run_child(at: int, phase: str, *commands: list[str]) -> subprocess.CompletedProcess:
    """Run aucli ``commands`` in a fresh process (one thread), killed at table write ``at`` (1-based)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    lines = ["\n".join(command) for command in commands]
    return subprocess.run([sys.executable, "-c", _CHILD, str(at), phase, *lines], capture_output=True, text=True, timeout=300, env=env)


def test_kill_9_at_a_seeded_table_write_then_a_rerun_gives_the_same_tables(checkpoint, tmp_path) -> None:
    """Batches of one face, so that every face is scored alike whichever run scores it: the tables
    are then byte-identical (larger batches span inputs, and a resumed run batches differently)."""
    media = tmp_path / "media"
    for name in ("a", "b", "c", "d"):
        write_face_video(media / f"{name}.mp4", n_frames=3)

    def args(out: Path) -> list[str]:
        return ["predict", str(media), "-c", str(checkpoint), "--out", str(out), *FAST, "--batch-size", "1"]

    rng = random.Random(22)
    at, phase = rng.randint(1, 4), rng.choice(["before", "after"])
    out, reference = tmp_path / "killed", tmp_path / "reference"
    killed = run_child(at, phase, args(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.csv")}
    assert len(kept) == at - (phase == "before")
    finished = run_child(0, "never", args(out), args(reference))  # the rerun, then an uninterrupted run
    assert finished.returncode == 0, finished.stderr
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # skipped, not predicted again
    tables = sorted(p.name for p in reference.glob("*.csv"))
    assert tables == ["a.csv", "b.csv", "c.csv", "d.csv"] and sorted(p.name for p in out.glob("*.csv")) == tables
    for name in tables:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name

    def entries(folder: Path) -> list[dict]:
        inputs = json.loads((folder / "predictions.json").read_text())["inputs"]
        return [{k: e[k] for k in ("key", "table", "status", "frames", "faces")} for e in inputs]

    assert entries(out) == entries(reference) and all(e["status"] == "done" for e in entries(out))
