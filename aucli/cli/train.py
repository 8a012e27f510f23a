"""``aucli train``: train AUFormer (or a baseline) on a store with subject-independent folds."""

from __future__ import annotations

import click

from aucli.cli.options import RECIPE, accept_modified_weights_option, device_option, echo_json, json_option, store_argument

METHOD_CHOICES = ("auformer", "linear", "adaptformer", "lora", "full")


def parse_fold(value: str | None) -> int | str | None:
    """``"all"`` or a positive fold number (``None`` keeps the recipe's)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "all":
        return "all"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(f"expected a fold number (1, 2, ...) or 'all', got {value!r}", param_hint="--fold")


@click.command("train")
@store_argument()
@click.option("--recipe", "recipe_path", type=RECIPE, help="Recipe YAML, or a packaged recipe: bp4d, disfa, synthetic (defaults: every field's default).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (created; --resume continues it).")
@click.option("--fold", "--folds", "fold", help="Fold to train (1, 2, ...) or all.  [default: the recipe's train.fold]")
@click.option("--method", type=click.Choice(METHOD_CHOICES), help="auformer, or a baseline on the same backbone.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last saved state.")
@click.option("--override", "-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe field, e.g. -o loss.margin=0.1 (repeatable).")
@click.option("--labels", help="Label set to train on.  [default: the store's only set]")
@click.option("--epochs", type=click.IntRange(min=1), help="optim.epochs")
@click.option("--max-steps", type=click.IntRange(min=1), help="optim.max_steps: stop after this many optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="data.batch_size (global, over all processes).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="optim.lr")
@click.option("--workers", type=click.IntRange(min=0), help="data.num_workers: DataLoader processes.")
@click.option("--seed", type=click.IntRange(min=0), help="train.seed")
@click.option("--train-fraction", type=click.FloatRange(min=0, max=1, min_open=True), help="train.train_fraction: share of training subjects.")
@click.option("--backbone-weights", help="model.backbone_weights: a local weight file, 'hub' or 'random'.")
@click.option("--init-from", help="train.init_from: start AUFormer from this checkpoint (path or registered name) and fine-tune it.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@json_option
@accept_modified_weights_option
def train(store, recipe_path, out, fold, method, resume, overrides, labels, epochs, max_steps, batch_size, lr, workers, seed,
          train_fraction, backbone_weights, init_from, device, quiet, as_json) -> None:
    """Train on STORE's labelled faces with subject-independent folds.

    Each fold tests on one partition of subjects (BP4D / DISFA: the official 3-fold partitions);
    validation subjects drawn from the training partitions fit per-AU thresholds and pick the best
    epoch. Metrics (per-AU F1 and AUC) go to OUT/foldK/metrics.jsonl and metrics.csv, the best
    checkpoint to OUT/foldK/best.safetensors + best.json. Precedence: field defaults < --recipe <
    --override < the dedicated flags. Run under `torchrun --nproc-per-node K -m aucli train ...`
    for data-parallel training (only rank 0 writes).

    \b
    Examples:
      aucli train synth.h5 --recipe recipes/synthetic.yaml --out runs/synth
      aucli train bp4d.h5 --recipe recipes/bp4d.yaml --fold all --out runs/bp4d
      aucli train bp4d.h5 --recipe recipes/bp4d.yaml --method lora --train-fraction 0.3 --out runs/lora30
      aucli train bp4d.h5 --recipe recipes/bp4d.yaml --out runs/bp4d --resume
      aucli train synth.h5 --recipe recipes/synthetic.yaml --init-from synthface-auformer --out runs/tuned
      torchrun --nproc-per-node 4 -m aucli train bp4d.h5 --recipe recipes/bp4d.yaml --out runs/ddp
    """
    from aucli.config import load_recipe
    from aucli.console import console
    from aucli.engine.trainer import train as run_training

    flags = {
        "train.fold": parse_fold(fold),
        "train.method": method,
        "data.labels": labels,
        "optim.epochs": epochs,
        "optim.max_steps": max_steps,
        "data.batch_size": batch_size,
        "optim.lr": lr,
        "data.num_workers": workers,
        "train.seed": seed,
        "train.train_fraction": train_fraction,
        "model.backbone_weights": backbone_weights,
        "train.init_from": init_from,
        "train.device": device if device != "auto" else None,
    }
    recipe = load_recipe(recipe_path, overrides, flags)
    result = run_training(store, recipe, out=out, resume=resume, show_progress=not quiet and not as_json)
    if setup_rank() != 0:
        return
    if as_json:
        echo_json({"run": str(result.folder), **result.summary(), "folds_detail": [f.to_dict() for f in result.folds]})
        return
    console.print(result.table())
    console.print(f"Run folder: {result.folder}  (best checkpoint per fold: foldK/best.safetensors)", highlight=False)


def setup_rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    import os

    return int(os.environ.get("RANK", "0"))
