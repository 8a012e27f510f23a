"""bench/gpu_checks.py report: the JSON and summary of a GPU run, whatever steps failed."""

from __future__ import annotations

import json
from pathlib import Path

import gpu_checks


def write_work(work: Path) -> None:
    work.mkdir()
    (work / "steps.tsv").write_text("env\t0\t6.1\t60\nmoke\t124\t120.0\t120\ntrain\t0\t48.2\t150\npredict\tskipped\t\t0\n")
    (work / "env.json").write_text(json.dumps({"torch": "2.11.0", "torch_cuda": "13.0", "python": "3.12.3", "cpu_count": 16,
                                               "gpu": {"name": "NVIDIA H100 80GB HBM3"}}))  # fmt: skip
    train = {
        "backbone": "vit_base_patch16_224.augreg_in21k", "backbone_weights": "random", "aus": 12, "precision": "bf16 autocast",
        "batch": 64, "workers": 14, "steps": 50, "loader_only": {"images_per_s": 5000.0}, "epoch_end_s": 7.5,
        "train": {"images_per_s": 900.0, "step_ms": 71.1, "timed_steps": 45, "trainer_logged_img_per_s": 700.0,
                  "peak_memory_gib": 10.5, "peak_reserved_gib": 12.0},
    }  # fmt: skip
    (work / "train.json").write_text(json.dumps(train))
    (work / "predict.json").write_text('{"model_only": ')  # cut off by a timeout


def test_report_reads_steps_outputs_and_broken_files(tmp_path):
    module = gpu_checks
    work = tmp_path / "work"
    write_work(work)
    out = tmp_path / "gpu_checks.json"

    lines = module.report(work, out, "gpu", "cuda", 390, started=0.0)

    data = json.loads(out.read_text())
    assert [s["name"] for s in data["steps"]] == ["env", "moke", "train", "predict"]
    assert [s["exit"] for s in data["steps"]] == [0, 124, 0, "skipped"]
    assert [s["timed_out"] for s in data["steps"]] == [False, True, False, False]
    assert data["results"]["moke"] is None
    assert data["results"]["predict"]["unreadable"].startswith("predict.json:")
    assert data["summary"] == lines
    assert lines[0].startswith("aucli GPU checks (gpu mode, device cuda): NVIDIA H100 80GB HBM3; torch 2.11.0 (CUDA 13.0)")
    assert "  moke        TIMEOUT     120.0      120" in lines
    assert "  predict     skipped         -        -" in lines
    train_line = next(line for line in lines if line.startswith("train    :"))
    assert "900.0 img/s steady (71.1 ms/step over 45 steps of 50)" in train_line
    assert "peak 10.5 GiB allocated (12.0 reserved)" in train_line
    assert lines[-1] == "FAILED or skipped: moke, predict (details in gpu_checks.txt)"


def test_report_of_an_empty_run(tmp_path):
    module = gpu_checks
    work = tmp_path / "work"
    work.mkdir()
    lines = module.report(work, tmp_path / "r.json", "smoke", "cpu", 540, started=0.0)
    assert lines[0].startswith("aucli GPU checks (smoke mode, device cpu): no GPU")
    assert lines[-1] == "no step ran"
