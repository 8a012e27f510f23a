"""Training on a corpus store with subject-independent folds (``aucli train``).

One fold: the test subjects are one partition of the protocol; validation subjects are drawn from
the training partitions (they fit the per-AU thresholds and select the best epoch, never the test
fold); ``train_fraction`` keeps a seeded share of the remaining training subjects. The model
(:func:`aucli.model.methods.build_method_model`: AUFormer or a baseline) is trained with AdamW,
a linear warm-up then a cosine decay per step, gradient clipping and the AUFormer loss (MDWA + WDI +
expert supervision; baselines have no expert term), in bf16 autocast on GPU and fp32 on CPU.

After each evaluated epoch the model scores the validation and test subjects: per-AU F1 from
counts summed over the fold, mean F1 and AUC, at thresholds fitted on the validation subjects
(``train.thresholds: fitted``) and at 0.5. The best epoch (by validation) is kept as a checkpoint.
The state is saved after every epoch (and every ``train.save_every`` steps); ``resume=True``
continues a killed run exactly where its last state was saved.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.config import Recipe
from aucli.console import console, err_console, progress
from aucli.engine.data import (
    AugmentedFaces,
    EpochBatchSampler,
    FaceTransform,
    ShardBatchSampler,
    label_columns,
    make_loader,
    normalize,
    resolve_label_set,
    store_dataset,
)
from aucli.engine.distributed import DistContext, setup, unwrap
from aucli.engine.evaluate import autocast_for, predict_logits, sigmoid
from aucli.engine.runs import (
    MetricsLog,
    atomic_write_json,
    atomic_write_text,
    clean_partial_files,
    json_safe,
    load_state,
    read_json,
    restore_optimizer,
    restore_rng_state,
    save_state,
    save_tensors,
    weights_from_state,
    write_metrics_csv,
)
from aucli.errors import StoreError, TrainingDivergedError, UsageError
from aucli.losses import AUFormerLoss, occurrence_rates
from aucli.metrics import MetricReport, evaluate, fit_thresholds
from aucli.model.checkpoint import save_checkpoint
from aucli.model.methods import build_method_model
from aucli.protocols import FoldSplit, fold_split, protocol_partitions

__all__ = ["Corpus", "FoldResult", "TrainResult", "prepare_corpus", "fold_indices", "lr_at", "train", "train_fold"]

#: AUFormer's MoKE up-projections (parameter names), trained at ``lr x optim.moke_up_lr_scale``.
MOKE_GROUPS = ("attn_experts.", "mlp_experts.")
MOKE_UP_PROJECTIONS = (".up_weight", ".up_bias")
#: Recipe keys that may change between a run and its resumption (they do not change the numbers).
RESUMABLE_CHANGES = ("train.device", "train.log_every", "train.save_every", "data.num_workers", "data.eval_batch_size", "train.fold")


# ------------------------------------------------------------------------------------ corpus
@dataclass
class Corpus:
    """The labelled faces of a store, aligned to the model's AUs, and the protocol's partitions.

    ``splits``: explicit subjects of some folds (fold number -> :class:`FoldSplit`), used instead
    of the partitions for those folds (a final model whose validation subjects are also its
    "test"). ``train_repeats``: ``(len(dataset),)`` times each face appears in a training epoch
    (0 leaves it out of training; validation and test always see every face once); None: once.
    """

    store: Path
    label_set: str
    columns: dict[str, str]
    dataset: Any
    subjects: np.ndarray
    partitions: tuple[tuple[str, ...], ...]
    splits: dict[int, FoldSplit] | None = None
    train_repeats: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels


def prepare_corpus(store: str | Path, recipe: Recipe) -> Corpus:
    """Resolve the label set and AU columns, read the labelled rows and split subjects into partitions."""
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        label_set = resolve_label_set(opened, recipe.data.labels)
        label_aus = opened.read_labels(label_set).au_names
    columns = label_columns(recipe.model.au_names, label_aus, recipe.data.au_map, require_all=True)
    dataset = store_dataset(store, labels=label_set, label_aus=list(columns.values()))
    if len(dataset) == 0:
        raise StoreError(f"label set {label_set!r} of {store} labels no face for the AUs {', '.join(columns.values())}")
    subjects = np.asarray(dataset.subjects, dtype=object)
    protocol = recipe.train.protocol
    partitions = protocol_partitions(protocol, sorted(set(subjects.tolist())), n_folds=recipe.train.n_folds, seed=recipe.train.seed)
    return Corpus(Path(store), label_set, columns, dataset, subjects, partitions)


def fold_indices(corpus: Corpus, fold: int, recipe: Recipe) -> tuple[FoldSplit, np.ndarray, np.ndarray, np.ndarray]:
    """The fold's subjects (after ``train_fraction``) and dataset positions of train, validation, test."""
    if corpus.splits is not None and fold in corpus.splits:
        split = corpus.splits[fold]
    else:
        split = fold_split(corpus.partitions, fold, validation_fraction=recipe.train.validation_fraction, seed=recipe.train.seed)
    fraction = recipe.train.train_fraction
    if fraction < 1.0:
        keep = max(1, round(len(split.train) * fraction))
        chosen = random.Random(recipe.train.seed * 7919 + fold).sample(sorted(split.train), keep)
        split = replace(split, train=tuple(sorted(chosen)))
    train = np.flatnonzero(np.isin(corpus.subjects, list(split.train)))
    if corpus.train_repeats is not None:
        train = np.repeat(train, corpus.train_repeats[train])
    validation = np.flatnonzero(np.isin(corpus.subjects, list(split.validation)))
    test = np.flatnonzero(np.isin(corpus.subjects, list(split.test)))
    if train.size == 0:
        raise UsageError(f"fold {fold} has no labelled training face; check the label set and the protocol")
    if test.size == 0:
        raise UsageError(f"fold {fold} has no labelled test face; check the label set and the protocol")
    return split, train, validation, test


# ------------------------------------------------------------------------------------ results
@dataclass
class FoldResult:
    """One fold's outcome: reports at the best epoch (selected on validation subjects)."""

    fold: int
    split: FoldSplit
    best_epoch: int
    best_step: int
    test: MetricReport
    test_at_half: MetricReport
    validation: MetricReport | None
    thresholds: np.ndarray
    checkpoint: Path
    folder: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "subjects": self.split.subjects(),
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "thresholds": [float(t) for t in self.thresholds],
            "checkpoint": str(self.checkpoint),
            "parameters": self.parameters,
            "wall_time_s": self.wall_time_s,
            "test": self.test.to_dict(),
            "test_at_0.5": self.test_at_half.to_dict(),
            "validation": self.validation.to_dict() if self.validation is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path) -> FoldResult:
        subjects = data["subjects"]
        split = FoldSplit(data["fold"], tuple(subjects["train"]), tuple(subjects["validation"]), tuple(subjects["test"]))
        return cls(
            fold=data["fold"], split=split, best_epoch=data["best_epoch"], best_step=data["best_step"],
            test=MetricReport.from_dict(data["test"]), test_at_half=MetricReport.from_dict(data["test_at_0.5"]),
            validation=MetricReport.from_dict(data["validation"]) if data.get("validation") else None,
            thresholds=np.asarray(data["thresholds"], dtype=np.float64), checkpoint=Path(data["checkpoint"]), folder=folder,
            parameters=data.get("parameters", {}), wall_time_s=float(data.get("wall_time_s", 0.0)),
        )


@dataclass
class TrainResult:
    """All folds of a run; :meth:`summary` gives per-AU test F1 mean and spread over folds."""

    folder: Path
    recipe: Recipe
    au_names: list[str]
    label_set: str
    folds: list[FoldResult]

    def f1_matrix(self) -> np.ndarray:
        """(n_folds, n_aus) test F1 of each fold (NaN where undefined)."""
        return np.stack([f.test.f1 for f in self.folds]) if self.folds else np.zeros((0, len(self.au_names)))

    def mean_f1(self) -> float:
        """Mean over folds of each fold's mean F1 over AUs (the field's headline number)."""
        values = [f.test.mean_f1 for f in self.folds if np.isfinite(f.test.mean_f1)]
        return float(np.mean(values)) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        f1 = self.f1_matrix()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(f1, axis=0) if len(f1) else np.full(len(self.au_names), np.nan)
            std = np.nanstd(f1, axis=0) if len(f1) else np.full(len(self.au_names), np.nan)
        fold_means = [f.test.mean_f1 for f in self.folds]
        return {
            "au_names": self.au_names,
            "folds": [f.fold for f in self.folds],
            "f1": f1.tolist(),
            "f1_mean": mean.tolist(),
            "f1_std": std.tolist(),
            "mean_f1_per_fold": fold_means,
            "mean_f1": self.mean_f1(),
            "mean_f1_std": float(np.std(fold_means)) if fold_means else float("nan"),
            "mean_auc_per_fold": [f.test.mean_auc for f in self.folds],
            "method": self.recipe.train.method,
            "trainable_parameters": self.folds[0].parameters.get("trainable") if self.folds else None,
        }

    def table(self):
        """Per-AU test F1 (%) of each fold, their mean and standard deviation."""
        from rich.table import Table

        folds = f"{len(self.folds)} folds" if len(self.folds) > 1 else f"fold {self.folds[0].fold}" if self.folds else "no fold"
        table = Table(title="Test F1 (%) per AU", caption=f"{self.recipe.train.method}, {folds}, label set {self.label_set}")
        table.add_column("AU")
        for fold in self.folds:
            table.add_column(f"fold {fold.fold}", justify="right")
        if len(self.folds) > 1:
            table.add_column("mean", justify="right", style="bold")
            table.add_column("std", justify="right")
        summary = self.summary()
        for i, name in enumerate(self.au_names):
            cells = [_pct(f.test.f1[i]) for f in self.folds]
            if len(self.folds) > 1:
                cells += [_pct(summary["f1_mean"][i]), _pct(summary["f1_std"][i])]
            table.add_row(name, *cells)
        table.add_section()
        cells = [_pct(f.test.mean_f1) for f in self.folds]
        if len(self.folds) > 1:
            cells += [_pct(summary["mean_f1"]), _pct(summary["mean_f1_std"])]
        table.add_row("mean", *cells, style="bold")
        return table


def _pct(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


# ------------------------------------------------------------------------------------ optimisation
def lr_at(step: int, *, lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to ``lr * min_lr_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress_ = min(max(step - warmup_steps, 0) / span, 1.0)
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress_)))


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on 1-D tensors and position/class tokens; learning rates scaled for the
    fine-tuned backbone (``optim.backbone_lr_scale``) and for AUFormer's MoKE up-projections (``optim.moke_up_lr_scale``)."""
    optim = recipe.optim
    inner = unwrap(model)
    skip = {f"backbone.{name}" for name in getattr(inner.backbone, "no_weight_decay", lambda: set())()}
    # kind 0: trained at lr; 1: MoKE up-projections at a scaled lr; 2: the fine-tuned backbone. The order of
    # the groups is part of a saved optimiser state, so kinds 0 and 2 keep the order they always had.
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    scales = {0: 1.0, 1: optim.moke_up_lr_scale, 2: optim.backbone_lr_scale}
    for name, parameter in inner.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("backbone.") and "lora_" not in name:
            kind = 2
        elif optim.moke_up_lr_scale != 1.0 and name.startswith(MOKE_GROUPS) and name.endswith(MOKE_UP_PROJECTIONS):
            kind = 1
        else:
            kind = 0
        decay = parameter.ndim > 1 and name not in skip
        groups.setdefault((kind, decay), []).append(parameter)
    result = []
    for (kind, decay), parameters in sorted(groups.items()):
        scale = scales[kind]
        result.append({"params": parameters, "weight_decay": optim.weight_decay if decay else 0.0, "lr_scale": scale, "lr": optim.lr * scale})
    return result


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------ one fold
def train_fold(
    corpus: Corpus,
    fold: int,
    recipe: Recipe,
    *,
    folder: Path,
    ctx: DistContext,
    resume: bool = False,
    weights: str | None = None,
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    init_model: Callable[[nn.Module], None] | None = None,
) -> FoldResult:
    """Train and evaluate one fold; files go to ``folder`` (rank 0 only). See the module docstring.

    ``init_model``: called with the freshly built model (on its device) before the optimiser is
    made: it may load starting weights and freeze parameters (only those that still require
    gradients are optimised). A resumed fold then loads its saved state over it.
    """
    started = time.perf_counter()
    cfg_train, cfg_data, cfg_optim = recipe.train, recipe.data, recipe.optim
    split, train_idx, val_idx, test_idx = fold_indices(corpus, fold, recipe)
    writer = ctx.is_main
    if writer:
        folder.mkdir(parents=True, exist_ok=True)
        clean_partial_files(folder)
        atomic_write_json(folder / "split.json", {
            "fold": fold, "train": split.train, "validation": split.validation, "test": split.test,
            "faces": {"train": int(train_idx.size), "validation": int(val_idx.size), "test": int(test_idx.size)},
        })

    device = ctx.device
    _seed_everything(cfg_train.seed)
    backbone_source = weights or recipe.model.backbone_weights or "hub"
    model = build_method_model(recipe.model, recipe.baseline, cfg_train.method, weights=backbone_source).to(device)
    if init_model is not None:
        init_model(model)
    data_config = model.data_config
    img_size = int(data_config["input_size"][-1])
    mean, std = data_config["mean"], data_config["std"]
    au_names = list(model.au_names)
    labels = corpus.labels
    train_faces = AugmentedFaces(corpus.dataset, FaceTransform.from_config(cfg_data, img_size, train=True), train_idx)
    eval_transform = FaceTransform.from_config(cfg_data, img_size, train=False)
    val_faces = AugmentedFaces(corpus.dataset, eval_transform, val_idx)
    test_faces = AugmentedFaces(corpus.dataset, eval_transform, test_idx)
    val_labels, test_labels = labels[val_idx], labels[test_idx]
    eval_batch = cfg_data.eval_batch_size or 2 * cfg_data.batch_size
    eval_loaders = {
        name: make_loader(faces, ShardBatchSampler(len(faces), eval_batch, rank=ctx.rank, world_size=ctx.world_size),
                          num_workers=cfg_data.num_workers, pin_memory=ctx.device.type == "cuda")
        for name, faces in (("validation", val_faces), ("test", test_faces)) if len(faces)
    }

    loss_cfg = recipe.loss
    criterion = AUFormerLoss.from_rates(
        occurrence_rates(labels[train_idx]), gammas=loss_cfg.gammas, tiers=loss_cfg.gamma_tiers, margin=loss_cfg.margin,
        expert_weight=loss_cfg.expert_weight, dice=loss_cfg.dice, au_names=au_names,
    ).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, recipe), lr=cfg_optim.lr, betas=cfg_optim.betas)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]

    if cfg_data.batch_size % ctx.world_size:
        raise UsageError(f"data.batch_size {cfg_data.batch_size} must be a multiple of the {ctx.world_size} processes")
    sampler = EpochBatchSampler(train_idx.size, cfg_data.batch_size, seed=cfg_train.seed, rank=ctx.rank, world_size=ctx.world_size)
    per_epoch = sampler.batches_per_epoch
    total_steps = cfg_optim.max_steps or cfg_optim.epochs * per_epoch
    n_epochs = math.ceil(total_steps / per_epoch)
    warmup_steps = min(round(cfg_optim.warmup_epochs * per_epoch), total_steps)
    log = MetricsLog(folder / "metrics.jsonl", enabled=writer)

    position: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": None, "best_step": None,
                                "evaluations": [], "loss_sum": [0.0, 0.0, 0.0, 0.0], "loss_count": 0, "log_offset": 0}
    saved = load_state(folder) if resume else None
    if saved is not None:
        payload, tensors = saved
        missing, unexpected = model.load_state_dict({k: v.to(device) for k, v in weights_from_state(tensors).items()}, strict=False)
        if unexpected:
            raise UsageError(f"the saved state in {folder} does not fit this model ({', '.join(sorted(unexpected)[:3])}...)")
        restore_optimizer(optimizer, payload["optimizer"], {k: v.to(device) if k.startswith("optim.") and v.ndim > 0 else v for k, v in tensors.items() if k.startswith("optim.")})
        restore_rng_state(payload["rng"], tensors)
        position = payload["position"]
        log.truncate(int(position["log_offset"]))
        if writer:
            err_console.print(f"[bold]Resuming[/bold] fold {fold} at epoch {position['epoch'] + 1}, step {position['step']}")
    elif writer and log.path.exists():
        log.path.unlink()

    train_model: nn.Module = model
    if ctx.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    loader = make_loader(train_faces, sampler, num_workers=cfg_data.num_workers, pin_memory=device.type == "cuda")
    loss_sum = torch.tensor(position["loss_sum"], dtype=torch.float32, device=device)
    loss_count = int(position["loss_count"])
    step, epoch, batch_in_epoch = int(position["step"]), int(position["epoch"]), int(position["batch"])
    parameters = {k: v for k, v in model.parameter_summary().items() if k != "components"}

    def snapshot() -> dict[str, Any]:
        position.update(epoch=epoch, batch=batch_in_epoch, step=step, loss_sum=[float(v) for v in loss_sum.tolist()],
                        loss_count=loss_count, log_offset=log.offset())
        return json_safe(position)

    def check_finite() -> None:
        # loss_sum holds every step since the last evaluation, so one NaN step is caught here
        # (a sync, done only where the loop logs, saves or evaluates anyway).
        if not bool(torch.isfinite(loss_sum).all()):
            raise TrainingDivergedError(
                f"fold {fold}: the training loss became NaN or infinite by step {step} (peak lr {cfg_optim.lr:g}); "
                f"the run stopped without saving the broken weights. Train again with a lower learning rate (--lr)"
                + ("" if cfg_optim.grad_clip > 0 else " or with gradient clipping (optim.grad_clip)")
            )

    def save_now() -> None:
        check_finite()
        if writer:
            save_state(folder, step=step, position=snapshot(), weights=model.trainable_state_dict(), optimizer=optimizer)

    bar = progress(transient=True) if (show_progress and writer) else None
    task = bar.add_task(f"fold {fold}", total=total_steps, completed=step, rate="") if bar is not None else None
    shown_loss = ""  # the loss read on the last log step (no extra GPU sync), shown on the bar until the next
    if bar is not None:
        bar.start()
    try:
        while epoch < n_epochs and step < total_steps:
            sampler.set_epoch(epoch, batch_in_epoch)
            train_model.train()
            tick, seen, tick_step = time.perf_counter(), 0, step
            for batch in loader:
                lr = lr_at(step, lr=cfg_optim.lr, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=cfg_optim.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                images = normalize(batch["image"], mean, std, device=device)
                targets = batch["labels"].to(device, non_blocking=True)
                with autocast_for(device, cfg_train.precision):
                    output = train_model(images)
                expert_logits = output.expert_logits.float() if output.expert_logits is not None else None
                parts = criterion(output.logits.float(), targets, expert_logits)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                if cfg_optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg_optim.grad_clip)
                optimizer.step()
                step += 1
                batch_in_epoch += 1
                loss_sum += torch.stack([parts.total.detach(), parts.mdwa.detach(), parts.dice.detach(), parts.expert.detach()])
                loss_count += 1
                seen += images.shape[0] * ctx.world_size
                if step % cfg_train.log_every == 0 or step == total_steps:
                    check_finite()
                    elapsed = max(time.perf_counter() - tick, 1e-9)
                    sums = (loss_sum / max(loss_count, 1)).tolist()
                    log.write({"event": "train", "fold": fold, "epoch": epoch + 1, "step": step, "lr": lr,
                               "loss": sums[0], "mdwa": sums[1], "dice": sums[2], "expert_mdwa": sums[3], "img_per_s": seen / elapsed})
                    shown_loss = f"  loss {sums[0]:.4f}"
                if bar is not None:
                    bar_elapsed = max(time.perf_counter() - tick, 1e-9)
                    bar.update(task, completed=step, description=f"fold {fold} epoch {epoch + 1}/{n_epochs}",
                               rate=f"{(step - tick_step) / bar_elapsed:.1f} steps/s  {seen / bar_elapsed:,.0f} img/s{shown_loss}")
                if cfg_train.save_every and step % cfg_train.save_every == 0 and batch_in_epoch < per_epoch:
                    save_now()
                if on_step is not None:
                    on_step(step)
                if step >= total_steps:
                    break
            epoch += 1
            batch_in_epoch = 0
            if epoch % cfg_train.eval_every == 0 or epoch >= n_epochs or step >= total_steps:
                check_finite()
                record = _evaluate_epoch(
                    model, eval_loaders, val_labels, test_labels, au_names=au_names, ctx=ctx, recipe=recipe,
                    mean=mean, std=std, position=position, epoch=epoch, step=step,
                    train_loss=float((loss_sum[0] / max(loss_count, 1)).item()),
                )
                record["lr"] = lr_at(max(step - 1, 0), lr=cfg_optim.lr, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=cfg_optim.min_lr_ratio)
                if record["best"] and writer:
                    training = {"fold": fold, "epoch": epoch, "step": step, "store": str(corpus.store), "label_set": corpus.label_set,
                                "au_columns": corpus.columns, "subjects": split.subjects(),
                                "validation_mean_f1": record["val_mean_f1"], "validation_mean_auc": record["val_mean_auc"],
                                "test_mean_f1": record["test_mean_f1"]}
                    save_checkpoint(folder / "best", unwrap(model), recipe=recipe, thresholds=record["thresholds"], training=json_safe(training))
                    save_tensors(folder / "best_predictions.safetensors", record.pop("_predictions"))
                record.pop("_predictions", None)
                position["evaluations"].append(record)
                log.write({"event": "eval", "fold": fold, **record})
                if writer:
                    write_metrics_csv(folder / "metrics.csv", position["evaluations"], au_names)
                    if show_progress:
                        _print_epoch(record, n_epochs)
                loss_sum.zero_()
                loss_count = 0
            save_now()
    finally:
        if bar is not None:
            bar.stop()
    ctx.barrier()

    best = next((r for r in position["evaluations"] if r["epoch"] == position["best_epoch"]), None)
    if best is None:
        raise UsageError(f"fold {fold} finished without an evaluation; check optim.epochs and train.eval_every")
    result = FoldResult(
        fold=fold, split=split, best_epoch=int(best["epoch"]), best_step=int(best["step"]),
        test=MetricReport.from_dict(best["test"]), test_at_half=MetricReport.from_dict(best["test_at_0.5"]),
        validation=MetricReport.from_dict(best["val"]) if best.get("val") else None,
        thresholds=np.asarray(best["thresholds"], dtype=np.float64), checkpoint=folder / "best.safetensors", folder=folder,
        parameters=parameters, wall_time_s=time.perf_counter() - started,
    )
    if writer:
        atomic_write_json(folder / "result.json", result.to_dict())
    return result


def _evaluate_epoch(
    model: nn.Module,
    loaders: dict[str, Any],
    val_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    au_names: Sequence[str],
    ctx: DistContext,
    recipe: Recipe,
    mean: Sequence[float],
    std: Sequence[float],
    position: dict[str, Any],
    epoch: int,
    step: int,
    train_loss: float,
) -> dict[str, Any]:
    """Score validation and test subjects, fit thresholds on validation, update the best epoch."""
    kwargs = dict(device=ctx.device, precision=recipe.train.precision, ctx=ctx, mean=mean, std=std)
    has_val = "validation" in loaders
    if has_val:
        val_rows, val_logits = predict_logits(model, loader=loaders["validation"], **kwargs)
    else:
        val_rows, val_logits = np.zeros(0, np.int64), np.zeros((0, len(au_names)), np.float32)
    test_rows, test_logits = predict_logits(model, loader=loaders["test"], **kwargs)
    val_probs, test_probs = sigmoid(val_logits), sigmoid(test_logits)
    if recipe.train.thresholds == "fitted" and has_val:
        thresholds = fit_thresholds(val_probs, val_labels)
    else:
        thresholds = np.full(len(au_names), 0.5)
    val_report = evaluate(val_probs, val_labels, au_names=au_names, thresholds=thresholds, title="validation") if has_val else None
    test_report = evaluate(test_probs, test_labels, au_names=au_names, thresholds=thresholds, title="test")
    test_half = evaluate(test_probs, test_labels, au_names=au_names, thresholds=0.5, title="test (threshold 0.5)")
    select = recipe.train.select_by if has_val else "last"
    score = {"val_f1": val_report.mean_f1 if val_report else float("nan"), "val_auc": val_report.mean_auc if val_report else float("nan"),
             "last": float(epoch)}[select]
    score = float(score) if np.isfinite(score) else -1.0  # F1 and AUC are >= 0: an undefined score never wins
    best_score = position["best_score"]
    improved = best_score is None or score > best_score
    if improved:
        position.update(best_score=score, best_epoch=epoch, best_step=step)
    return {
        "epoch": epoch, "step": step, "train_loss": train_loss,
        "val_mean_f1": val_report.mean_f1 if val_report else None, "val_mean_auc": val_report.mean_auc if val_report else None,
        "test_mean_f1": test_report.mean_f1, "test_mean_f1_at_0.5": test_half.mean_f1, "test_mean_auc": test_report.mean_auc,
        "test_f1": test_report.f1.tolist(), "thresholds": thresholds.tolist(), "best": improved, "select_score": score,
        "val": val_report.to_dict() if val_report else None, "test": test_report.to_dict(), "test_at_0.5": test_half.to_dict(),
        "_predictions": {"validation_rows": torch.from_numpy(val_rows), "validation_logits": torch.from_numpy(val_logits),
                         "test_rows": torch.from_numpy(test_rows), "test_logits": torch.from_numpy(test_logits)},
    }


def _print_epoch(record: dict[str, Any], n_epochs: int) -> None:
    def pct(value):
        return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"

    marker = " [green]best[/green]" if record["best"] else ""
    err_console.print(
        f"epoch {record['epoch']}/{n_epochs}  step {record['step']}  loss {record['train_loss']:.4f}  "
        f"val F1 {pct(record['val_mean_f1'])}  test F1 {pct(record['test_mean_f1'])} "
        f"(at 0.5: {pct(record['test_mean_f1_at_0.5'])})  test AUC {pct(record['test_mean_auc'])}{marker}",
        highlight=False,
    )


# ------------------------------------------------------------------------------------ a run
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


def _prepare_folder(out: Path, recipe: Recipe, resume: bool) -> bool:
    """Check or create the run folder; returns True when an earlier run is resumed."""
    differences = recipe_differences(out, recipe)
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
            resuming = _prepare_folder(out, recipe, resume)
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
        init_model = _init_from(recipe)
        results = []
        for fold in folds:
            folder = out / f"fold{fold}"
            finished = folder / "result.json"
            if resume and finished.exists():
                results.append(FoldResult.from_dict(read_json(finished), folder))
                continue
            result = train_fold(corpus, fold, recipe, folder=folder, ctx=ctx, resume=resume, weights=weights,
                                show_progress=show_progress, on_step=on_step, init_model=init_model)
            results.append(result)
            run = TrainResult(out, recipe, list(recipe.model.au_names), corpus.label_set, results)
            if ctx.is_main:
                _write_summary(run)
        return TrainResult(out, recipe, list(recipe.model.au_names), corpus.label_set, results)
    finally:
        ctx.close()


def _init_from(recipe: Recipe) -> Callable[[nn.Module], None] | None:
    """The ``init_model`` hook of ``train.init_from`` (checked before any fold trains), or None."""
    if not recipe.train.init_from:
        return None
    from aucli.model.checkpoint import init_from_checkpoint, read_checkpoint_metadata
    from aucli.model.registry import resolve_checkpoint

    if recipe.train.method != "auformer":
        raise UsageError(f"train.init_from starts AUFormer from a checkpoint; train.method is {recipe.train.method!r}")
    meta_path = resolve_checkpoint(recipe.train.init_from)
    read_checkpoint_metadata(meta_path)
    return lambda model: init_from_checkpoint(model, meta_path)


def _write_summary(run: TrainResult) -> None:
    import csv
    import io

    summary = run.summary()
    atomic_write_json(run.folder / "summary.json", summary)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["au", *[f"fold{f}" for f in summary["folds"]], "mean", "std"])
    for i, name in enumerate(run.au_names):
        row = [*[fold_f1[i] for fold_f1 in summary["f1"]], summary["f1_mean"][i], summary["f1_std"][i]]
        writer.writerow([name, *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in row]])
    row = [*summary["mean_f1_per_fold"], summary["mean_f1"], summary["mean_f1_std"]]
    writer.writerow(["mean", *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in row]])
    atomic_write_text(run.folder / "summary.csv", buffer.getvalue())


def print_result(run: TrainResult) -> None:
    """The end-of-run table on stdout."""
    console.print(run.table())
