"""Training one fold: the model, the optimiser and schedule, the loop, evaluation, the resumable state.

The model (:func:`aucli.model.methods.build_method_model`: AUFormer or a baseline) is trained with
AdamW, a linear warm-up then a cosine decay per step, gradient clipping and the AUFormer loss
(MDWA + WDI + expert supervision; baselines have no expert term), in bf16 autocast on GPU and fp32
on CPU. After each evaluated epoch the model scores the validation and test subjects: per-AU F1
from counts summed over the fold, mean F1 and AUC, at thresholds fitted on the validation subjects
(``train.thresholds: fitted``) and at 0.5; the best epoch (by validation) is kept as a checkpoint.
The state is saved after every epoch (and every ``train.save_every`` steps); a resumed fold
continues exactly where its last state was saved (the same numbers as an uninterrupted run).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.config import Recipe
from aucli.console import err_console, progress
from aucli.engine.corpus import Corpus, fold_indices
from aucli.engine.data import AugmentedFaces, EpochBatchSampler, FaceTransform, ShardBatchSampler, make_loader, normalize
from aucli.engine.distributed import DistContext, unwrap
from aucli.engine.evaluate import autocast_for, predict_logits, sigmoid
from aucli.engine.results import FoldResult
from aucli.engine.runs import (
    MetricsLog,
    clean_partial_files,
    load_state,
    restore_optimizer,
    restore_rng_state,
    save_state,
    weights_from_state,
    write_metrics_csv,
)
from aucli.errors import TrainingDivergedError, UsageError
from aucli.fileio import atomic_write_json, json_safe, save_tensors
from aucli.losses import AUFormerLoss, occurrence_rates
from aucli.metrics import MetricReport, evaluate, fit_thresholds
from aucli.model.checkpoint import save_checkpoint
from aucli.model.methods import build_method_model

__all__ = ["MOKE_GROUPS", "MOKE_UP_PROJECTIONS", "lr_at", "param_groups", "train_fold"]

#: AUFormer's MoKE up-projections (parameter names), trained at ``lr x optim.moke_up_lr_scale``.
MOKE_GROUPS = ("attn_experts.", "mlp_experts.")
MOKE_UP_PROJECTIONS = (".up_weight", ".up_bias")


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
    accept_modified_weights: bool | None = None,
) -> FoldResult:
    """Train and evaluate one fold; files go to ``folder`` (rank 0 only). See the module docstring.

    ``init_model``: called with the freshly built model (on its device) before the optimiser is
    made: it may load starting weights and freeze parameters (only those that still require
    gradients are optimised). A resumed fold then loads its saved state over it (its tensor file
    checked against the recorded sha256 unless ``accept_modified_weights``).
    """
    run = _FoldRun(corpus, fold, recipe, folder=folder, ctx=ctx, weights=weights, init_model=init_model)
    run.restore(resume, accept_modified_weights)
    run.train(show_progress=show_progress, on_step=on_step)
    ctx.barrier()
    return run.result()


class _FoldRun:
    """One fold's training, step by step; its state is what :func:`aucli.engine.runs.save_state` keeps."""

    def __init__(self, corpus: Corpus, fold: int, recipe: Recipe, *, folder: Path, ctx: DistContext, weights: str | None,
                 init_model: Callable[[nn.Module], None] | None) -> None:
        self.started = time.perf_counter()
        self.corpus, self.fold, self.recipe, self.folder, self.ctx = corpus, fold, recipe, folder, ctx
        self.writer = ctx.is_main
        self.split, train_idx, val_idx, test_idx = fold_indices(corpus, fold, recipe)
        if self.writer:
            self._write_split(train_idx, val_idx, test_idx)
        _seed_everything(recipe.train.seed)
        source = weights or recipe.model.backbone_weights or "hub"
        self.model = build_method_model(recipe.model, recipe.baseline, recipe.train.method, weights=source).to(ctx.device)
        if init_model is not None:
            init_model(self.model)
        self._build_data(train_idx, val_idx, test_idx)
        self._build_optimiser(train_idx)
        self.log = MetricsLog(folder / "metrics.jsonl", enabled=self.writer)
        self.position: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": None,
                                         "best_step": None, "evaluations": [], "loss_sum": [0.0, 0.0, 0.0, 0.0],
                                         "loss_count": 0, "log_offset": 0}  # fmt: skip

    def _write_split(self, train_idx: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        clean_partial_files(self.folder)
        split = self.split
        atomic_write_json(self.folder / "split.json", {
            "fold": self.fold, "train": split.train, "validation": split.validation, "test": split.test,
            "faces": {"train": int(train_idx.size), "validation": int(val_idx.size), "test": int(test_idx.size)},
        })  # fmt: skip

    def _build_data(self, train_idx: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray) -> None:
        """The augmented training faces, the validation and test loaders (this rank's share) and their labels."""
        cfg_data, ctx, dataset = self.recipe.data, self.ctx, self.corpus.dataset
        data_config = self.model.data_config
        img_size = int(data_config["input_size"][-1])
        self.mean, self.std = data_config["mean"], data_config["std"]
        self.au_names = list(self.model.au_names)
        self.train_faces = AugmentedFaces(dataset, FaceTransform.from_config(cfg_data, img_size, train=True), train_idx)
        eval_transform = FaceTransform.from_config(cfg_data, img_size, train=False)
        faces = {"validation": AugmentedFaces(dataset, eval_transform, val_idx), "test": AugmentedFaces(dataset, eval_transform, test_idx)}
        self.val_labels, self.test_labels = self.corpus.labels[val_idx], self.corpus.labels[test_idx]
        eval_batch = cfg_data.eval_batch_size or 2 * cfg_data.batch_size
        self.eval_loaders = {
            name: make_loader(part, ShardBatchSampler(len(part), eval_batch, rank=ctx.rank, world_size=ctx.world_size),
                              num_workers=cfg_data.num_workers, pin_memory=ctx.device.type == "cuda")
            for name, part in faces.items() if len(part)
        }  # fmt: skip

    def _build_optimiser(self, train_idx: np.ndarray) -> None:
        """The loss (weighted by the training faces' occurrence rates), AdamW, the sampler and the schedule's length."""
        recipe, ctx = self.recipe, self.ctx
        loss = recipe.loss
        self.criterion = AUFormerLoss.from_rates(
            occurrence_rates(self.corpus.labels[train_idx]), gammas=loss.gammas, tiers=loss.gamma_tiers, margin=loss.margin,
            expert_weight=loss.expert_weight, dice=loss.dice, au_names=self.au_names,
        ).to(ctx.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, recipe), lr=recipe.optim.lr, betas=recipe.optim.betas)
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        if recipe.data.batch_size % ctx.world_size:
            raise UsageError(f"data.batch_size {recipe.data.batch_size} must be a multiple of the {ctx.world_size} processes")
        self.sampler = EpochBatchSampler(train_idx.size, recipe.data.batch_size, seed=recipe.train.seed, rank=ctx.rank, world_size=ctx.world_size)
        self.per_epoch = self.sampler.batches_per_epoch
        self.total_steps, self.stopped_by = recipe.optim.schedule(self.per_epoch)
        self.n_epochs = math.ceil(self.total_steps / self.per_epoch)
        self.warmup_steps = min(round(recipe.optim.warmup_epochs * self.per_epoch), self.total_steps)

    def restore(self, resume: bool, accept_modified_weights: bool | None = None) -> None:
        """Load the saved state over the fresh model (``resume``), else start a new log; then wrap for DDP."""
        saved = load_state(self.folder, accept_modified_weights=accept_modified_weights) if resume else None
        device = self.ctx.device
        if saved is not None:
            payload, tensors = saved
            weights = {k: v.to(device) for k, v in weights_from_state(tensors).items()}
            _missing, unexpected = self.model.load_state_dict(weights, strict=False)
            if unexpected:
                raise UsageError(f"the saved state in {self.folder} does not fit this model ({', '.join(sorted(unexpected)[:3])}...)")
            moments = {k: v.to(device) if k.startswith("optim.") and v.ndim > 0 else v for k, v in tensors.items() if k.startswith("optim.")}
            restore_optimizer(self.optimizer, payload["optimizer"], moments)
            restore_rng_state(payload["rng"], tensors)
            self.position = payload["position"]
            self.log.truncate(int(self.position["log_offset"]))
            if self.writer:
                err_console.print(f"[bold]Resuming[/bold] fold {self.fold} at epoch {self.position['epoch'] + 1}, step {self.position['step']}")
        elif self.writer and self.log.path.exists():
            self.log.path.unlink()
        self.train_model: nn.Module = self.model
        if self.ctx.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    # -------------------------------------------------------------------------------- the loop
    def train(self, *, show_progress: bool, on_step: Callable[[int], None] | None) -> None:
        """Run the remaining epochs: steps, logs, evaluations, checkpoints and saved states."""
        device, position = self.ctx.device, self.position
        self.loader = make_loader(self.train_faces, self.sampler, num_workers=self.recipe.data.num_workers, pin_memory=device.type == "cuda")
        self.loss_sum = torch.tensor(position["loss_sum"], dtype=torch.float32, device=device)
        self.loss_count = int(position["loss_count"])
        self.step, self.epoch, self.batch_in_epoch = int(position["step"]), int(position["epoch"]), int(position["batch"])
        self.parameters = {k: v for k, v in self.model.parameter_summary().items() if k != "components"}
        self.bar = progress(transient=True) if (show_progress and self.writer) else None
        self.task = self.bar.add_task(f"fold {self.fold}", total=self.total_steps, completed=self.step, rate="") if self.bar else None
        self.shown_loss = ""  # the loss read on the last log step (no extra GPU sync), shown on the bar until the next
        if self.bar is not None:
            self.bar.start()
        try:
            while self.epoch < self.n_epochs and self.step < self.total_steps:
                self._epoch(on_step)
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.epoch % self.recipe.train.eval_every == 0 or self.epoch >= self.n_epochs or self.step >= self.total_steps:
                    self._evaluate(show_progress)
                self._save_state()
        finally:
            if self.bar is not None:
                self.bar.stop()
        self._log_stop(show_progress)

    def _log_stop(self, show_progress: bool) -> None:
        """Say which limit ended training: a ``{"event": "stop"}`` line in the log and, with progress, on stderr."""
        optim = self.recipe.optim
        by_epochs = optim.epochs * self.per_epoch
        if self.stopped_by == "optim.max_steps":
            why = f"optim.max_steps {optim.max_steps} came before optim.epochs {optim.epochs} ({by_epochs} steps)"
        else:
            steps = "" if optim.max_steps is None else f"; optim.max_steps {optim.max_steps} is not fewer"
            why = f"optim.epochs {optim.epochs} = {by_epochs} steps ({self.per_epoch} an epoch){steps}"
        self.log.write({"event": "stop", "fold": self.fold, "epoch": self.epoch, "step": self.step, "stopped_by": self.stopped_by,
                        "reason": why})  # fmt: skip
        if show_progress and self.writer:
            err_console.print(f"fold {self.fold}: training stopped at step {self.step}, epoch {self.epoch}: {why}", highlight=False)

    def _epoch(self, on_step: Callable[[int], None] | None) -> None:
        """The steps of one epoch (from ``batch_in_epoch`` on a resumed one)."""
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        self.train_model.train()
        tick, seen, tick_step = time.perf_counter(), 0, self.step
        save_every = self.recipe.train.save_every
        for batch in self.loader:
            lr = self._step(batch)
            seen += batch["image"].shape[0] * self.ctx.world_size
            if self.step % self.recipe.train.log_every == 0 or self.step == self.total_steps:
                self._log_step(lr, seen / max(time.perf_counter() - tick, 1e-9))
            if self.bar is not None:
                elapsed = max(time.perf_counter() - tick, 1e-9)
                self.bar.update(self.task, completed=self.step, description=f"fold {self.fold} epoch {self.epoch + 1}/{self.n_epochs}",
                                rate=f"{(self.step - tick_step) / elapsed:.1f} steps/s  {seen / elapsed:,.0f} img/s{self.shown_loss}")
            if save_every and self.step % save_every == 0 and self.batch_in_epoch < self.per_epoch:
                self._save_state()
            if on_step is not None:
                on_step(self.step)
            if self.step >= self.total_steps:
                break

    def _lr(self, step: int) -> float:
        optim = self.recipe.optim
        return lr_at(step, lr=optim.lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps, min_lr_ratio=optim.min_lr_ratio)

    def _step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step on ``batch``; returns its learning rate."""
        device, optim = self.ctx.device, self.recipe.optim
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        images = normalize(batch["image"], self.mean, self.std, device=device)
        targets = batch["labels"].to(device, non_blocking=True)
        with autocast_for(device, self.recipe.train.precision):
            output = self.train_model(images)
        expert_logits = output.expert_logits.float() if output.expert_logits is not None else None
        parts = self.criterion(output.logits.float(), targets, expert_logits)
        self.optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, optim.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.batch_in_epoch += 1
        self.loss_sum += torch.stack([parts.total.detach(), parts.mdwa.detach(), parts.dice.detach(), parts.expert.detach()])
        self.loss_count += 1
        return lr

    def _log_step(self, lr: float, images_per_s: float) -> None:
        self._check_finite()
        sums = (self.loss_sum / max(self.loss_count, 1)).tolist()
        self.log.write({"event": "train", "fold": self.fold, "epoch": self.epoch + 1, "step": self.step, "lr": lr,
                        "loss": sums[0], "mdwa": sums[1], "dice": sums[2], "expert_mdwa": sums[3], "img_per_s": images_per_s})  # fmt: skip
        self.shown_loss = f"  loss {sums[0]:.4f}"

    def _check_finite(self) -> None:
        # loss_sum holds every step since the last evaluation, so one NaN step is caught here
        # (a sync, done only where the loop logs, saves or evaluates anyway).
        if not bool(torch.isfinite(self.loss_sum).all()):
            grad_clip = self.recipe.optim.grad_clip
            raise TrainingDivergedError(
                f"fold {self.fold}: the training loss became NaN or infinite by step {self.step} (peak lr {self.recipe.optim.lr:g}); "
                f"the run stopped without saving the broken weights. Train again with a lower learning rate (--lr)"
                + ("" if grad_clip > 0 else " or with gradient clipping (optim.grad_clip)")
            )

    def _snapshot(self) -> dict[str, Any]:
        self.position.update(epoch=self.epoch, batch=self.batch_in_epoch, step=self.step, loss_sum=[float(v) for v in self.loss_sum.tolist()],
                             loss_count=self.loss_count, log_offset=self.log.offset())  # fmt: skip
        return json_safe(self.position)

    def _save_state(self) -> None:
        self._check_finite()
        if self.writer:
            save_state(self.folder, step=self.step, position=self._snapshot(), weights=self.model.trainable_state_dict(), optimizer=self.optimizer)

    # -------------------------------------------------------------------------------- evaluation
    def _evaluate(self, show_progress: bool) -> None:
        """Score the epoch, keep its record, and the checkpoint when it is the best so far."""
        self._check_finite()
        record = _evaluate_epoch(
            self.model, self.eval_loaders, self.val_labels, self.test_labels, au_names=self.au_names, ctx=self.ctx, recipe=self.recipe,
            mean=self.mean, std=self.std, position=self.position, epoch=self.epoch, step=self.step,
            train_loss=float((self.loss_sum[0] / max(self.loss_count, 1)).item()),
        )  # fmt: skip
        record["lr"] = self._lr(max(self.step - 1, 0))
        if record["best"] and self.writer:
            self._save_best(record)
        record.pop("_predictions", None)
        self.position["evaluations"].append(record)
        self.log.write({"event": "eval", "fold": self.fold, **record})
        if self.writer:
            write_metrics_csv(self.folder / "metrics.csv", self.position["evaluations"], self.au_names)
            if show_progress:
                _print_epoch(record, self.n_epochs)
        self.loss_sum.zero_()
        self.loss_count = 0

    def _save_best(self, record: dict[str, Any]) -> None:
        corpus = self.corpus
        training = {"fold": self.fold, "epoch": self.epoch, "step": self.step, "store": str(corpus.store), "label_set": corpus.label_set,
                    "au_columns": corpus.columns, "subjects": self.split.subjects(),
                    "validation_mean_f1": record["val_mean_f1"], "validation_mean_auc": record["val_mean_auc"],
                    "test_mean_f1": record["test_mean_f1"]}  # fmt: skip
        save_checkpoint(self.folder / "best", unwrap(self.model), recipe=self.recipe, thresholds=record["thresholds"], training=json_safe(training))
        save_tensors(self.folder / "best_predictions.safetensors", record.pop("_predictions"))

    def result(self) -> FoldResult:
        """The fold's outcome at its best epoch (written to ``result.json`` by rank 0)."""
        best = next((r for r in self.position["evaluations"] if r["epoch"] == self.position["best_epoch"]), None)
        if best is None:
            raise UsageError(f"fold {self.fold} finished without an evaluation; check optim.epochs and train.eval_every")
        result = FoldResult(
            fold=self.fold, split=self.split, best_epoch=int(best["epoch"]), best_step=int(best["step"]),
            test=MetricReport.from_dict(best["test"]), test_at_half=MetricReport.from_dict(best["test_at_0.5"]),
            validation=MetricReport.from_dict(best["val"]) if best.get("val") else None,
            thresholds=np.asarray(best["thresholds"], dtype=np.float64), checkpoint=self.folder / "best.safetensors", folder=self.folder,
            parameters=self.parameters, wall_time_s=time.perf_counter() - self.started, stopped_by=self.stopped_by,
        )  # fmt: skip
        if self.writer:
            atomic_write_json(self.folder / "result.json", result.record())
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
