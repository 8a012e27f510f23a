"""Data-parallel training: ``aucli train`` under ``torchrun --nproc-per-node 2`` with gloo on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from engine_fixtures import make_toy_store, toy_override_args

from aucli.engine.runs import read_json
from aucli.fileio import load_tensors
from aucli.model.checkpoint import load_model_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_torchrun_two_processes_gloo(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5", subjects=6, frames=10)
    out, dump = tmp_path / "ddp", tmp_path / "parameters"
    dump.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(WORKER), str(dump), str(store), "--out", str(out), "--quiet", "--json",
        *toy_override_args(**{"optim.epochs": 2, "data.batch_size": 8, "data.num_workers": 1}),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    payload = json.loads(finished.stdout)  # rank 0 alone prints
    assert payload["folds"] == [1] and len(payload["f1_mean"]) == 4
    run = read_json(out / "run.json")
    assert run["world_size"] == 2 and run["device"] == "cpu"
    records = [json.loads(line) for line in (out / "fold1" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r["event"] == "eval"]
    assert [r["epoch"] for r in evaluations] == [1, 2]  # one writer: no line twice
    split = read_json(out / "fold1" / "split.json")
    # Both processes scored a share of the test faces; the gathered evaluation covers all of them.
    assert sum(evaluations[-1]["test"]["per_au"]["n_valid"]) > 0
    assert max(evaluations[-1]["test"]["per_au"]["n_valid"]) <= split["faces"]["test"]
    assert max(evaluations[-1]["test"]["per_au"]["n_valid"]) >= split["faces"]["test"] * 0.8
    # 2 processes x 4 faces = the global batch of 8: the same number of steps as one process.
    assert evaluations[-1]["step"] == 2 * (split["faces"]["train"] // 8)
    loaded = load_model_checkpoint(out / "fold1" / "best.safetensors")
    assert loaded.method == "auformer" and loaded.au_names == ["AU1", "AU2", "AU10L", "AU10R"]

    # After the steps every rank holds the very same model: every parameter and buffer, bit for bit.
    initial = [load_tensors(dump / f"rank{rank}-initial.safetensors") for rank in (0, 1)]
    final = [load_tensors(dump / f"rank{rank}-final.safetensors") for rank in (0, 1)]
    assert set(final[0]) == set(final[1]) == set(initial[0]) and len(final[0]) > 0
    different = [name for name in final[0] if not torch.equal(final[0][name], final[1][name])]
    assert different == [], f"the ranks disagree on {len(different)} tensor(s), e.g. {different[:3]}"
    trained = [name for name in final[0] if not torch.equal(final[0][name], initial[0][name])]
    assert any(name.startswith(("attn_experts.", "mlp_experts.")) for name in trained)  # the steps changed the experts
    assert any(name.startswith("head.") for name in trained)
