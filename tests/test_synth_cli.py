"""``aucli synth``: a tiny corpus end to end (JSON summary, contact sheet, straight into a store) and
plain one-line errors for bad options."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from aucli.cli.main import cli


def test_synth_json_contact_sheet_and_store(runner, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    sheet = tmp_path / "sheet.png"
    store = tmp_path / "corpus.h5"
    args = ["synth", "--out", str(out), "--subjects", "1", "--tasks", "1", "--frames", "12", "--size", "96", "--noise", "light"]
    result = runner.invoke(cli, [*args, "--contact-sheet", str(sheet), "--store", str(store), "--detector", "none", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{") :])
    assert payload["recordings"] == 1 and payload["rendered"] == 1 and payload["frames"] == 12 and payload["layout"] == "bp4d"
    assert payload["noise"]["mix"] == "boundary=0.05,missed=0.02,confusion=0.02,flip=0.001"
    assert (out / "videos" / "F001_T1.mp4").is_file() and (out / "manifest.json").is_file()
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 15 * 128  # one row per rendered AU
    assert payload["store"]["faces"] == 12

    from aucli.store.store import CorpusStore

    with CorpusStore.open(store, "r") as opened:
        assert {"synth", "synth_clean"} <= set(opened.label_sets())

    # the same command again resumes: nothing is rendered twice, the table is printed
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "AU12" in again.output and "rendered 0 recording(s)" in again.output and "kept 1 from an earlier run" in again.output


def test_synth_errors_are_one_line(runner, tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    result = runner.invoke(cli, ["synth", "--out", out, "--noise", "flipp=0.1"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: unknown noise type 'flipp'; did you mean 'flip'? (types: boundary, missed, confusion, flip, uncoded, noapex)"
    result = runner.invoke(cli, ["synth", "--out", out, "--micro", "--layout", "disfa"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: --micro makes a CASME II layout; it cannot be combined with --layout disfa"
    result = runner.invoke(cli, ["synth", "--out", out, "--size", "101"])
    assert result.exit_code == 2 and "--size must be an even number of pixels, at least 64, got 101" in result.output
    result = runner.invoke(cli, ["synth", "--out", out, "--tasks", "T1,T9"])
    assert result.exit_code == 2 and "unknown task(s) T9" in result.output
    assert not Path(out).exists()
