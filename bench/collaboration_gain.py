"""The gains of AUFormer's collaboration chain while it trains one fold: why a high learning rate diverges.

Expert i of each MoKE group reads expert i of the previous group (attention group of block l: the
MLP group of block l-1; MLP group of block l: the attention group of block l), unnormalised. Its
input Y + K_i passes the down-projection W_i, so the previous expert's activation g_i reaches this
expert through the map W_i U_i (U_i: the previous expert's up-projection). Along the model the 2L-1
links multiply. This script trains one fold of the learnability check (``bench/learnability.py``'s
store and recipe, with any ``-o`` overrides) and every ``--log-every`` steps prints, over the links:
the largest spectral norm of W_i U_i (over the N experts), the product of those largest norms
along the chain, and the largest up-projection norm. At zero-initialised up-projections every
gain is 0. A diverged run ends with the trainer's message, which is printed, not raised.

    python bench/collaboration_gain.py --fold 3 -o optim.lr=5e-3                                  (diverges by step 110)
    python bench/collaboration_gain.py --fold 3 -o optim.lr=5e-3 -o optim.moke_up_lr_scale=0.25   (stays below 1)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import learning  # (the store and the fixed-budget recipe of issue 4's check)


def link_gains(model: Any) -> list[float]:
    """The largest spectral norm of W_i U_i over the experts, for each of the chain's 2L-1 links, in order."""
    import torch

    gains = []
    with torch.no_grad():
        for block in range(model.depth):
            attn, mlp = model.attn_experts[block], model.mlp_experts[block]
            if block > 0:
                maps, _ = attn.coupling(model.mlp_experts[block - 1])
                gains.append(float(torch.linalg.matrix_norm(maps, ord=2).max()))
            maps, _ = mlp.coupling(attn)
            gains.append(float(torch.linalg.matrix_norm(maps, ord=2).max()))
    return gains


def chain_summary(model: Any) -> dict[str, float]:
    """Largest link gain, the product of the links' largest gains, and the largest up-projection norm."""
    import math

    import torch

    gains = link_gains(model)
    with torch.no_grad():
        ups = [float(group.up_weight.norm()) for group in [*model.attn_experts, *model.mlp_experts]]
    return {"max_gain": max(gains), "product": math.prod(gains), "max_up_norm": max(ups)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    import aucli.engine.fold as fold
    from aucli.engine import train
    from aucli.errors import TrainingDivergedError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", type=int, default=3, help="the fold to train (1..3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10, help="print the chain's gains every this many steps")
    parser.add_argument("--out", type=Path, help="run folder (default: a new one under --work/runs/collaboration_gain)")
    args, rest = parser.parse_known_args(argv)
    bench = learning.parse_args([*rest, "--seeds", str(args.seed)])  # --work, --steps, --device, -o, ...
    torch.set_num_threads(bench.threads)
    store, data = learning.make_store(bench)
    weights, model_config = learning.backbone(bench.weights)
    recipe = learning.recipe_for(bench, "auformer", "pretrained", weights, model_config, data["faces"], args.seed)
    recipe = type(recipe).from_dict({**recipe.to_dict(), "train": {**recipe.to_dict()["train"], "fold": args.fold}})
    out = args.out or bench.work / "runs" / "collaboration_gain" / f"fold{args.fold}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"

    model_ref: dict[str, Any] = {}
    build = fold.build_method_model

    def keep_model(*a: Any, **k: Any) -> Any:  # the trainer builds the model inside train(); keep a handle to read it
        model_ref["model"] = build(*a, **k)
        return model_ref["model"]

    rows: list[dict[str, float]] = []

    def on_step(step: int) -> None:
        if step % args.log_every == 0 and "model" in model_ref:
            row = {"step": step, **chain_summary(model_ref["model"])}
            rows.append(row)
            print(f"step {step:5d}  largest link gain {row['max_gain']:.3f}  chain product {row['product']:.3e}  "
                  f"largest |U| {row['max_up_norm']:.3f}", flush=True)  # fmt: skip

    print(f"fold {args.fold}, lr {recipe.optim.lr:g}, moke_up_lr_scale {recipe.optim.moke_up_lr_scale:g}, {recipe.optim.max_steps} steps: {out}",
          flush=True)  # fmt: skip
    fold.build_method_model = keep_model
    try:
        run = train(store, recipe, out=out, show_progress=False, on_step=on_step)
        outcome = {"status": "done", "test_f1": run.mean_f1(), "test_auc": run.folds[0].test.mean_auc}
        print(f"done: test F1 {100 * outcome['test_f1']:.1f}, AUC {100 * outcome['test_auc']:.1f}")
    except TrainingDivergedError as error:
        outcome = {"status": "diverged", "message": str(error)}
        print(f"diverged: {error}")
    finally:
        fold.build_method_model = build
    return {"rows": rows, **outcome}


if __name__ == "__main__":
    main()
