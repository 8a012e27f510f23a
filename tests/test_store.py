"""The HDF5 corpus store: schema checks, per-source commits, crash recovery, label sets, runs, and
the torch Dataset with DataLoader workers. Real HDF5 files throughout."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from store_fixtures import add_source, fake_face, source_info

from aucli.errors import StoreError, UsageError
from aucli.store import CorpusStore, SourceInfo, open_store
from aucli.store.schema import SCHEMA_VERSION

SIZE = 16


def face(value: int, track: int = 0):
    return fake_face(value, size=SIZE, track=track)


def info(key: str, subject: str = "S1") -> SourceInfo:
    return source_info(key, subject)


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "corpus.h5"
    with CorpusStore.create(path, crop_size=SIZE) as store:
        add_source(store, "a.mp4", range(100), noface=(3, 4))  # 98 faces: more than one write slab
        add_source(store, "b.mp4", range(10), subject="S2", offset=100)
        add_source(store, "c.mp4", range(5), subject="S3", offset=200, tracks=2)
    return path


def test_written_rows_read_back(store_path) -> None:
    with open_store(store_path) as store:
        assert store.n_sources == 3 and store.n_faces == 98 + 10 + 10 and store.n_noface == 2
        a, b, c = store.sources()
        assert (a.row_start, a.row_stop, a.n_frames, a.n_faces) == (0, 98, 100, 98)
        assert (b.row_start, b.row_stop, b.subject, b.status) == (98, 108, "S2", "done")
        faces = store.face_table()
        assert faces["frame"][:5].tolist() == [0, 1, 2, 5, 6]
        assert np.allclose(faces["timestamp"][:3], [0, 0.04, 0.08])
        assert faces["box"].shape == (118, 4) and faces["landmarks"].shape == (118, 5, 2)
        assert faces["track"][108:].tolist() == [0, 1] * 5
        assert store.noface_table()["frame"].tolist() == [3, 4]
        # crops: any order, repeats, contiguous runs and single rows
        rows = [100, 2, 2, 3, 4, 117]
        expected = [faces["frame"][r] + (100 if 98 <= r < 108 else 200 if r >= 108 else 0) for r in rows]
        assert store.images(rows)[:, 0, 0, 0].tolist() == [v % 256 for v in expected]
        assert store.image(2)[0, 0, 0] == 2
        assert store.rows(subjects=["S2"]).tolist() == list(range(98, 108))
        assert store.rows(sources=["c.mp4"]).tolist() == list(range(108, 118))
        assert store.frame_rows(c) == {f: 108 + 2 * f for f in range(5)}  # the subject's track only
        assert store.noface_frames(a).tolist() == [3, 4]


def test_schema_and_file_errors(tmp_path, store_path) -> None:
    assert h5py.File(store_path, "r").attrs["schema_version"] == SCHEMA_VERSION
    with pytest.raises(StoreError, match=r"no such store; create one with `aucli preprocess"):
        open_store(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError, match=r"notes.h5: not an aucli store \(not an HDF5 file\)"):
        open_store(text)
    plain = tmp_path / "plain.h5"
    h5py.File(plain, "w").close()
    with pytest.raises(StoreError, match=r"plain.h5: an HDF5 file but not an aucli store"):
        open_store(plain, "a")
    with h5py.File(store_path, "r+") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(StoreError, match=r"store schema version 2, but this aucli reads version 1; upgrade aucli to read it"):
        open_store(store_path)
    with pytest.raises(StoreError, match=r"is a folder"):
        CorpusStore.create(tmp_path)
    with pytest.raises(StoreError, match=r"folder .*nowhere does not exist"):
        CorpusStore.create(tmp_path / "nowhere" / "x.h5")
    with pytest.raises(StoreError, match=r"already exists"):
        CorpusStore.create(store_path)


def test_a_store_being_written_is_refused_with_a_clear_error(store_path) -> None:
    code = f"import h5py, sys, time; f = h5py.File({str(store_path)!r}, 'r+'); print('open', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match=r"being written by another process \(a running `aucli preprocess`\?\)"):
            open_store(store_path)
        with pytest.raises(StoreError, match=r"the store is open in another process .*writing needs it alone"):
            open_store(store_path, "a")
    finally:
        holder.kill()
        holder.wait()


def test_abort_and_uncommitted_rows_are_dropped(store_path) -> None:
    with open_store(store_path, "a") as store:
        writer = store.begin_source(info("d.mp4"))
        for f in range(70):
            writer.add_frame(f, 0.0, [face(f)])
        assert store.h5["frames"]["image"].shape[0] == 118 + 64  # one slab reached the file
        writer.abort()
        assert store.h5["frames"]["image"].shape[0] == 118 and store.n_faces == 118
        with pytest.raises(StoreError, match="already committed or aborted"):
            writer.add_frame(0, 0.0, [])
    # a crash leaves rows (and a half-written label set) past the committed counts
    with h5py.File(store_path, "r+") as f:
        for name in ("image", "frame", "source"):
            f["frames"][name].resize(150, axis=0)
        f["noface"]["frame"].resize(9, axis=0)
        f["labels"].create_group(".partial-draft-1234")
    with open_store(store_path) as store:  # readers see the committed rows only
        assert store.n_faces == 118 and store.face_table(["frame"])["frame"].shape == (118,)
        assert store.label_sets() == []
    with open_store(store_path, "a") as store:  # a writable open truncates
        assert store.h5["frames"]["image"].shape[0] == 118
        assert store.h5["frames"]["frame"].shape[0] == 118
        assert store.h5["noface"]["frame"].shape[0] == 2
        assert list(store.h5["labels"]) == []
        add_source(store, "d.mp4", range(3), offset=50)
        assert store.face_table(["frame"])["frame"][-3:].tolist() == [0, 1, 2]


def test_a_published_source_whose_rows_are_missing_is_dropped(store_path) -> None:
    # a flush cut short may publish the /sources row before all of its face rows reached the file
    with h5py.File(store_path, "r+") as f:
        f["frames"]["image"].resize(110, axis=0)
    with open_store(store_path) as store:
        assert store.n_sources == 2 and store.n_faces == 108


def test_failed_sources_and_retries(store_path) -> None:
    with open_store(store_path, "a") as store:
        store.record_failure(info("bad.mp4"), "bad.mp4: not a readable video")
        assert store.find_source("bad.mp4").status == "failed"
        add_source(store, "bad.mp4", range(2), offset=7)  # retried later: a new row, the latest wins
        latest = store.find_source("bad.mp4")
        assert latest.status == "done" and latest.n_faces == 2
        assert [s.key for s in store.sources()] == ["a.mp4", "b.mp4", "c.mp4", "bad.mp4"]
        assert len(store.sources(latest=False)) == 5
        assert store.face_table(["source"])["source"][-2:].tolist() == [latest.index] * 2


def test_label_sets_are_never_overwritten(store_path) -> None:
    with open_store(store_path, "a") as store:
        n = store.n_faces
        occurrence = np.full((n, 2), -1, np.int8)
        occurrence[:10] = [[1, 0]] * 10
        intensity = np.where(occurrence >= 0, 2.5, np.nan).astype(np.float32)
        store.write_labels("human", ["au01", "12"], occurrence, intensity=intensity, attrs={"format": "csv", "files": ["x.csv"]})
        with pytest.raises(StoreError, match=r"label set 'human' already exists .*--as NAME.*aucli labels delete"):
            store.write_labels("human", ["AU1"], occurrence[:, :1])
        with pytest.raises(UsageError, match=r"expected \(118, 3\)"):
            store.write_labels("other", ["AU1", "AU2", "AU4"], occurrence)
        with pytest.raises(UsageError, match=r"values must be -1, 0 or 1; found \[9\]"):
            store.write_labels("other", ["AU1", "AU2"], np.full((n, 2), 9, np.int8))
        with pytest.raises(UsageError, match="invalid label set name"):
            store.write_labels("../x", ["AU1", "AU2"], occurrence)
        labels = store.read_labels("human")
        assert labels.au_names == ["AU1", "AU12"] and labels.attrs["files"] == ["x.csv"]
        assert labels.rates().tolist() == [1.0, 0.0] and labels.known().tolist() == [10, 10]
        picked = store.read_labels("human", au_names=["AU12", "AU24"])
        assert picked.occurrence[0].tolist() == [0, -1] and np.isnan(picked.intensity[0, 1])
        add_source(store, "late.mp4", range(4))  # faces added after the import read as unknown
        assert store.read_labels("human").occurrence.shape == (n + 4, 2)
        assert (store.read_labels("human").occurrence[n:] == -1).all()
        store.rename_labels("human", "coder1")
        assert store.label_sets() == ["coder1"]
        with pytest.raises(StoreError, match=r"no label set 'human' .*the store has: coder1"):
            store.read_labels("human")
        store.delete_labels("coder1")
        assert store.label_sets() == []


def test_runs_are_written_atomically(store_path) -> None:
    with open_store(store_path, "a") as store:
        probs = np.random.default_rng(0).random((store.n_faces, 3)).astype(np.float32)
        store.write_run(
            "predictions",
            "fold1",
            {"probs": probs, "au_names": np.array(["AU1", "AU2", "AU4"])},
            {"checkpoint": "runs/x/best.safetensors", "params": {"batch": 8, "thresholds": [0.5, 0.4]}},
        )
        with pytest.raises(RuntimeError, match="boom"):
            with store.run_writer("audit", "a1", {"labels": "human"}) as group:
                group.create_dataset("flags", data=np.zeros(3))
                raise RuntimeError("boom")
        assert store.runs("audit") == [] and list(store.h5["audit"]) == []
        with pytest.raises(StoreError, match="predictions run 'fold1' already exists"):
            store.write_run("predictions", "fold1", {})
        assert store.unique_run_name("predictions", "fold1") == "fold1-2"
        with store.run_writer("audit", "a1", {"labels": "human"}) as group:
            group.create_dataset("score", data=np.arange(4.0))
    with open_store(store_path) as store:
        run = store.read_run("predictions", "fold1")
        assert np.array_equal(run.arrays["probs"], probs) and run.arrays["au_names"].tolist() == ["AU1", "AU2", "AU4"]
        assert run.attrs["params"] == {"batch": 8, "thresholds": [0.5, 0.4]} and run.attrs["n_faces"] == 118
        assert store.read_run("audit", "a1").arrays["score"].tolist() == [0, 1, 2, 3]
    with open_store(store_path, "a") as store:
        store.rename_run("audit", "a1", "round1")
        store.delete_run("predictions", "fold1")
        assert store.runs("audit") == ["round1"] and store.runs("predictions") == []
        with pytest.raises(StoreError, match=r"no predictions run 'fold1' .*the store has none"):
            store.read_run("predictions", "fold1")
        with pytest.raises(UsageError, match="run kind must be one of predictions, audit"):
            store.runs("labels")


def test_dataset_with_two_dataloader_workers(store_path) -> None:
    import torch

    from aucli.store.dataset import StoreDataset

    with open_store(store_path, "a") as store:
        occurrence = np.full((store.n_faces, 2), -1, np.int8)
        occurrence[98:108] = [[1, 0]] * 10  # subject S2
        occurrence[0:20, 0] = 0  # subject S1, AU1 only
        store.write_labels("human", ["AU1", "AU2"], occurrence)
    dataset = StoreDataset(store_path, labels="human", au_names=["AU2", "AU1", "AU4"])
    assert len(dataset) == 30 and dataset.au_names == ["AU2", "AU1", "AU4"]
    only_s2 = StoreDataset(store_path, labels="human", subjects=["S2"])
    assert only_s2.rows.tolist() == list(range(98, 108)) and set(only_s2.subjects) == {"S2"}
    everything = StoreDataset(store_path)
    assert len(everything) == 118 and "labels" not in everything[0]
    item = dataset[25]
    assert item["row"] == 103 and item["labels"].tolist() == [0, 1, -1]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.uint8
    assert int(item["image"][0, 0, 0]) == 105  # frame 5 of b.mp4, written with value 100 + 5

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True, generator=torch.Generator().manual_seed(0)
    )
    seen = []
    for _ in range(2):  # two epochs through the same persistent workers
        for batch in loader:
            assert batch["image"].shape[1:] == (3, SIZE, SIZE)
            for row, image, labels in zip(batch["row"].tolist(), batch["image"], batch["labels"]):
                expected = dataset[dataset.rows.tolist().index(row)]
                assert torch.equal(image, expected["image"]) and torch.equal(labels, expected["labels"])
                seen.append(row)
    assert sorted(seen) == sorted(dataset.rows.tolist() * 2)
    transformed = StoreDataset(store_path, labels="human", transform=lambda image: image.float() / 255)
    assert transformed[0]["image"].dtype == torch.float32


def test_a_long_source_appended_frame_by_frame_reads_back_whole(tmp_path) -> None:
    """400 frames appended one at a time commit as one source whose every crop and frame index reads
    back. (How fast writing runs is measured by bench/preprocess_speed.py: the whole preprocess into a
    store, frames/s; a test on a shared machine does not time it.)"""
    crops = [
        SimpleNamespace(
            crop=np.full((256, 256, 3), i, np.uint8), box=np.zeros(4), landmarks=np.zeros((5, 2)), score=1.0, track_id=0
        )
        for i in range(8)
    ]
    with CorpusStore.create(tmp_path / "long.h5") as store:
        writer = store.begin_source(info("v.mp4"))
        for f in range(400):
            writer.add_frame(f, f / 25, [crops[f % 8]])
        writer.commit()
    with CorpusStore.open(tmp_path / "long.h5") as store:
        assert store.n_faces == 400
        images = store.images(slice(0, 400))
        assert [int(image[0, 0, 0]) for image in images] == [f % 8 for f in range(400)]
        assert store.face_table(["frame"])["frame"].tolist() == list(range(400))


def test_short_sources_share_a_commit_and_reads_see_them(tmp_path, monkeypatch) -> None:
    from aucli.store import writer

    monkeypatch.setattr(writer, "COMMIT_INTERVAL", 60.0)
    path = tmp_path / "images.h5"
    with CorpusStore.create(path, crop_size=SIZE) as store:
        for i in range(3):
            add_source(store, f"p{i}.png", range(1), offset=i)
        assert store.h5["sources"].attrs["n_rows"] == 0  # finished, waiting for a common commit
        assert store.n_sources == 3 and store.h5["sources"].attrs["n_rows"] == 3  # a read commits them
        add_source(store, "p3.png", range(1))
        store.record_failure(info("p4.png"), "p4.png: not an image")
    with open_store(path) as store:  # close() commits what waits
        assert [s.status for s in store.sources()] == ["done"] * 4 + ["failed"] and store.n_faces == 4
