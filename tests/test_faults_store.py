"""Fault injection on the store: a full disk (a small tmpfs, and ENOSPC/EIO injected at the
writer), ``kill -9`` at seeded moments, truncated and corrupt files. After every fault the store
opens, ``aucli info --check`` finds it consistent (or says what is left and how to recover), and
rerunning the same command completes it to the faces of an uninterrupted run."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_face_video
from store_fixtures import add_source

from aucli.cli.main import cli
from aucli.store import CorpusStore, open_store
from aucli.store import journal as journal_module
from aucli.store import writer as writer_module

CROP = 96  # 27 KB a face: a few dozen faces fill the small disks below


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Four short videos (84 frames in all); with --detector none each frame is one face."""
    folder = tmp_path_factory.mktemp("videos")
    for i, n in enumerate((24, 18, 22, 20)):
        write_face_video(folder / f"clip{i}.mp4", n_frames=n, size=(96, 64))
    return folder


def preprocess_args(videos: Path, out: Path) -> list[str]:
    return ["preprocess", str(videos), "--out", str(out), "--detector", "none", "--crop-size", str(CROP)]


def fingerprint(path: Path) -> dict[str, tuple]:
    """Per source key: status, frames, face metadata and a hash of its crops."""
    with open_store(path) as store:
        faces = store.face_table()
        result = {}
        for record in store.sources():
            rows = record.rows
            crops = store.images(slice(rows.start, rows.stop)) if len(rows) else np.zeros(0, np.uint8)
            result[record.key] = (
                record.status,
                record.n_frames,
                faces["frame"][rows].tolist(),
                faces["box"][rows].round(3).tolist(),
                store.noface_frames(record).tolist(),
                hashlib.sha256(crops.tobytes()).hexdigest(),
            )
        return result


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> dict[str, tuple]:
    """The store of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "ref.h5"
    result = CliRunner().invoke(cli, preprocess_args(videos, out))
    assert result.exit_code == 0, result.output
    return fingerprint(out)


def assert_consistent(runner, store: Path) -> dict:
    """``aucli info --check`` passes, no journal is left, and the committed sources are whole."""
    result = runner.invoke(cli, ["info", str(store), "--check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and not journal_module.journal_path(store).exists()
    return report


def assert_prefix_of(reference: dict, store: Path) -> None:
    """Each source the store holds is exactly as in the uninterrupted run."""
    for key, value in fingerprint(store).items():
        assert value == reference[key], key


# -- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (CI runs as root); skipped only where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); ENOSPC is injected in other tests")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on ``disk``."""
    ballast = disk / "ballast"
    free = journal_module.free_bytes(disk)
    ballast.write_bytes(b"\0" * max(0, free - leave))
    return ballast


def test_a_full_disk_stops_before_the_write_and_a_rerun_completes(runner, small_disk, videos, reference, monkeypatch, capfd):
    monkeypatch.setattr(writer_module, "COMMIT_INTERVAL", 0.0)  # one commit per source
    ballast = fill(small_disk, 3_000_000)
    out = small_disk / "corpus.h5"
    result = runner.invoke(cli, preprocess_args(videos, out))
    assert result.exit_code == 1
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert f"Error: {out}: not enough free space on its disk" in result.output
    assert "free some space and rerun the same command to continue" in result.output
    report = assert_consistent(runner, out)
    assert 1 <= report["intact_sources"] < len(reference)
    assert_prefix_of(reference, out)
    ballast.unlink()
    rerun = runner.invoke(cli, preprocess_args(videos, out))
    assert rerun.exit_code == 0, rerun.output
    assert fingerprint(out) == reference
    assert "HDF5-DIAG" not in capfd.readouterr().err


def test_enospc_past_the_free_space_check_rolls_back(runner, small_disk, videos, reference, monkeypatch, capfd):
    """The check can be outrun (another process fills the disk): the write fails for real."""
    from aucli.store import store as store_module

    monkeypatch.setattr(store_module, "free_bytes", lambda path: 1 << 50)
    ballast = fill(small_disk, 2_500_000)
    out = small_disk / "corpus.h5"
    result = runner.invoke(cli, preprocess_args(videos, out))
    assert result.exit_code == 1, result.output
    assert f"Error: {out}: the disk is full; the write was rolled back and the store keeps its last commit" in result.output
    captured = capfd.readouterr()
    assert "HDF5-DIAG" not in captured.err and "Traceback" not in captured.err + result.output
    assert_consistent(runner, out)
    assert_prefix_of(reference, out)
    ballast.unlink()
    assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
    assert fingerprint(out) == reference
    with h5py.File(out, "r") as f:  # no orphan rows were kept
        assert f["frames/image"].shape[0] == sum(len(v[2]) for v in reference.values())


def test_a_full_disk_under_worker_processes_stops_cleanly(runner, small_disk, videos, reference, capfd):
    """Workers write each source's faces to a part file beside the store: that write fails first."""
    ballast = fill(small_disk, 150_000)
    out = small_disk / "corpus.h5"
    result = runner.invoke(cli, [*preprocess_args(videos, out), "--workers", "2"])
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert "the disk is full" in result.output and "free some space and rerun the same command" in result.output
    assert "Traceback" not in result.output + capfd.readouterr().err
    assert_consistent(runner, out)
    assert not (small_disk / ".corpus.h5.parts").exists()
    ballast.unlink()
    assert runner.invoke(cli, [*preprocess_args(videos, out), "--workers", "2"]).exit_code == 0
    assert fingerprint(out) == reference


# -- write errors injected at the writer ------------------------------------------------------------


def count_writes(monkeypatch) -> list[int]:
    calls = [0]
    original = journal_module._write_all

    def counted(fd, data, offset):
        calls[0] += 1
        return original(fd, data, offset)

    monkeypatch.setattr(journal_module, "_write_all", counted)
    return calls


def fail_write(monkeypatch, at: int, code: int) -> None:
    """The ``at``-th write of the store or its journal fails with ``code``."""
    calls = [0]
    original = journal_module._write_all

    def failing(fd, data, offset):
        calls[0] += 1
        if calls[0] == at:
            raise OSError(code, os.strerror(code))
        return original(fd, data, offset)

    monkeypatch.setattr(journal_module, "_write_all", failing)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_write_error_at_a_random_write_rolls_back_to_the_last_commit(runner, tmp_path, videos, reference, code, capfd):
    with pytest.MonkeyPatch.context() as patch:
        calls = count_writes(patch)
        assert runner.invoke(cli, preprocess_args(videos, tmp_path / "count.h5")).exit_code == 0
    rng = random.Random(code)
    for at in sorted(rng.sample(range(1, calls[0] + 1), 4)):
        out = tmp_path / f"at{at}.h5"
        with pytest.MonkeyPatch.context() as patch:
            fail_write(patch, at, code)
            result = runner.invoke(cli, preprocess_args(videos, out))
        expected = "the disk is full" if code == errno.ENOSPC else "writing the store failed (Input/output error)"
        if out.exists():  # a failure while the store is being created leaves no file
            assert result.exit_code == 1 and expected in result.output, (at, result.output)
            assert_consistent(runner, out)
            assert_prefix_of(reference, out)
        else:
            assert result.exit_code == 1 and "Error: cannot create" in result.output, (at, result.output)
        assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
        assert fingerprint(out) == reference, at
    assert "HDF5-DIAG" not in capfd.readouterr().err


def failing_fsync(monkeypatch, path: Path, times: int) -> None:
    """The next ``times`` fsyncs of ``path`` fail with EIO."""
    real_fsync, left = os.fsync, [times]

    def fsync(fd):
        if left[0] and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            left[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)


def test_an_fsync_error_at_commit_rolls_back(runner, tmp_path, videos, reference, monkeypatch) -> None:
    out = tmp_path / "s.h5"
    first = runner.invoke(cli, ["preprocess", str(videos / "clip0.mp4"), *preprocess_args(videos, out)[2:]])
    assert first.exit_code == 0, first.output
    failing_fsync(monkeypatch, out, 1)
    result = runner.invoke(cli, preprocess_args(videos, out))
    assert result.exit_code == 1 and "writing the store failed (Input/output error)" in result.output, result.output
    assert sorted(fingerprint(out)) == ["clip0.mp4"]
    assert_consistent(runner, out)
    # the disk refuses the rollback too: the journal stays, and the next command finishes it
    failing_fsync(monkeypatch, out, 2)
    result = runner.invoke(cli, preprocess_args(videos, out))
    assert result.exit_code == 1 and "rolling back a write that did not finish failed (Input/output error)" in result.output
    assert journal_module.journal_path(out).exists()
    monkeypatch.undo()
    assert_consistent(runner, out)
    assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
    assert fingerprint(out) == reference


# -- kill -9 ------------------------------------------------------------------------------------------

_KILLER = """
import os, signal, sys
from aucli.store import journal
at, original, calls = int(sys.argv[1]), journal._write_all, [0]
def write_all(fd, data, offset):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(fd, data, offset)
journal._write_all = write_all
from aucli.cli.main import cli
try:
    cli(sys.argv[2:])
finally:
    print("writes", calls[0], file=sys.stderr)
"""


def run_killed(at: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _KILLER, str(at), *args], capture_output=True, text=True, timeout=120)


def test_kill_9_at_seeded_random_writes_then_a_rerun_gives_the_same_faces(runner, tmp_path, videos, reference) -> None:
    counted = run_killed(0, preprocess_args(videos, tmp_path / "count.h5"))
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("writes", 1)[1])
    hot = 0
    for at in sorted(random.Random(9).sample(range(1, total + 1), 5)):
        out = tmp_path / f"killed{at}.h5"
        killed = run_killed(at, preprocess_args(videos, out))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if out.exists():
            hot += journal_module.journal_path(out).exists()
            assert_consistent(runner, out)  # a read-only open rolls a hot journal back
            assert_prefix_of(reference, out)
        assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
        assert fingerprint(out) == reference, at
    assert hot  # at least one kill fell inside a write and left a journal to roll back


def test_kill_9_from_outside_at_a_seeded_moment(runner, tmp_path, videos, reference) -> None:
    out = tmp_path / "s.h5"
    rng = random.Random(3)
    for _ in range(2):
        process = subprocess.Popen([sys.executable, "-m", "aucli", *preprocess_args(videos, out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not journal_module.journal_path(out).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # until the run writes to the store
        time.sleep(rng.uniform(0.0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert_consistent(runner, out)
        assert_prefix_of(reference, out)
    assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
    assert fingerprint(out) == reference


# -- truncated and corrupt stores ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(videos, tmp_path_factory) -> Path:
    """An uninterrupted store with a label set and a prediction run."""
    out = tmp_path_factory.mktemp("stored") / "corpus.h5"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer_module, "COMMIT_INTERVAL", 0.0)  # each source's rows follow the last one's
        assert CliRunner().invoke(cli, preprocess_args(videos, out)).exit_code == 0
    with open_store(out, "a") as store:
        n = store.n_faces
        store.write_labels("human", ["AU1", "AU12"], np.resize(np.array([[1, 0], [0, -1]], np.int8), (n, 2)))
        store.write_run("predictions", "p1", {"probs": np.linspace(0, 1, 2 * n, dtype=np.float32).reshape(n, 2)})
    return out


def check_json(runner, path: Path) -> dict | None:
    """The --check report (exit 1: damaged), or None when not even the HDF5 header is readable."""
    checked = runner.invoke(cli, ["info", str(path), "--check", "--json"])
    assert checked.exit_code == 1 and "Traceback" not in checked.output, checked.output
    if not checked.stdout:
        assert "the HDF5 header of the file is unreadable" in checked.output or "not an HDF5 file" in checked.output
        return None
    report = json.loads(checked.stdout)
    if report["intact_sources"]:
        assert "--check --salvage NEW.h5` copies that state into a new store" in checked.output
    else:
        assert "holds no intact source; preprocess the inputs again" in checked.output
    return report


def test_a_truncated_store_says_so_and_its_intact_part_is_salvaged(runner, stored, tmp_path, videos, reference) -> None:
    size = stored.stat().st_size
    data = stored.read_bytes()
    inside_clip3 = chunk_offset(stored, "frames/image", 70) + 100
    for cut in [inside_clip3, *sorted(random.Random(4).sample(range(size // 10, size), 3)), 4000, 40]:
        broken = tmp_path / f"cut{cut}.h5"
        broken.write_bytes(data[:cut])
        shown = runner.invoke(cli, ["info", str(broken)])
        assert shown.exit_code == 1 and shown.output.count("\n") == 1 and shown.output.startswith("Error: "), shown.output
        assert "lock" not in shown.output.lower() and "HDF5_USE_FILE_LOCKING" not in shown.output
        if cut > 1000:
            assert f"the store is truncated: the file has {cut:,} bytes" in shown.output
            assert f"run `aucli info {broken} --check`" in shown.output
        report = check_json(runner, broken)
        if cut == inside_clip3:
            assert report is not None and report["intact_sources"] == 3 and report["last_source"] == "clip2.mp4"
        if report is None or not report["intact_sources"]:
            continue
        rescued = tmp_path / f"rescued{cut}.h5"
        salvaged = runner.invoke(cli, ["info", str(broken), "--check", "--salvage", str(rescued)])
        assert salvaged.exit_code == 1 and f"its last consistent state is now in {rescued}" in salvaged.output
        assert_consistent(runner, rescued)
        assert len(fingerprint(rescued)) == report["intact_sources"]
        assert_prefix_of(reference, rescued)
        assert runner.invoke(cli, preprocess_args(videos, rescued)).exit_code == 0
        assert fingerprint(rescued) == reference


def chunk_offset(path: Path, dataset: str, chunk: int = 0) -> int:
    with h5py.File(path, "r") as f:
        return f[dataset].id.get_chunk_info(chunk).byte_offset


def test_corrupt_rows_are_found_and_the_store_before_them_is_salvaged(runner, stored, tmp_path) -> None:
    broken = tmp_path / "broken.h5"
    data = bytearray(stored.read_bytes())
    at = chunk_offset(stored, "frames/source") + 4 * 30  # row 30's source id: inside clip1 (rows 24-41)
    data[at : at + 4] = (7).to_bytes(4, "little")
    broken.write_bytes(bytes(data))
    checked = runner.invoke(cli, ["info", str(broken), "--check", "--json"])
    assert checked.exit_code == 1
    report = json.loads(checked.stdout)
    assert report["intact_sources"] == 1 and report["intact_faces"] == 24
    assert report["problems"] == ["source 1 (clip1.mp4) and every later one: its rows do not match it"]


def test_a_corrupt_compressed_chunk_is_found_and_the_rows_before_it_salvaged(runner, videos, reference, tmp_path) -> None:
    out = tmp_path / "lzf.h5"
    first = ["preprocess", str(videos / "clip0.mp4"), *preprocess_args(videos, out)[2:], "--compression", "lzf"]
    assert runner.invoke(cli, first).exit_code == 0
    with open_store(out, "a") as store:
        store.write_run("predictions", "early", {"p": np.zeros(store.n_faces)})  # covers clip0's 24 faces
    assert runner.invoke(cli, preprocess_args(videos, out)).exit_code == 0
    with open_store(out, "a") as store:
        store.write_labels("human", ["AU12"], np.ones((store.n_faces, 1), np.int8))
        store.write_run("predictions", "all", {"p": np.zeros(store.n_faces)})
    data = bytearray(out.read_bytes())
    at = chunk_offset(out, "frames/image", 50)
    data[at : at + 64] = bytes(range(64))
    out.write_bytes(bytes(data))
    report = check_json(runner, out)
    assert report["intact_faces"] == 42  # clip0 and clip1; row 50 is in clip2
    assert report["problems"] == ["source 2 (clip2.mp4) and every later one: its face rows are damaged or missing"]
    rescued = tmp_path / "rescued.h5"
    salvaged = runner.invoke(cli, ["info", str(out), "--check", "--salvage", str(rescued), "--json"])
    assert json.loads(salvaged.stdout)["salvaged"]["notes"] == [
        "label set human: cut to the 42 intact face(s)",
        "predictions run all: left out (it covers 84 faces, 42 are intact)",
    ]
    with open_store(rescued) as store:
        assert store.compression == "lzf" and store.n_faces == 42
        assert store.read_labels("human").occurrence.shape == (42, 1) and store.runs("predictions") == ["early"]
    assert runner.invoke(cli, [*preprocess_args(videos, rescued)]).exit_code == 0
    assert fingerprint(rescued) == reference


def test_random_corruption_is_one_error_line_never_a_traceback(runner, stored, tmp_path, capfd) -> None:
    data = stored.read_bytes()
    rng = random.Random(5)
    for trial in range(12):
        broken = tmp_path / f"noise{trial}.h5"
        noisy = bytearray(data)
        at = rng.randrange(0, 64 * 1024)  # HDF5's own structures sit near the start
        noisy[at : at + 16] = rng.randbytes(16)
        broken.write_bytes(bytes(noisy))
        for args in (["info", str(broken)], ["info", str(broken), "--check"], preprocess_args(Path("/nonexistent"), broken)):
            result = runner.invoke(cli, args)
            assert result.exit_code in (0, 1), (trial, args, result.output)
            assert "Traceback" not in result.output and not isinstance(result.exception, (OSError, RuntimeError)), result.output
    assert "Traceback" not in capfd.readouterr().err


_DEAD_WRITER = """
import os, sys, h5py
from aucli.store.journal import JournaledFile
from pathlib import Path
io = JournaledFile(Path(sys.argv[1]))
f = h5py.File(io, "r+")
f["sources"].attrs["n_rows"] = 99
f["frames/image"].resize(500, axis=0)
f["frames/image"][5:500] = 7
f.flush()
io._write_kept()  # the commit's first half: the store's own blocks overwritten, the journal not yet deleted
os._exit(0)  # gone before its commit point: no rollback, no close
"""


def test_a_hot_journal_is_rolled_back_by_a_reader(tmp_path) -> None:
    path = tmp_path / "s.h5"
    with CorpusStore.create(path, crop_size=16) as store:
        add_source(store, "a.mp4", range(5))
    before = path.read_bytes()
    subprocess.run([sys.executable, "-c", _DEAD_WRITER, str(path)], check=True, timeout=60)
    assert journal_module.journal_path(path).exists() and path.read_bytes() != before
    with open_store(path) as store:
        assert store.n_sources == 1 and store.n_faces == 5
    assert path.read_bytes() == before and not journal_module.journal_path(path).exists()
