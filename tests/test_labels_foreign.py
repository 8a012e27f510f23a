"""``aucli labels compare`` against another tool's CSV (OpenFace 2.0, py-feat), with fixtures written here."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from media_fixtures import write_frame_folder
from store_fixtures import build_store

from aucli.cli.main import cli
from aucli.labels.foreign import detect_foreign_format
from aucli.labels.openface import openface_columns
from aucli.labels.pyfeat import read_pyfeat

N = 20
AU1_REF = set(range(2, 8)) | set(range(12, 17))  # store frames with AU1: events [2, 8) and [12, 17)
AU1_TOOL = set(range(3, 8)) | {18}  # events [3, 8) (IoU 5/6 with the first) and [18, 19)
AU12 = set(range(5, 10))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def openface_csv(path, au1: set[int], au12: set[int], *, shift: float = 0.0) -> None:
    """An OpenFace 2.0 CSV (leading spaces in the header, frames from 1) of store frames 0..N-1."""
    lines = ["frame, face_id, timestamp, confidence, success, AU01_r, AU12_r, AU01_c, AU12_c"]
    for f in range(N):
        r1 = (1.0 + (f % 3) + shift) if f in au1 else 0.0
        r12 = (0.5 + (f % 4)) if f in au12 else 0.0
        lines.append(f"{f + 1}, 0, {f / 30:.3f}, 0.98, 1, {r1:.2f}, {r12:.2f}, {int(f in au1)}, {int(f in au12)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def store(tmp_path, runner):
    write_frame_folder(tmp_path / "data" / "S1" / "clip1", list(range(N)), size=(96, 72))
    write_frame_folder(tmp_path / "data" / "S2" / "clip2", [0, 1, 2], size=(96, 72))
    path = build_store(tmp_path / "s.h5", [tmp_path / "data"])
    openface_csv(tmp_path / "coder" / "clip1.csv", AU1_REF, AU12)
    result = runner.invoke(cli, ["labels", "import", str(path), str(tmp_path / "coder" / "clip1.csv"), "--format", "openface",
                                 "--as", "human"])
    assert result.exit_code == 0, result.output
    return path


def test_openface_csv_per_au_agreement_by_hand(runner, store, tmp_path) -> None:
    tool = tmp_path / "openface" / "clip1.csv"
    openface_csv(tool, AU1_TOOL, AU12, shift=0.0)
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool), "--source", "S1/clip1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    per_au = report["per_au"]
    assert report["other"] == "openface:clip1.csv" and per_au["au"] == ["AU1", "AU12"]
    assert per_au["n_both"] == [N, N]
    # AU1: TP 5, FP 1, FN 6, TN 8 -> F1 10/17; kappa (0.65 - 0.48) / 0.52
    assert per_au["f1"][0] == pytest.approx(10 / 17)
    assert per_au["kappa"][0] == pytest.approx((0.65 - 0.48) / 0.52)
    assert (per_au["events_reference"][0], per_au["events_other"][0], per_au["events_matched"][0]) == (2, 2, 1)
    assert per_au["event_f1"][0] == pytest.approx(0.5)
    assert per_au["f1"][1] == 1.0 and per_au["kappa"][1] == 1.0 and per_au["event_f1"][1] == 1.0
    # intensities on both sides: AU12's are identical (ICC 1); AU1 is 0 where either side is off
    assert per_au["icc"][1] == pytest.approx(1.0)
    ref_r = np.array([(1.0 + f % 3) if f in AU1_REF else 0.0 for f in range(N)])
    tool_r = np.array([(1.0 + f % 3) if f in AU1_TOOL else 0.0 for f in range(N)])
    x = np.stack([ref_r, tool_r], axis=1)
    grand = x.mean()
    bms = 2 * ((x.mean(1) - grand) ** 2).sum() / (N - 1)
    ems = (((x - grand) ** 2).sum() - 2 * ((x.mean(1) - grand) ** 2).sum() - N * ((x.mean(0) - grand) ** 2).sum()) / (N - 1)
    assert per_au["icc"][0] == pytest.approx((bms - ems) / (bms + ems))

    # without --source: the source whose stem is the CSV's stem; the table shows the ICC column
    table = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool)])
    assert table.exit_code == 0, table.output
    assert "ICC(3,1)" in table.output and "Agreement of openface:clip1.csv with human" in flat(table.output)


def test_pyfeat_csv_probabilities_and_other_faces(runner, store, tmp_path) -> None:
    header = ",FaceRectX,FaceRectY,FaceRectWidth,FaceRectHeight,FaceScore,AU01,AU12,anger,input,frame"
    lines = [header]
    for f in range(N):
        p1 = 0.9 if f in AU1_TOOL else 0.2
        p12 = 0.7 if f in AU12 else 0.1
        lines.append(f"{len(lines) - 1},10,10,50,60,0.99,{p1},{p12},0.1,clip1.mp4,{f}")
        if f == 10:  # a second, smaller face on frame 10 with AU1 on: not the subject, left out
            lines.append(f"{len(lines) - 1},70,10,20,20,0.90,0.95,0.95,0.1,clip1.mp4,{f}")
    lines.append(f"{len(lines) - 1},,,,,,,,,clip1.mp4,{N}")  # py-feat's row for a frame without a face: unknown
    tool = tmp_path / "pyfeat" / "clip1.csv"
    tool.parent.mkdir()
    tool.write_text("\n".join(lines) + "\n")
    assert detect_foreign_format(tool) == "pyfeat"
    table = read_pyfeat([tool])
    assert table.details["rows_of_other_faces"] == 1 and table.recordings[0].frames.tolist() == list(range(N + 1))
    assert table.recordings[0].occurrence[N].tolist() == [-1, -1]

    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["other"] == "pyfeat:clip1.csv" and "icc" not in report["per_au"]  # py-feat has no intensities
    assert report["per_au"]["f1"] == pytest.approx([10 / 17, 1.0])
    assert report["per_au"]["events_matched"] == [1, 1]


def test_bad_columns_and_source_errors(runner, store, tmp_path) -> None:
    bad = tmp_path / "clip1.csv"
    bad.write_text("frame,smile,brow\n0,1,0\n")
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(bad)])
    assert result.exit_code == 1
    assert flat(result.output).strip() == (
        f"Error: {bad}: unknown columns (frame, smile, brow); expected an OpenFace 2.0 CSV (frame, face_id, timestamp, "
        "confidence, success, AU01_r ..., AU01_c ...) or a py-feat CSV (frame, AU01, AU02, ... probabilities)")

    tool = tmp_path / "other.csv"
    openface_csv(tool, AU1_TOOL, AU12)
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool)])
    assert result.exit_code == 2 and "name the source other.csv was made from with --source KEY (sources: S1/clip1, S2/clip2)" in flat(result.output)
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool), "--source", "S9/x"])
    assert result.exit_code == 1 and "the store has no source 'S9/x' (its sources: S1/clip1, S2/clip2)" in flat(result.output)
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", str(tool), "--source", "S1/clip1", "--track", "3"])
    assert result.exit_code == 2 and "meets a face of source 'S1/clip1', track 3" in flat(result.output)
    result = runner.invoke(cli, ["labels", "compare", str(store), "human", "human", "--tool", "openface"])
    assert result.exit_code == 2 and "--tool apply when B is a CSV file" in flat(result.output)


def test_openface_column_order_for_predict() -> None:
    pairs = openface_columns(["AU12", "AU1", "AU24"], intensity=True)
    assert [h for _, h in pairs] == ["frame", " face_id", " timestamp", " confidence", " success", " AU01_r", " AU12_r",
                                     " AU24_r", " AU01_c", " AU12_c", " AU24_c"]
    assert [c for c, _ in pairs][5:8] == ["AU01_r", "AU12_r", "AU24_r"]
    assert [h for _, h in openface_columns(["AU45", "AU28"], intensity=False)][5:] == [" AU28_c", " AU45_c"]
