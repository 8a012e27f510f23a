"""``pretrain``: a masked autoencoder on rendered synthetic faces, resumable, saved as a timm encoder.

Run folder (``aucli pretrain --out DIR``)::

    DIR/
      config.json                the resolved PretrainConfig and versions (checked on --resume)
      metrics.jsonl              {"event": "train", step, loss, lr, faces_per_s, ...} every log_every
                                 steps, {"event": "val", step, loss} every eval_every steps
      cache/faces-*.npy, *.json  rendered training and validation faces (removed when finished)
      state.json, state-*.safetensors   the resumable state (aucli.engine.runs; removed when finished)
      encoder.safetensors        the pretrained encoder: timm state-dict keys (aucli.model.weights)
      encoder.json               the model card as data (architecture, input, sha256, loss, probe)
      MODEL_CARD.md              the same, for people

Everything random is a pure function of ``(seed, what, position)``: identity ``k`` of the cache,
the epoch's order, the augmentation of the ``g``-th training face, the mask of step ``s``. So a
run stopped at any saved state and resumed with ``--resume`` continues exactly where an
uninterrupted run would be (bit-exact on the same machine and thread count).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aucli.errors import UsageError
from aucli.pretrain.config import RUNTIME_KEYS, PretrainConfig
from aucli.pretrain.data import STREAM, FaceCache, FaceSampling, seed_of
from aucli.pretrain.mae import MaskedAutoencoder, build_encoder, random_keep

__all__ = ["PretrainResult", "pretrain", "encoder_normalisation", "build_mae"]

CONFIG_FILE = "config.json"
CARD_FILE = "encoder.json"
WEIGHTS_FILE = "encoder.safetensors"
MARKDOWN_FILE = "MODEL_CARD.md"
RUN_FORMAT = "aucli-pretrain-run-1"
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class PretrainResult:
    """What :func:`pretrain` did.

    Attributes:
        out: the run folder.
        config: the resolved configuration.
        step: optimiser steps done so far.
        finished: all ``config.steps`` done and the encoder saved (False: stopped by ``max_minutes``).
        encoder_path: ``out/encoder.safetensors`` once finished.
        card: the model card (``encoder.json``) once finished.
        train_loss: ``[[step, loss], ...]`` logged training losses (mean over each log interval).
        val_loss: ``[[step, loss], ...]`` validation losses (fixed faces and masks).
        encoder: the pretrained timm encoder in memory (rounded to ``encoder_dtype``, as saved), when
            this call finished the run.
    """

    out: Path
    config: PretrainConfig
    step: int
    finished: bool
    encoder_path: Path | None = None
    card: dict[str, Any] | None = None
    train_loss: list[list[float]] = field(default_factory=list)
    val_loss: list[list[float]] = field(default_factory=list)
    encoder: nn.Module | None = None


def encoder_normalisation(encoder: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std AUFormer will normalise with (the timm model's pretrained config; ImageNet's without one)."""
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", _IMAGENET[0]))
    std = tuple(float(v) for v in cfg.get("std", _IMAGENET[1]))
    return mean, std


def build_mae(config: PretrainConfig) -> MaskedAutoencoder:
    """The encoder (random init, seeded by ``config.seed``) and its MAE decoder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(STREAM, config.seed, 9))
        encoder = build_encoder(config.architecture, dict(config.overrides), config.img_size)
        return MaskedAutoencoder(
            encoder, decoder_dim=config.decoder_dim, decoder_depth=config.decoder_depth, decoder_heads=config.decoder_heads,
            norm_pix_loss=config.norm_pix_loss, target=config.target, hog_cell=config.hog_cell, hog_bins=config.hog_bins,
            visible_weight=config.visible_weight,
        )  # fmt: skip


def _sampling(config: PretrainConfig) -> FaceSampling:
    return FaceSampling(frame_size=config.frame_size, crop_size=config.crop_size, frames_per_identity=config.frames_per_identity)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or name.endswith(("cls_token", "pos_embed", "mask_token"))
        (plain if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted((set(saved) | set(current)) - set(RUNTIME_KEYS))
    return [f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} now" for k in keys if saved.get(k) != current.get(k)]


def _prepare_folder(out: Path, config: PretrainConfig, resume: bool) -> bool:
    """Check or create the run folder; True when an earlier run in it is continued."""
    config_file = out / CONFIG_FILE
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the pretraining run")
    if config_file.is_file():
        if not resume:
            raise UsageError(f"{out} already holds a pretraining run; add --resume to continue it, or choose another --out")
        saved = json.loads(config_file.read_text(encoding="utf-8"))["config"]
        differences = _differences(saved, config.to_dict())
        if differences:
            raise UsageError(f"cannot resume {out} with other settings: " + "; ".join(differences[:6]))
        return True
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is a folder that is not empty; choose a new folder for the pretraining run")
    out.mkdir(parents=True, exist_ok=True)
    return False


def _environment(device: torch.device, threads: int) -> dict[str, Any]:
    import timm

    from aucli import __version__

    return {
        "aucli": __version__, "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
        "device": str(device), "threads": threads, "machine": platform.machine(),
    }  # fmt: skip


class _Batches:
    """Training batches by step: seeded epoch orders and per-face augmentation (the training recipe's view)."""

    def __init__(self, faces: np.ndarray, config: PretrainConfig) -> None:
        from aucli.engine.data import FaceTransform

        self.faces = faces
        self.config = config
        self.transform = FaceTransform(config.img_size, config.crop_size, True, True, config.hflip, config.color_jitter)
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = np.random.default_rng([STREAM, self.config.seed, 3, epoch]).permutation(len(self.faces))
        return self._orders[epoch]

    def __call__(self, step: int) -> torch.Tensor:
        """``(B, 3, img_size, img_size)`` uint8 faces of step ``step``."""
        size = self.config.batch_size
        images = []
        for g in range(step * size, (step + 1) * size):
            epoch, position = divmod(g, len(self.faces))
            face = torch.from_numpy(np.array(self.faces[self._order(epoch)[position]])).permute(2, 0, 1)
            generator = torch.Generator().manual_seed(seed_of(STREAM, self.config.seed, 4, g))
            images.append(self.transform(face, generator)[0])
        return torch.stack(images)


@torch.no_grad()
def _validation_loss(mae: MaskedAutoencoder, faces: torch.Tensor, keep: torch.Tensor, mean, std, device, precision: str) -> float:
    from aucli.engine.data import normalize
    from aucli.engine.evaluate import autocast_for

    mae.eval()
    total, count = 0.0, 0
    for start in range(0, len(faces), 64):
        images = normalize(faces[start : start + 64], mean, std, device=device)
        with autocast_for(device, precision):
            loss, _, _ = mae(images, keep[start : start + 64].to(device))
        total += float(loss) * len(images)
        count += len(images)
    mae.train()
    return total / max(count, 1)


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    threads: int | None = None,
    workers: int = 1,
    device: str = "auto",
    max_minutes: float | None = None,
    show_progress: bool = True,
    keep_cache: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> PretrainResult:
    """Pretrain ``config``'s encoder as a masked autoencoder on synthetic faces; files go to ``out``.

    Args:
        config: what to train (:class:`PretrainConfig`).
        out: the run folder (see the module docstring); must be new or empty unless ``resume``.
        resume: continue the run in ``out`` from its last saved state (a finished run is returned as is).
        threads: torch CPU threads (None: leave torch's setting).
        workers: processes rendering faces (rendering only; training runs in this process).
        device: auto, cpu, cuda, cuda:N.
        max_minutes: stop (state saved) once this much wall time has passed in this call; resume later.
        show_progress: rich progress on stderr.
        keep_cache: keep the rendered faces after the run finishes.
        on_step: called as ``on_step(step, loss)`` after every optimiser step.
    """
    from aucli.console import progress
    from aucli.engine.data import FaceTransform, normalize
    from aucli.engine.distributed import resolve_device
    from aucli.engine.evaluate import autocast_for
    from aucli.engine.runs import (
        MetricsLog,
        atomic_write_json,
        clean_partial_files,
        load_state,
        restore_optimizer,
        save_state,
        weights_from_state,
    )
    from aucli.engine.fold import lr_at

    started = time.perf_counter()
    out = Path(out)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    torch_device = resolve_device(device)
    if (out / CARD_FILE).is_file() and resume:
        return _finished_result(out, config)
    resuming = _prepare_folder(out, config, resume)
    clean_partial_files(out)
    if not resuming:
        atomic_write_json(
            out / CONFIG_FILE,
            {
                "format": RUN_FORMAT,
                "config": config.to_dict(),
                "environment": _environment(torch_device, torch.get_num_threads()),
            },
        )
    mae = build_mae(config).to(torch_device)
    mean, std = encoder_normalisation(mae.encoder)
    keep_count = mae.keep_count(config.mask_ratio)

    # ---------------------------------------------------------------- faces
    sampling = _sampling(config)
    render_started = time.perf_counter()
    caches = [
        FaceCache(out / "cache", seed=config.seed, split="train", identities=config.identities, sampling=sampling),
        FaceCache(out / "cache", seed=config.seed, split="val", identities=config.val_identities, sampling=sampling),
    ]
    arrays = []
    with progress(transient=True) if show_progress else _Quiet() as bar:
        for cache in caches:
            task = bar.add_task(f"rendering {cache.split} faces", total=cache.identities, rate="")

            def report(done: int, total: int, task=task, cache=cache) -> None:
                bar.update(task, completed=done, rate=f"{done * cache.sampling.frames_per_identity} faces")

            arrays.append(cache.ensure(workers=workers, on_block=report))
    render_seconds = time.perf_counter() - render_started
    train_faces, val_array = arrays
    evaluation = FaceTransform(config.img_size, config.crop_size, False)
    val_faces = torch.stack([evaluation(torch.from_numpy(np.array(f)).permute(2, 0, 1))[0] for f in val_array])
    val_keep = random_keep(
        len(val_faces), mae.n_patches, keep_count, torch.Generator().manual_seed(seed_of(STREAM, config.seed, 6))
    )
    batches = _Batches(train_faces, config)

    # ---------------------------------------------------------------- optimiser and state
    optimizer = torch.optim.AdamW(_param_groups(mae, config.weight_decay), lr=config.lr, betas=config.betas)
    log = MetricsLog(out / "metrics.jsonl")
    position: dict[str, Any] = {
        "step": 0,
        "log_offset": 0,
        "train_loss": [],
        "val_loss": [],
        "train_seconds": 0.0,
        "render_seconds": 0.0,
    }
    saved = load_state(out) if resuming else None
    if saved is not None:
        payload, tensors = saved
        mae.load_state_dict(weights_from_state(tensors))
        restore_optimizer(
            optimizer, payload["optimizer"], {k: v.to(torch_device) if k.startswith("optim.") else v for k, v in tensors.items()}
        )
        position = payload["position"]
        log.truncate(int(position["log_offset"]))
    else:
        log.truncate(0)
    position["render_seconds"] = float(position.get("render_seconds", 0.0)) + render_seconds
    step = int(position["step"])

    window: list[float] = []
    window_seconds = 0.0

    def save_now() -> None:
        nonlocal window, window_seconds
        position["train_seconds"] = float(position["train_seconds"]) + window_seconds
        window, window_seconds = [], 0.0  # a resumed run starts a new log interval
        position["step"] = step
        position["log_offset"] = log.offset()
        save_state(out, step=step, position=position, weights=mae.state_dict(), optimizer=optimizer)

    if step == 0 and not position["val_loss"]:
        loss0 = _validation_loss(mae, val_faces, val_keep, mean, std, torch_device, config.precision)
        position["val_loss"].append([0, loss0])
        log.write({"event": "val", "step": 0, "loss": loss0})

    # ---------------------------------------------------------------- training
    mae.train()
    deadline = started + max_minutes * 60.0 if max_minutes is not None else math.inf
    warmup = min(config.warmup_steps, config.steps)
    try:
        with progress() if show_progress else _Quiet() as bar:
            task = bar.add_task("pretraining (MAE)", total=config.steps, completed=step, rate="")
            while step < config.steps:
                step_started = time.perf_counter()
                lr = lr_at(step, lr=config.lr, total_steps=config.steps, warmup_steps=warmup, min_lr_ratio=config.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = normalize(batches(step), mean, std, device=torch_device)
                keep = random_keep(
                    len(images), mae.n_patches, keep_count, torch.Generator().manual_seed(seed_of(STREAM, config.seed, 5, step))
                )
                with autocast_for(torch_device, config.precision):
                    loss, _, _ = mae(images, keep.to(torch_device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(mae.parameters(), config.grad_clip)
                optimizer.step()
                step += 1
                value = float(loss.detach())
                window_seconds += time.perf_counter() - step_started
                if not math.isfinite(value):
                    raise UsageError(
                        f"the reconstruction loss became {value} at step {step}; lower --override lr=... or use precision=fp32"
                    )
                window.append(value)
                if on_step:
                    on_step(step, value)
                if step % config.log_every == 0 or step == config.steps:
                    position["train_seconds"] = float(position["train_seconds"]) + window_seconds
                    mean_loss = float(np.mean(window))
                    rate = len(window) * config.batch_size / max(window_seconds, 1e-9)
                    position["train_loss"].append([step, mean_loss])
                    log.write(
                        {
                            "event": "train",
                            "step": step,
                            "loss": mean_loss,
                            "lr": lr,
                            "faces_per_s": rate,
                            "train_seconds": position["train_seconds"],
                        }
                    )
                    bar.update(task, rate=f"loss {mean_loss:.3f} | {rate:.0f} faces/s")
                    window, window_seconds = [], 0.0
                if step % config.eval_every == 0 or step == config.steps:
                    value = _validation_loss(mae, val_faces, val_keep, mean, std, torch_device, config.precision)
                    position["val_loss"].append([step, value])
                    log.write({"event": "val", "step": step, "loss": value})
                bar.update(task, completed=step)
                if step % config.save_every == 0 and step < config.steps:
                    save_now()
                if time.perf_counter() > deadline and step < config.steps:
                    save_now()
                    return PretrainResult(
                        out, config, step, False, train_loss=position["train_loss"], val_loss=position["val_loss"]
                    )
    except KeyboardInterrupt:
        save_now()
        raise
    save_now()
    return _finish(out, config, mae, position, mean, std, torch_device, caches, keep_cache, show_progress)


class _Quiet:
    """A stand-in for the rich progress bar when progress is off."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def _finished_result(out: Path, config: PretrainConfig) -> PretrainResult:
    from aucli.model.weights import read_backbone_card

    card = read_backbone_card(out / CARD_FILE)
    saved = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))["config"]
    differences = _differences(saved, config.to_dict())
    if differences:
        raise UsageError(f"{out} holds a finished pretraining run with other settings: " + "; ".join(differences[:6]))
    history = card["pretraining"]["loss"]
    return PretrainResult(
        out, config, int(card["pretraining"]["steps"]), True, out / WEIGHTS_FILE, card, history["train"], history["val"]
    )


def _finish(
    out: Path, config: PretrainConfig, mae: MaskedAutoencoder, position: dict[str, Any], mean, std, device: torch.device,
    caches: list[FaceCache], keep_cache: bool, show_progress: bool,
) -> PretrainResult:  # fmt: skip
    """Round and save the encoder, probe it against a random-init encoder, write the cards, clean up."""
    from aucli.fileio import atomic_write_json, atomic_write_text
    from aucli.pretrain.card import build_card, card_markdown
    from aucli.model.weights import save_encoder

    encoder = mae.encoder.eval()
    dtype = torch.float16 if config.encoder_dtype == "float16" else torch.float32
    with torch.no_grad():
        for tensor in encoder.state_dict().values():
            tensor.copy_(tensor.to(dtype).to(tensor.dtype))
    metadata = {
        "architecture": config.architecture,
        "overrides": json.dumps(config.overrides, sort_keys=True),
        "img_size": str(config.img_size),
    }
    weights = save_encoder(encoder, out / WEIGHTS_FILE, dtype=dtype, metadata=metadata)
    probe = None
    if config.probe_identities > 0:
        probe = _probe(config, encoder, mean, std, device, show_progress)
    environment = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))["environment"]
    environment["precision"] = (
        "bf16" if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda") else "fp32"
    )
    card = build_card(config, weights=weights, mean=mean, std=std, position=position, probe=probe, environment=environment)
    atomic_write_json(out / CARD_FILE, card)
    atomic_write_text(out / MARKDOWN_FILE, card_markdown(card))
    for leftover in [out / "state.json", *out.glob("state-*.safetensors")]:
        leftover.unlink(missing_ok=True)
    if not keep_cache:
        for cache in caches:
            cache.remove()
        if (out / "cache").is_dir() and not any((out / "cache").iterdir()):
            (out / "cache").rmdir()
    return PretrainResult(
        out, config, int(position["step"]), True, out / WEIGHTS_FILE, card, position["train_loss"], position["val_loss"], encoder
    )


def _probe(config: PretrainConfig, encoder: nn.Module, mean, std, device: torch.device, show_progress: bool) -> dict[str, Any]:
    """The AU linear probe of the pretrained encoder, a random-init encoder of the same shape, and raw pixels."""
    from aucli.console import err_console
    from aucli.pretrain.probe import probe_encoders, render_probe_faces

    if show_progress:
        err_console.print(f"AU probe: rendering {config.probe_identities} x {config.probe_frames} faces of new identities ...")
    probe_started = time.perf_counter()
    faces = render_probe_faces(identities=config.probe_identities, frames_per_identity=config.probe_frames, seed=config.seed,
                               img_size=config.img_size, sampling=_sampling(config))  # fmt: skip
    random_init = build_mae(config).encoder.to(device).eval()
    scores = probe_encoders(
        {"pretrained": encoder, "random init": random_init}, faces, mean=mean, std=std, device=device, seed=config.seed
    )
    return {
        "faces": len(faces.images),
        "identities": config.probe_identities,
        "au_rate": round(float(faces.presence.mean()), 4),
        "seconds": round(time.perf_counter() - probe_started, 1),
        "results": {name: {kind: score.to_dict() for kind, score in kinds.items()} for name, kinds in scores.items()},
    }
