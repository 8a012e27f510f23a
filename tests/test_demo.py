"""`aucli demo`: the whole job (synth -> preprocess -> train -> predict) on a tiny configuration."""

from __future__ import annotations

import json

from aucli.cli.main import cli
from aucli.engine.predict_tables import read_table
from aucli.store import open_store


def test_demo_runs_end_to_end_and_resumes(runner, tmp_path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--subjects", "3", "--frames", "12", "--tasks", "T1", "--epochs", "1", "--quiet", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["frames"] == 36 and summary["faces"] >= 33  # CenterFace finds (nearly) every rendered face
    with open_store(summary["store"]) as store:
        assert {"synth", "synth_clean"} <= set(store.label_sets())
    tables = sorted((out / "predictions").rglob("*.csv"))
    assert len(tables) == summary["predicted_videos"] == 1
    table = read_table(tables[0])
    assert len(table["frame"]) == 12 and "AU12_p" in table and "AU12_c" in table
    assert 0.0 <= summary["test_mean_f1"] <= 1.0

    again = runner.invoke(cli, args)  # everything is kept: the second run only resumes
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["checkpoint"] == summary["checkpoint"]


def test_demo_refuses_too_few_subjects(runner, tmp_path) -> None:
    result = runner.invoke(cli, ["demo", "--out", str(tmp_path / "d"), "--subjects", "2"])
    assert result.exit_code == 2
    assert "2 is not in the range x>=3" in result.output
