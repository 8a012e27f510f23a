"""bench/token_probe.py: a conv head on frozen block tokens finds the toy corpus's AU squares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import token_probe
from engine_fixtures import TOY_AUS, make_toy_store


def test_the_probe_reads_the_au_squares_from_the_patch_tokens_of_held_out_subjects(tmp_path, capsys):
    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=16)
    args = token_probe.parse_args([str(store), "--weights", "embedded:synthface", "--blocks", "0,1", "--steps", "60", "--threads", "1"])
    report = token_probe.run(args)
    assert report["label_set"] == "manual" and report["fold"] == 1
    assert report["faces"]["train"] + report["faces"]["test"] == 6 * 16
    assert report["train_subjects"] == 4 and report["test_subjects"] == 2
    rows = {row["block"]: row for row in report["blocks"]}
    assert sorted(rows) == [0, 1]
    assert list(rows[0]["test_auc_per_au"]) == list(TOY_AUS)
    # the squares are large and bright: the head finds them on subjects it never saw
    assert rows[0]["test_auc"] > 0.8, rows[0]
    assert all(np.isfinite(row["train_auc"]) for row in rows.values())

    token_probe.main([str(store), "--blocks", "0", "--steps", "5", "--threads", "1", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["blocks"][0]["block"] == 0 and printed["steps"] == 5


def test_blocks_out_of_range_are_refused(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5", subjects=3, frames=4)
    with pytest.raises(SystemExit, match="--blocks must be between 0 and 6"):
        token_probe.run(token_probe.parse_args([str(store), "--blocks", "0,7", "--steps", "1", "--threads", "1"]))
