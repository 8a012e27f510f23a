"""bench/learnability.py: the check's recipe and run folders (CPU by default, a GPU budget kept apart)."""

from __future__ import annotations

import pytest
from bench_fixtures import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("learnability")


def test_the_check_trains_on_the_cpu_unless_told_and_keeps_gpu_runs_apart(bench, tmp_path):
    weights, model_config = bench.backbone("embedded:synthface")
    store = tmp_path / "store-x.h5"

    cpu = bench.parse_args(["--work", str(tmp_path)])
    recipe = bench.recipe_for(cpu, "auformer", "pretrained", weights, model_config, 6000, 2)
    assert (recipe.train.device, recipe.optim.max_steps, recipe.data.batch_size, recipe.train.seed) == ("cpu", 300, 32, 2)
    assert recipe.model.backbone_weights == weights
    assert bench.run_folder(cpu, store, "auformer", "pretrained", 2) == (
        tmp_path / "runs" / "store-x" / "steps300-batch32" / "auformer-pretrained" / "seed2"
    )

    gpu = bench.parse_args(["--work", str(tmp_path), "--device", "cuda:0", "--steps", "3000"])
    recipe = bench.recipe_for(gpu, "auformer", "random", weights, model_config, 6000, 0)
    assert (recipe.train.device, recipe.optim.max_steps, recipe.model.backbone_weights) == ("cuda:0", 3000, "random")
    assert bench.run_folder(gpu, store, "auformer", "random", 0).parent.parent.name == "steps3000-batch32-cuda"
