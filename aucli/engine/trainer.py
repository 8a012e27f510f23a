"""A training run on a corpus store with subject-independent folds (``aucli train``).

One fold (:func:`aucli.engine.fold.train_fold`) tests on one partition of the protocol's subjects;
validation subjects are drawn from the training partitions (they fit the per-AU thresholds and
select the best epoch, never the test fold). :func:`train` runs the fold of ``train.fold`` or every
fold into one run folder (:mod:`aucli.engine.runs`): the resolved recipe, ``run.json``, one folder
per fold and the per-AU summary over the folds (:mod:`aucli.engine.results`). ``resume=True``
continues a killed run exactly where its last state was saved; a run is only resumed with the
recipe it was made with (apart from :data:`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aucli.config import Recipe
from aucli.engine.corpus import prepare_corpus
from aucli.engine.distributed import setup
from aucli.engine.fold import train_fold
from aucli.engine.results import FoldResult, TrainResult, write_summary
from aucli.engine.runs import atomic_write_json, atomic_write_text, clean_partial_files, read_json
from aucli.errors import UsageError

__all__ = ["RESUMABLE_CHANGES", "prepare_run_folder", "recipe_differences", "run_has_progress", "train"]

#: Recipe keys that may change between a run and its resumption (they do not change the numbers).
RESUMABLE_CHANGES = ("train.device", "train.log_every", "train.save_every", "data.num_workers", "data.eval_batch_size", "train.fold")


def _recipe_differences(
    saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None = None, prefix: str = ""
) -> list[str]:
    if defaults is None:
        defaults = Recipe.from_dict({}).to_dict()
    keys = sorted(set(saved) | set(current))
    differences = []
    for key in keys:
        dotted = f"{prefix}.{key}" if prefix else key
        a, b = saved.get(key), current.get(key)
        default = defaults.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _recipe_differences(a, b, default if isinstance(default, dict) else {}, dotted)
        elif key not in saved and key in defaults and b == default:
            continue  # a field added to aucli after the run was made, left at its default
        elif a != b and dotted not in RESUMABLE_CHANGES:
            differences.append(f"{dotted}: {a!r} -> {b!r}")
    return differences


def recipe_differences(out: Path, recipe: Recipe) -> list[str] | None:
    """``key: saved -> current`` for each field where ``recipe`` differs from the run in ``out``
    (its ``recipe.yaml``), leaving out the resumable ones and fields added since at their default;
    None when ``out`` holds no run."""
    import yaml

    recipe_file = Path(out) / "recipe.yaml"
    if not recipe_file.exists():
        return None
    saved = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    return _recipe_differences(saved, recipe.to_dict())


#: What a run writes before its first saved state (a start that failed leaves only these).
START_FILES = ("recipe.yaml", "run.json")
FOLD_START_FILES = ("split.json", "metrics.jsonl", "metrics.csv")
#: What a run writes once it has made progress worth resuming (a saved state, a checkpoint, a finished fold).
PROGRESS_PATTERNS = ("summary.json", "fold*/state.json", "fold*/state-*.safetensors", "fold*/best.json", "fold*/best.safetensors",
                     "fold*/result.json")  # fmt: skip


def run_has_progress(out: Path) -> bool:
    """Whether the run folder ``out`` holds anything a rerun would lose: a saved state, a checkpoint, a result."""
    return any(next(out.glob(pattern), None) is not None for pattern in PROGRESS_PATTERNS)


def _clear_failed_start(out: Path) -> None:
    """Remove what a run whose start failed wrote (the recipe, run.json, fold splits and logs); nothing else."""
    for name in START_FILES:
        (out / name).unlink(missing_ok=True)
    clean_partial_files(out)
    for folder in out.glob("fold*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for name in FOLD_START_FILES:
            (folder / name).unlink(missing_ok=True)
        clean_partial_files(folder)
        if not any(folder.iterdir()):
            folder.rmdir()


def prepare_run_folder(out: Path, recipe: Recipe, resume: bool) -> bool:
    """Check or create the run folder; returns True when an earlier run is resumed.

    A folder whose run failed at its start (it holds a recipe but no saved state, checkpoint or
    result) is started again from scratch, with or without ``resume`` and whatever the recipe:
    there is nothing to continue. A folder with progress needs ``resume`` and the same recipe.
    """
    differences = recipe_differences(out, recipe)
    if differences is not None and not run_has_progress(out):
        _clear_failed_start(out)
        differences = None
    if differences is not None:
        if not resume:
            raise UsageError(f"{out} already holds a training run; add --resume to continue it, or choose another --out")
        if differences:
            raise UsageError(f"cannot resume {out} with a different recipe: " + "; ".join(differences[:6]))
        return True
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise UsageError(f"--out {out} is a folder that is not empty; choose a new folder for the run")
    out.mkdir(parents=True, exist_ok=True)
    return False


def train(
    store: str | Path,
    recipe: Recipe,
    *,
    out: str | Path,
    resume: bool = False,
    weights: str | None = None,
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    accept_modified_weights: bool | None = None,
) -> TrainResult:
    """Train ``recipe`` on ``store``: the fold of ``recipe.train.fold`` or, with ``"all"``, every fold.

    Args:
        store: the corpus store (an HDF5 file made by ``aucli preprocess``).
        recipe: the resolved recipe (:func:`aucli.config.load_recipe`).
        out: the run folder (see :mod:`aucli.engine.runs`).
        resume: continue the run in ``out`` from its last saved state (finished folds are kept).
        weights: backbone weights ("hub", "random", a file) instead of ``model.backbone_weights``.
        show_progress: rich progress bars and per-epoch lines on stderr.
        on_step: called with the global step after every optimiser step (rank 0 and others).
        accept_modified_weights: load a ``train.init_from`` checkpoint or a saved state whose tensor
            file differs from the sha256 recorded (with a warning); None follows
            :func:`aucli.model.checkpoint.accepting_modified_weights` (default: refuse).

    Under ``torchrun`` each process calls this; they train one model with DDP and rank 0 writes.
    """
    import yaml

    from aucli import __version__

    ctx = setup(recipe.train.device)
    out = Path(out)
    try:
        corpus = prepare_corpus(store, recipe)
        k = len(corpus.partitions)
        fold_spec = recipe.train.fold
        if fold_spec != "all" and not 1 <= int(fold_spec) <= k:
            raise UsageError(f"--fold {fold_spec} is out of range: the protocol has {k} folds (1..{k} or all)")
        folds = list(range(1, k + 1)) if fold_spec == "all" else [int(fold_spec)]
        resuming = False
        if ctx.is_main:
            resuming = prepare_run_folder(out, recipe, resume)
            if not resuming:
                atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
            atomic_write_json(out / "run.json", {
                "store": str(Path(store).resolve()), "label_set": corpus.label_set, "au_columns": corpus.columns,
                "protocol": recipe.train.protocol, "partitions": corpus.partitions, "folds": folds,
                "method": recipe.train.method, "world_size": ctx.world_size, "device": str(ctx.device),
                "aucli": __version__, "torch": torch.__version__, "faces": len(corpus.dataset),
            })
        ctx.barrier()
        if ctx.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        init_model = _init_from(recipe, accept_modified_weights)
        results = []
        for fold in folds:
            folder = out / f"fold{fold}"
            finished = folder / "result.json"
            if resume and finished.exists():
                results.append(FoldResult.from_dict(read_json(finished), folder))
                continue
            result = train_fold(corpus, fold, recipe, folder=folder, ctx=ctx, resume=resume, weights=weights,
                                show_progress=show_progress, on_step=on_step, init_model=init_model,
                                accept_modified_weights=accept_modified_weights)
            results.append(result)
            run = TrainResult(out, recipe, list(recipe.model.au_names), corpus.label_set, results)
            if ctx.is_main:
                write_summary(run)
        return TrainResult(out, recipe, list(recipe.model.au_names), corpus.label_set, results)
    finally:
        ctx.close()


def _init_from(recipe: Recipe, accept_modified_weights: bool | None) -> Callable[[nn.Module], None] | None:
    """The ``init_model`` hook of ``train.init_from`` (checked before any fold trains), or None."""
    if not recipe.train.init_from:
        return None
    from aucli.model.checkpoint import init_from_checkpoint, read_checkpoint_metadata
    from aucli.model.registry import resolve_checkpoint

    if recipe.train.method != "auformer":
        raise UsageError(f"train.init_from starts AUFormer from a checkpoint; train.method is {recipe.train.method!r}")
    meta_path = resolve_checkpoint(recipe.train.init_from)
    read_checkpoint_metadata(meta_path)
    return lambda model: init_from_checkpoint(model, meta_path, accept_modified_weights=accept_modified_weights)
