"""Inference over store rows and checkpoint evaluation, including across corpora (``aucli eval``).

Cross-corpus evaluation (the paper's BP4D -> DISFA setting) scores a model only on the AUs both
corpora share: each model AU is matched to a label-set AU by name, or through an explicit map
(``--au-map AU1=AU1,AU12=AU12``). Thresholds may be re-fitted on a labelled part of the new corpus
(``--refit-thresholds --subjects ...``); the model is then scored on the remaining subjects and a new
checkpoint with the re-fitted thresholds is written.

Beside frame F1, events are scored (:mod:`aucli.events`): the scored faces are put in sequence
order, true events (runs of 1s) are matched one-to-one by temporal IoU with predicted events (runs
of ``p >= threshold``), and event F1 is reported per AU. With ``smooth`` the probabilities are first
smoothed by the two-state HMM (frame rates from the store's clock, or ``fps`` for sources without
one) and frame and event F1 are reported again on the smoothed probabilities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.errors import StoreError, UsageError
from aucli.events import DEFAULT_MIN_IOU, EventReport, event_agreement, frame_rates, segment_ids, sequence_order, smooth_probabilities
from aucli.engine.data import AugmentedFaces, FaceTransform, ShardBatchSampler, label_columns, make_loader, normalize, resolve_label_set
from aucli.engine.distributed import DistContext, gather_rows
from aucli.metrics import MetricReport, evaluate, f1_scores, fit_thresholds

__all__ = ["autocast_for", "predict_logits", "EvalResult", "evaluate_checkpoint"]


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on GPU (``auto`` or ``bf16``), on CPU only when ``bf16`` is asked for; else nothing."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    dataset: AugmentedFaces | None = None,
    *,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    precision: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    ctx: DistContext | None = None,
    loader: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Main-head logits of every item of ``dataset`` (or of a prepared ``loader``), in dataset order.

    ``loader``: a DataLoader over a :class:`ShardBatchSampler` (kept between evaluations, so its
    worker processes persist); without it one is made from ``dataset``.

    Returns:
        ``rows (n,)`` store rows and ``logits (n, n_aus)`` float32. Under DDP each rank scores a
        contiguous share and every rank gets the whole.
    """
    if loader is None:
        if dataset is None:
            raise TypeError("predict_logits needs a dataset or a loader")
        rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
        sampler = ShardBatchSampler(len(dataset), batch_size, rank=rank, world_size=world)
        loader = make_loader(dataset, sampler, num_workers=num_workers, pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    rows: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    n_aus = len(getattr(model, "au_names", [])) or None
    with autocast_for(device, precision):
        for batch in loader:
            images = normalize(batch["image"], mean, std, device=device)
            output = model(images)
            logits.append(output.logits.float().cpu().numpy())
            rows.append(batch["row"].numpy())
    model.train(was_training)
    width = logits[0].shape[1] if logits else (n_aus or 0)
    local_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    local_logits = np.concatenate(logits) if logits else np.zeros((0, width), np.float32)
    if ctx is not None and ctx.distributed:
        local_rows, local_logits = gather_rows(ctx, [local_rows, local_logits])
    return local_rows.astype(np.int64), local_logits.astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate_checkpoint`.

    ``au_pairs``: model AU -> label-set AU that were scored. ``report`` is at the checkpoint's (or the
    re-fitted) thresholds, ``report_at_half`` at 0.5. ``refit_on``: subjects thresholds were fitted on.
    ``events``: frame and event F1 at those thresholds; ``events_smoothed``: the same after HMM
    smoothing (None unless asked for).
    """

    checkpoint: Path
    store: Path
    label_set: str
    au_pairs: dict[str, str]
    report: MetricReport
    report_at_half: MetricReport
    n_faces: int
    subjects: list[str]
    thresholds: np.ndarray
    refit_on: list[str] = field(default_factory=list)
    new_checkpoint: Path | None = None
    in_sample: bool = False
    events: EventReport | None = None
    events_smoothed: EventReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "store": str(self.store),
            "label_set": self.label_set,
            "au_pairs": dict(self.au_pairs),
            "n_faces": self.n_faces,
            "subjects": list(self.subjects),
            "thresholds": [float(t) for t in self.thresholds],
            "refit_on": list(self.refit_on),
            "in_sample": self.in_sample,
            "new_checkpoint": str(self.new_checkpoint) if self.new_checkpoint else None,
            "report": self.report.to_dict(),
            "report_at_0.5": self.report_at_half.to_dict(),
            "events": self.events.to_dict() if self.events is not None else None,
            "events_smoothed": self.events_smoothed.to_dict() if self.events_smoothed is not None else None,
        }


def evaluate_checkpoint(
    checkpoint: str | Path,
    store: str | Path,
    *,
    labels: str | None = None,
    au_map: Mapping[str, str] | str | None = None,
    subjects: Sequence[str] | None = None,
    refit_thresholds: bool = False,
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    backbone_weights: str | None = None,
    min_iou: float = DEFAULT_MIN_IOU,
    smooth: bool = False,
    fps: float | None = None,
) -> EvalResult:
    """Score a checkpoint on a store's label set, on the AUs the two share.

    Args:
        checkpoint: ``NAME.safetensors`` / ``NAME.json`` of any training method, or a registered name.
        store: the corpus store.
        labels: label set name (None: the store's only set).
        au_map: model AU -> label-set AU (a mapping or ``"AU1=AU1,AU12=AU12R"``); AUs not named match by
            name; unmatched ones are skipped.
        subjects: without ``refit_thresholds``: score only these subjects. With it: fit per-AU
            thresholds on these subjects' frames and score the other subjects.
        refit_thresholds: re-fit thresholds (needs ``subjects`` and ``out``).
        out: where the checkpoint with re-fitted thresholds goes (``NAME.safetensors`` / ``NAME``).
        min_iou: temporal IoU at which a predicted event matches a true one.
        smooth: also score the HMM-smoothed probabilities (:func:`aucli.events.smooth_probabilities`).
        fps: frame rate of sources without a clock (frame folders); needed by ``smooth`` there.
    """
    from aucli.engine.distributed import resolve_device
    from aucli.model.checkpoint import load_model_checkpoint
    from aucli.model.registry import resolve_checkpoint

    if refit_thresholds and not subjects:
        raise UsageError("--refit-thresholds needs --subjects: the labelled subjects of the new corpus to fit thresholds on")
    if refit_thresholds and out is None:
        raise UsageError("--refit-thresholds needs --out NEW_CKPT for the checkpoint with the re-fitted thresholds")
    if out is not None and not refit_thresholds:
        raise UsageError("--out writes a checkpoint with re-fitted thresholds; add --refit-thresholds --subjects ...")
    torch_device = resolve_device(device)
    loaded = load_model_checkpoint(resolve_checkpoint(checkpoint), device=torch_device, backbone_weights=backbone_weights)
    label_set, pairs, dataset = _scored_faces(loaded, store, labels, au_map, subjects)
    probs = _probabilities(loaded, dataset, pairs, device=torch_device, batch_size=batch_size, num_workers=num_workers)
    truth = dataset.labels
    face_subjects = np.asarray(dataset.subjects, dtype=object)
    thresholds = loaded.thresholds[[loaded.au_names.index(a) for a in pairs]]
    refit_on: list[str] = []
    in_sample = False
    new_checkpoint = None
    scored = np.isin(face_subjects, list(subjects)) if subjects and not refit_thresholds else np.ones(len(probs), dtype=bool)
    if refit_thresholds:
        refit_on = sorted(subjects or ())
        fit = np.isin(face_subjects, refit_on)
        thresholds = fit_thresholds(probs[fit], truth[fit])
        scored = ~fit
        if not scored.any():
            scored, in_sample = fit, True
        new_checkpoint = _save_refit(loaded, pairs, thresholds, out, store=store, label_set=label_set, subjects=refit_on)
    names = list(pairs)
    title = f"{Path(checkpoint).name} on {Path(store).name} / {label_set}"
    report = evaluate(probs[scored], truth[scored], au_names=names, thresholds=thresholds, title=title)
    at_half = evaluate(probs[scored], truth[scored], au_names=names, thresholds=0.5, title=f"{title} (threshold 0.5)")
    events, smoothed = _event_reports(store, dataset.rows[scored], probs[scored], truth[scored], thresholds, names,
                                      min_iou=min_iou, smooth=smooth, fps=fps)
    return EvalResult(
        checkpoint=Path(checkpoint), store=Path(store), label_set=label_set, au_pairs=pairs, report=report,
        report_at_half=at_half, n_faces=int(scored.sum()), subjects=sorted(set(face_subjects[scored].tolist())),
        thresholds=np.asarray(thresholds), refit_on=refit_on, new_checkpoint=new_checkpoint, in_sample=in_sample,
        events=events, events_smoothed=smoothed,
    )


def _event_reports(store: str | Path, rows: np.ndarray, probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray,
                   names: list[str], *, min_iou: float, smooth: bool,
                   fps: float | None) -> tuple[EventReport, EventReport | None]:
    """Frame F1 and event F1 of the scored faces in sequence order; again after HMM smoothing when ``smooth``."""
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        faces = {k: v[rows] for k, v in opened.face_table(["source", "track", "frame", "timestamp"]).items()}
        keys = {record.index: record.key for record in opened.sources(latest=False)}
    order = sequence_order(faces["source"], faces["track"], faces["frame"])
    faces = {k: v[order] for k, v in faces.items()}
    probs, truth = probs[order], truth[order]
    segments = segment_ids(faces["source"], faces["track"], faces["frame"])
    predicted = (probs >= thresholds).astype(np.int8)
    events = EventReport(names, f1_scores(probs, truth, thresholds), event_agreement(truth, predicted, segments, min_iou=min_iou),
                         title="Events at the thresholds")
    if not smooth:
        return events, None
    rates = frame_rates(faces["frame"], faces["timestamp"], segments)
    if fps is not None:
        rates = np.where(np.isfinite(rates), rates, fps)
    if not np.isfinite(rates).all():
        unclocked = sorted({keys[int(s)] for s in faces["source"][~np.isfinite(rates)]})
        raise UsageError(f"--smooth needs frame rates: {', '.join(unclocked[:5])}{' ...' if len(unclocked) > 5 else ''} "
                         "have no clock (frame folders); give --fps")
    smoothed = smooth_probabilities(probs, rates, frames=faces["frame"], segments=segments)
    decided = (smoothed >= thresholds).astype(np.int8)
    return events, EventReport(names, f1_scores(smoothed, truth, thresholds),
                               event_agreement(truth, decided, segments, min_iou=min_iou), title="Events after HMM smoothing")


def _scored_faces(loaded: Any, store: str | Path, labels: str | None, au_map: Mapping[str, str] | str | None,
                  subjects: Sequence[str] | None) -> tuple[str, dict[str, str], Any]:
    """The label set, model AU -> label-set AU of the AUs both have, and the store's faces labelled for them."""
    from aucli.config import parse_au_map
    from aucli.engine.data import store_dataset
    from aucli.store import CorpusStore

    au_map = parse_au_map(au_map if isinstance(au_map, str) else dict(au_map)) if au_map else {}
    with CorpusStore.open(store) as opened:
        label_set = resolve_label_set(opened, labels)
        label_aus = opened.read_labels(label_set).au_names
        all_subjects = sorted(set(opened.face_subjects().tolist()))
    pairs = label_columns(loaded.au_names, label_aus, au_map, require_all=False)
    unknown = sorted(set(subjects or ()) - set(all_subjects))
    if unknown:
        raise UsageError(f"subjects {', '.join(unknown)} are not in {store} (its subjects: {', '.join(all_subjects)})")
    dataset = store_dataset(store, labels=label_set, label_aus=list(pairs.values()))
    if len(dataset) == 0:
        raise StoreError(f"label set {label_set!r} of {store} has no labelled face for the AUs {', '.join(pairs.values())}")
    return label_set, pairs, dataset


def _probabilities(loaded: Any, dataset: Any, pairs: Mapping[str, str], *, device: torch.device, batch_size: int, num_workers: int) -> np.ndarray:
    """``(n_faces, len(pairs))`` probabilities of the checkpoint's AUs in ``pairs`` on every face (evaluation view)."""
    image_size = int(loaded.data_config["input_size"][-1])
    transform = FaceTransform.from_config(loaded.recipe.data, image_size, train=False)
    _rows, logits = predict_logits(
        loaded.model, AugmentedFaces(dataset, transform), device=device, precision=loaded.recipe.train.precision,
        batch_size=batch_size, num_workers=num_workers, mean=loaded.data_config["mean"], std=loaded.data_config["std"],
    )  # fmt: skip
    return sigmoid(logits[:, [loaded.au_names.index(a) for a in pairs]])


def _save_refit(loaded: Any, pairs: Mapping[str, str], thresholds: np.ndarray, out: str | Path | None, *, store: str | Path,
                label_set: str, subjects: list[str]) -> Path:
    """The checkpoint again at ``out`` with the re-fitted thresholds of the AUs in ``pairs``; returns its weights file."""
    from aucli.fileio import json_safe
    from aucli.model.checkpoint import save_checkpoint

    full = loaded.thresholds.copy()
    full[[loaded.au_names.index(a) for a in pairs]] = thresholds
    refit = {"store": str(store), "label_set": label_set, "subjects": subjects, "au_pairs": dict(pairs)}
    training = {**loaded.meta.get("training", {}), "thresholds_refit": refit}
    weights, _ = save_checkpoint(out, loaded.model, recipe=loaded.recipe, thresholds=full, training=json_safe(training),
                                 calibration=loaded.meta.get("calibration"), extra=loaded.meta.get("extra"))  # fmt: skip
    return weights
