"""Training speed: the real trainer (``aucli train``) on a store, timed from outside; img/s and peak memory.

    python bench/train_speed.py STORE [--recipe bp4d] [-o KEY=VALUE ...] [--batch N]
                                [--workers N] [--device auto] [--epochs 1] [--skip 5] [--threads 2]
                                [--no-loader-pass] [--json]

The recipe (default: the packaged ``bp4d``: ViT-B/16 at 224 px, the 12 BP4D AUs, MoKE d = 8) is
resolved as ``aucli train`` does, with random backbone weights, the balanced protocol (any subject
names), fold 1 and one epoch unless ``-o`` says otherwise. The script then, in one process:

1. loader only (unless ``--no-loader-pass``): one epoch of the training DataLoader the trainer
   builds (:class:`aucli.engine.data.AugmentedFaces`, ``EpochBatchSampler``, ``make_loader``,
   same workers), no model; images/s. Training cannot be faster than this;
2. training: :func:`aucli.engine.trainer.train` itself (bf16 autocast on GPU with
   ``train.precision: auto``, fp32 on CPU), with an ``on_step`` hook that synchronises the device
   after step ``--skip`` and after the last step. Steady-state images/s counts the steps in
   between (model build, worker start-up, the first steps' kernel selection and optimiser-state
   allocation are outside); peak memory is ``torch.cuda.max_memory_allocated`` at the last training
   step (on CPU: the process's peak resident set size, a rough figure);
3. what the epoch's end costs: evaluation of the validation and test subjects and the checkpoint
   writes, the seconds from the last step to the return of ``train``.

The trainer's own ``img_per_s`` (metrics.jsonl, averaged from the epoch's start) is reported for
comparison. Figures mean something only on an otherwise idle machine.

GPU: ``python bench/train_speed.py synth.h5 --device cuda --batch 64 --workers 14``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Overrides applied before the user's ``-o``: a speed run needs no weights file and no BP4D names.
BASE_OVERRIDES = {
    "model.backbone_weights": "random",
    "train.protocol": "balanced",
    "train.fold": 1,
    "optim.epochs": 1,
    "train.log_every": 10,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", help="an HDF5 store with one label set (aucli preprocess / aucli synth --store)")
    parser.add_argument("--recipe", default="bp4d", help="recipe YAML or packaged recipe name [default: bp4d]")
    parser.add_argument(
        "-o", "--override", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="recipe field (repeatable)"
    )
    parser.add_argument("--batch", type=int, default=None, help="data.batch_size [default: the recipe's]")
    parser.add_argument("--workers", type=int, default=None, help="data.num_workers [default: the recipe's]")
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu, cuda, cuda:1")
    parser.add_argument("--epochs", type=int, default=None, help="optim.epochs [default: 1]")
    parser.add_argument("--skip", type=int, default=5, help="steps before the timed span (start-up, kernel selection)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of the main process")
    parser.add_argument("--no-loader-pass", action="store_true", help="skip the loader-only epoch")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser.parse_args(argv)


def resolve_recipe(args: argparse.Namespace):
    from aucli.config import load_recipe

    flags = {"data.batch_size": args.batch, "data.num_workers": args.workers, "train.device": args.device, "optim.epochs": args.epochs}
    overrides = [f"{key}={value}" for key, value in BASE_OVERRIDES.items()] + list(args.overrides)
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    return load_recipe(args.recipe, overrides)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_pass(corpus, train_idx, recipe, img_size: int, pin_memory: bool, skip: int) -> dict:
    """One epoch of the trainer's training loader without a model: images/s after ``skip`` batches."""
    from aucli.engine.data import AugmentedFaces, EpochBatchSampler, FaceTransform, make_loader

    faces = AugmentedFaces(corpus.dataset, FaceTransform.from_config(recipe.data, img_size, train=True), train_idx)
    sampler = EpochBatchSampler(len(faces), recipe.data.batch_size, seed=recipe.train.seed)
    loader = make_loader(faces, sampler, num_workers=recipe.data.num_workers, pin_memory=pin_memory)
    started = time.perf_counter()
    start, images, batches = None, 0, 0
    for batch in loader:
        batches += 1
        if batches == skip:
            start = time.perf_counter()
        elif batches > skip:
            images += int(batch["image"].shape[0])
    end = time.perf_counter()
    del loader
    result = {"batches": batches, "seconds": round(end - started, 3)}
    if start is not None and images:
        result["images_per_s"] = round(images / (end - start), 1)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import timm
    import torch

    torch.set_num_threads(args.threads)
    from aucli.engine.data import EpochBatchSampler
    from aucli.engine.distributed import resolve_device
    from aucli.engine.corpus import fold_indices, prepare_corpus
    from aucli.engine.trainer import train
    from aucli.errors import UsageError
    from aucli.model import build_model

    recipe = resolve_recipe(args)
    device = resolve_device(recipe.train.device)  # the device the trainer's set-up picks (one process)
    cuda = device.type == "cuda"
    precision = recipe.train.precision
    bf16 = precision == "bf16" or (precision == "auto" and cuda)

    if recipe.train.fold == "all":
        raise UsageError("train_speed times one fold; give -o train.fold=N (default 1)")
    if args.skip < 1:
        raise UsageError(f"--skip must be at least 1 (the timed span starts after that step), got {args.skip}")
    corpus = prepare_corpus(args.store, recipe)
    fold = int(recipe.train.fold)
    _, train_idx, val_idx, test_idx = fold_indices(corpus, fold, recipe)
    sampler = EpochBatchSampler(train_idx.size, recipe.data.batch_size, seed=recipe.train.seed)
    total_steps = recipe.optim.max_steps or recipe.optim.epochs * sampler.batches_per_epoch
    if total_steps <= args.skip:
        raise UsageError(
            f"{total_steps} training steps ({train_idx.size} faces at batch {sampler.global_batch}, {recipe.optim.epochs} epoch(s)) "
            f"leave none to time after --skip {args.skip}; use a bigger store, more epochs or a smaller --skip"
        )
    img_size = int(build_model(recipe.model, weights="random", device="meta").data_config["input_size"][-1])

    figures: dict = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "backbone": recipe.model.backbone,
        "backbone_overrides": dict(recipe.model.backbone_overrides),
        "backbone_weights": recipe.model.backbone_weights,
        "method": recipe.train.method,
        "img_size": img_size,
        "aus": len(recipe.model.au_names),
        "batch": sampler.global_batch,
        "workers": recipe.data.num_workers,
        "torch_threads": torch.get_num_threads(),
        "faces": {"train": int(train_idx.size), "validation": int(val_idx.size), "test": int(test_idx.size)},
        "steps": total_steps,
        "skip": args.skip,
    }
    if not args.no_loader_pass:
        figures["loader_only"] = loader_pass(corpus, train_idx, recipe, img_size, cuda, args.skip)

    marks: dict[str, float] = {}
    peaks: dict[str, int] = {}

    def on_step(step: int) -> None:
        marks["last_step"] = step
        if step == 1:
            marks["first_step"] = time.perf_counter()
        if step == args.skip:
            synchronize(device)
            marks["start"] = time.perf_counter()
        if step == total_steps:
            synchronize(device)
            marks["end"] = time.perf_counter()
            if cuda:
                peaks["allocated"] = torch.cuda.max_memory_allocated(device)
                peaks["reserved"] = torch.cuda.max_memory_reserved(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="aucli-train-speed-") as tmp:
        out = Path(tmp) / "run"
        started = time.perf_counter()
        result = train(args.store, recipe, out=out, show_progress=False, on_step=on_step)
        finished = time.perf_counter()
        logged = [json.loads(line) for line in (out / f"fold{fold}" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if "end" not in marks:
        raise RuntimeError(f"the trainer stopped after step {marks.get('last_step')}, not at step {total_steps} as this script computed")
    train_lines = [r for r in logged if r.get("event") == "train"]
    timed_steps = total_steps - args.skip
    seconds = marks["end"] - marks["start"]
    training = {
        "timed_steps": timed_steps,
        "timed_images": timed_steps * sampler.global_batch,
        "seconds": round(seconds, 3),
        "images_per_s": round(timed_steps * sampler.global_batch / seconds, 1),
        "step_ms": round(1000 * seconds / timed_steps, 1),
        "start_to_first_step_s": round(marks["first_step"] - started, 2),
        "trainer_logged_img_per_s": round(train_lines[-1]["img_per_s"], 1) if train_lines else None,
    }
    if cuda:
        training["peak_memory_gib"] = round(peaks["allocated"] / 2**30, 2)
        training["peak_reserved_gib"] = round(peaks["reserved"] / 2**30, 2)
        training["peak_memory_with_eval_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    else:
        training["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    figures["train"] = training
    figures["epoch_end_s"] = round(finished - marks["end"], 2)
    figures["total_s"] = round(finished - started, 2)
    fold_result = result.folds[0]
    figures["trainable_parameters"] = fold_result.parameters.get("trainable")
    test_f1 = float(fold_result.test.mean_f1)
    figures["test_mean_f1"] = round(test_f1, 4) if math.isfinite(test_f1) else None  # a sanity check, not a result (one epoch)
    losses = [float(r["loss"]) for r in train_lines]
    figures["train_loss_logged"] = [round(v, 4) for v in losses]
    if not all(math.isfinite(v) for v in losses):
        figures["warning"] = "a logged training loss is not finite"

    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"AUFormer {figures['backbone']} @ {img_size}px ({figures['backbone_weights']} weights), {figures['aus']} AUs, "
        f"{figures['method']}; {figures['device']} ({figures['device_name']}), {figures['precision']}, "
        f"batch {figures['batch']}, {figures['workers']} loader workers, torch {figures['torch']}"
    )
    faces = figures["faces"]
    print(f"fold 1: {faces['train']} training faces, {total_steps} steps; timed steps {args.skip + 1}..{total_steps}")
    if "loader_only" in figures and "images_per_s" in figures["loader_only"]:
        print(f"loader only : {figures['loader_only']['images_per_s']:8.1f} images/s  (no model, same workers)")
    memory = (
        f"peak GPU memory {training['peak_memory_gib']} GiB allocated, {training['peak_reserved_gib']} GiB reserved"
        if cuda
        else f"peak RSS {training['peak_rss_gib']} GiB"
    )
    print(f"training    : {training['images_per_s']:8.1f} images/s  ({training['step_ms']} ms/step; {memory})")
    print(
        f"trainer log : {training['trainer_logged_img_per_s']} img/s (from the epoch's start); first step after "
        f"{training['start_to_first_step_s']} s; evaluation + checkpoints {figures['epoch_end_s']} s; total {figures['total_s']} s"
    )
    if figures.get("warning"):
        print(f"WARNING: {figures['warning']}")


if __name__ == "__main__":
    from aucli.errors import AucliError

    try:
        main()
    except AucliError as error:  # a user's mistake (store, recipe): one line, as the CLI prints it
        sys.exit(f"Error: {error}")
