"""make_corpus: files in the BP4D, DISFA and CASME II layouts that aucli's own readers accept and that
say exactly what the manifest says; byte-identical by seed; resumable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from aucli.aus import au_name
from aucli.errors import UsageError
from aucli.labels.bp4d import read_bp4d
from aucli.labels.casme2 import read_casme2
from aucli.labels.disfa import read_disfa
from aucli.synth import CorpusConfig, CorpusManifest, make_corpus
from aucli.synth.facs import SYNTH_AUS

AUS = [au_name(a) for a in SYNTH_AUS]


def _bp4d_config(out: Path, **kw) -> CorpusConfig:
    settings = dict(subjects=2, tasks=("T1", "T6"), frames=24, size=96, noise="heavy", seed=3)
    settings.update(kw)
    return CorpusConfig(out, **settings)


@pytest.fixture(scope="module")
def bp4d(tmp_path_factory) -> CorpusManifest:
    return make_corpus(_bp4d_config(tmp_path_factory.mktemp("synth") / "bp4d"))


def _files(root: Path) -> dict[str, bytes]:
    skip = ("videos/", "parts/")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)}


def test_bp4d_layout_files_and_manifest(bp4d: CorpusManifest) -> None:
    root = bp4d.root
    ids = [r["id"] for r in bp4d.recordings]
    assert ids == ["F001_T1", "F001_T6", "M011_T1", "M011_T6"]
    for rec in bp4d.recordings:
        assert (root / rec["media"]).is_file() and rec["media"] == f"videos/{rec['id']}.mp4"
        assert rec["labels"] == [f"BP4D/AUCoding/AU_OCC/{rec['id']}.csv"]
        assert (root / rec["clean_labels"][0]).is_file()
    assert bp4d.aus == AUS
    arrays = bp4d.arrays
    n = sum(r["n_frames"] for r in bp4d.recordings)
    assert arrays["intensity"].shape == (n, len(SYNTH_AUS), 2)
    for key in ("levels", "noisy_levels", "noise_reason"):
        assert arrays[key].shape == (n, len(SYNTH_AUS))
    assert arrays["landmarks"].shape == (n, 5, 2) and arrays["pose"].shape == (n, 3)
    assert (np.abs(arrays["pose"]) <= 22.0 + 1e-3).all()
    subjects = {s["id"]: s for s in bp4d.subjects}
    assert set(subjects) == {"F001", "M011"} and subjects["F001"]["sex"] == "F" and subjects["M011"]["sex"] == "M"
    assert subjects["F001"]["identity"]["skin"] != subjects["M011"]["identity"]["skin"]
    # official BP4D partitions: F001 is in P1, M011 in P2
    assert subjects["F001"]["partition"] == 0 and subjects["M011"]["partition"] == 1
    # occurrence calibrated on the corpus: BP4D's rates up to one frame's worth
    frames = arrays["levels"].shape[0]
    for au, rate in bp4d.data["statistics"]["occurrence"].items():
        assert abs(rate - bp4d.data["statistics"]["target"][au]) <= 1.0 / frames + 1e-4, au
        assert rate == pytest.approx(float((arrays["levels"][:, AUS.index(au)] >= 1).mean()), abs=1e-4)
    loaded = CorpusManifest.load(root)
    assert loaded.data == json.loads((root / "manifest.json").read_text())


def test_bp4d_label_files_read_back_as_the_manifest_says(bp4d: CorpusManifest) -> None:
    noisy = read_bp4d([bp4d.root / "BP4D/AUCoding/AU_OCC"], au_names=AUS)
    clean = read_bp4d([bp4d.root / "BP4D/AUCoding/AU_OCC_clean"], au_names=AUS)
    arrays = bp4d.arrays
    for table, key in ((noisy, "noisy_levels"), (clean, "levels")):
        by_name = {(r.target.subject, r.target.recording): r for r in table.recordings}
        for rec in bp4d.recordings:
            labels = by_name[(rec["subject"], rec["tasks"][0])]
            rows = slice(*rec["rows"])
            assert labels.frames.tolist() == list(range(rec["n_frames"]))  # video frames, 0-based
            levels = arrays[key][rows]
            expected = np.where(levels < 0, -1, levels >= 1).astype(np.int8)
            assert np.array_equal(labels.occurrence, expected)
    assert (arrays["noisy_levels"] != arrays["levels"]).any(), "heavy noise changed nothing"


def test_noise_log_lists_every_changed_label(bp4d: CorpusManifest) -> None:
    arrays = bp4d.arrays
    with open(bp4d.root / "noise_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    changed = arrays["levels"] != arrays["noisy_levels"]
    assert len(rows) == int(changed.sum()) == bp4d.data["noise"]["changed_labels"]
    index = {r["id"]: r for r in bp4d.recordings}
    for row in rows:
        rec = index[row["recording"]]
        i = rec["rows"][0] + int(row["frame"])
        k = AUS.index(row["au"])
        assert arrays["levels"][i, k] == int(row["clean"]) and arrays["noisy_levels"][i, k] == int(row["noisy"])
        assert row["reason"] in {"boundary", "missed", "confusion", "flip", "uncoded"}
    assert sum(bp4d.data["noise"]["by_reason"].values()) == len(rows)


def test_videos_decode_to_the_rendered_frames(bp4d: CorpusManifest) -> None:
    rec = bp4d.recordings[0]
    with av.open(str(bp4d.root / rec["media"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == rec["n_frames"] and frames[0].shape == (96, 96, 3)


def test_same_seed_same_bytes_and_resume(bp4d: CorpusManifest, tmp_path: Path) -> None:
    again = make_corpus(_bp4d_config(tmp_path / "again"))
    first, second = _files(bp4d.root), _files(again.root)
    assert first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert not different, different
    # an interrupted run: one recording's commit marker and label file are gone
    (again.root / "parts" / "M011_T1.json").unlink()
    (again.root / "BP4D/AUCoding/AU_OCC/M011_T1.csv").unlink()
    (again.root / "manifest.json").unlink()
    rendered = []
    make_corpus(_bp4d_config(tmp_path / "again"), progress=lambda done, total: rendered.append(done))
    assert rendered == [3, 4]  # three recordings kept, one rendered
    assert _files(again.root) == first
    other_seed = _bp4d_config(tmp_path / "again", seed=4)
    with pytest.raises(UsageError, match="holds a corpus made with other settings"):
        make_corpus(other_seed)
    replaced = make_corpus(other_seed, overwrite=True)
    assert replaced.data["settings"]["seed"] == 4


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--size must be an even number"):
        make_corpus(CorpusConfig(tmp_path, size=99))
    with pytest.raises(UsageError, match="unknown task"):
        make_corpus(CorpusConfig(tmp_path, tasks=("T1", "T9")))
    with pytest.raises(UsageError, match="unknown noise type"):
        make_corpus(CorpusConfig(tmp_path, noise="jitter=0.1"))
    with pytest.raises(UsageError, match="--frame-folders applies to the bp4d layout"):
        make_corpus(CorpusConfig(tmp_path, layout="disfa", frame_folders=True))


def test_bp4d_frame_folders_are_numbered_like_bp4d(tmp_path: Path) -> None:
    manifest = make_corpus(_bp4d_config(tmp_path / "frames", subjects=1, tasks=("T2",), frames=12, frame_folders=True, noise="none"))
    rec = manifest.recordings[0]
    folder = manifest.root / rec["media"]
    assert rec["media"] == "BP4D/F001/T2" and rec["media_kind"] == "frames"
    first = rec["first_frame_number"]
    assert first >= 1
    assert sorted(int(p.stem) for p in folder.glob("*.jpg")) == list(range(first, first + 12))
    labels = read_bp4d([manifest.root / rec["labels"][0]], au_names=AUS).recordings[0]
    assert labels.frames.tolist() == list(range(first, first + 12))


def test_frame_folder_corpora_are_byte_identical_by_seed(tmp_path: Path) -> None:
    """Every file, frames included: the reproducible form of a corpus (docs/reproducibility.md); the
    H.264 videos are compared by their rendered pixels only (pixels_sha256), as libx264 does not always
    give the same bytes for the same frames."""
    config = dict(subjects=1, tasks=("T2",), frames=12, frame_folders=True)
    one = make_corpus(_bp4d_config(tmp_path / "one", **config))
    two = make_corpus(_bp4d_config(tmp_path / "two", **config))
    first, second = _files(one.root), _files(two.root)
    assert any(name.endswith(".jpg") for name in first) and first == second
    assert [r["pixels_sha256"] for r in one.recordings] == [r["pixels_sha256"] for r in two.recordings]


def test_disfa_layout(tmp_path: Path) -> None:
    manifest = make_corpus(CorpusConfig(tmp_path / "disfa", layout="disfa", subjects=1, tasks=("T1", "T3"), frames=30, size=96, noise="realistic", seed=1))
    rec = manifest.recordings[0]
    assert rec["id"] == "SN002" and rec["media"] == "DISFA/Videos_LeftCamera/LeftVideoSN002_comp.mp4"
    text = (manifest.root / "DISFA/ActionUnit_Labels/SN002/SN002_au12.txt").read_text().splitlines()
    assert len(text) == 30 and text[0].startswith("1,") and text[-1].startswith("30,")
    table = read_disfa([manifest.root / "DISFA/ActionUnit_Labels"])
    labels = table.recordings[0]
    assert labels.target.subject == "SN002" and labels.frames.tolist() == list(range(30))  # line k = video frame k-1
    expected = np.clip(manifest.arrays["noisy_levels"], 0, 5)
    for name in table.au_names:
        assert np.array_equal(labels.intensity[:, table.au_names.index(name)], expected[:, AUS.index(name)])


def test_casme2_micro_layout(tmp_path: Path) -> None:
    manifest = make_corpus(CorpusConfig(tmp_path / "micro", layout="casme2", subjects=2, clips=2, frames=24, size=96, seed=2))
    assert [r["id"] for r in manifest.recordings] == ["sub01_EP01_01", "sub01_EP02_01", "sub02_EP01_01", "sub02_EP02_01"]
    table = read_casme2([manifest.root / "CASME2/CASME2-coding.csv"])
    assert len(table.recordings) == 4
    arrays = manifest.arrays
    for rec, labels in zip(manifest.recordings, table.recordings):
        micro = rec["micro"]
        first = rec["first_frame_number"]
        folder = manifest.root / rec["media"]
        assert sorted(int(p.stem[3:]) for p in folder.glob("img*.jpg")) == list(range(first, first + 24))
        assert labels.target.subject == rec["subject"] and labels.target.recording == rec["recording"]
        assert labels.frames[0] == first + micro["onset"] and labels.frames[-1] == first + micro["offset"]
        assert (micro["offset"] - micro["onset"] + 1) / 25.0 < 0.5
        rows = slice(*rec["rows"])
        moving = np.nonzero(arrays["intensity"][rows].max(axis=(1, 2)) > 0)[0]
        assert moving[0] == micro["onset"] and moving[-1] == micro["offset"]
        assert arrays["levels"][rows].max() <= 2
