"""Inference for ``aucli predict``: a checkpoint on its device, the evaluation view, batches of faces.

:class:`Predictor` loads a checkpoint of any method (a path or a registered name) once, turns an
aligned face crop into the model's input exactly as training evaluates it, and scores a batch of
such views (``inference_mode``; bf16 autocast on GPU, fp32 on CPU). :func:`checkpoint_identity`
says which checkpoint made a table, across machines (sha256 of both files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aucli.engine.data import FaceTransform, normalize
from aucli.engine.distributed import resolve_device
from aucli.engine.evaluate import autocast_for
from aucli.engine.predict.summary import PredictSummary
from aucli.errors import UsageError
from aucli.fileio import file_sha256
from aucli.model.checkpoint import checkpoint_paths, load_model_checkpoint
from aucli.model.registry import resolve_checkpoint

__all__ = ["PRECISIONS", "Predictor", "checkpoint_identity", "same_checkpoint", "start_summary"]

PRECISIONS = ("auto", "bf16", "fp32")


def checkpoint_identity(name: str | Path, meta_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a checkpoint across machines: both files' sha256, plus what it detects."""
    weights_path, meta_path = checkpoint_paths(meta_path)
    return {
        "name": str(name),
        "path": str(meta_path.resolve()),
        "weights_sha256": file_sha256(weights_path),
        "config_sha256": file_sha256(meta_path),
        "method": str(meta.get("method", "auformer")),
        "backbone": str(meta.get("recipe", {}).get("model", {}).get("backbone", "")),
        "au_names": list(meta["au_names"]),
        "thresholds": [float(t) for t in meta["thresholds"]],
    }


def same_checkpoint(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two identities name the same checkpoint files (paths may differ between machines)."""
    if not a or not b:
        return False
    return a.get("weights_sha256") == b.get("weights_sha256") and a.get("config_sha256") == b.get("config_sha256")


class Predictor:
    """A checkpoint ready for inference: the model on its device, the evaluation view, thresholds.

    Args:
        checkpoint: a checkpoint (``NAME.safetensors``, ``NAME.json`` or ``NAME``) of any training
            method, or a name in the checkpoint registry (:mod:`aucli.model.registry`).
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``bf16`` or ``fp32``.
        backbone_weights: the backbone weight file, when the one the checkpoint records has moved.

    Attributes:
        au_names: the AUs, in probability column order.
        thresholds: (n_aus,) float64 per-AU decision thresholds of the checkpoint.
        image_size: side of the model's input; crops are resized to ``transform.resize`` and centre
            cropped to it, exactly as training evaluates.
        identity: see :func:`checkpoint_identity`.
    """

    def __init__(
        self, checkpoint: str | Path, *, device: str = "auto", precision: str = "auto", backbone_weights: str | None = None
    ) -> None:
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        meta_path = resolve_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.precision = precision
        loaded = load_model_checkpoint(meta_path, device=self.device, backbone_weights=backbone_weights)
        self.model = loaded.model.eval()
        self.meta = loaded.meta
        self.au_names: list[str] = list(loaded.au_names)
        self.thresholds = np.asarray(loaded.thresholds, dtype=np.float64)
        data_config = loaded.data_config
        self.mean = [float(v) for v in data_config["mean"]]
        self.std = [float(v) for v in data_config["std"]]
        self.image_size = int(data_config["input_size"][-1])
        self.transform = FaceTransform.from_config(loaded.recipe.data, self.image_size, train=False)
        self.identity = checkpoint_identity(checkpoint, meta_path, loaded.meta)

    @property
    def uses_bf16(self) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and self.device.type == "cuda")

    def describe(self) -> str:
        """One line: the checkpoint, its method and backbone, and the AUs it detects."""
        ident = self.identity
        return (
            f"checkpoint {ident['name']} ({ident['method']}, {ident['backbone']}, {self.image_size}px): "
            f"{len(self.au_names)} AUs {' '.join(self.au_names)}; device {self.device}, {'bf16' if self.uses_bf16 else 'fp32'}"
        )

    def prepare(self, crop: np.ndarray) -> torch.Tensor:
        """An aligned face crop ``(S, S, 3) uint8 RGB`` -> the model's view ``(3, H, W) uint8``."""
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
        return self.transform(tensor)[0]

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W) uint8`` model views -> ``(B, n_aus) float32`` probabilities (main head)."""
        if images.shape[0] == 0:
            return np.zeros((0, len(self.au_names)), np.float32)
        if self.device.type == "cuda":
            images = images.pin_memory()
        with torch.inference_mode(), autocast_for(self.device, "bf16" if self.uses_bf16 else "fp32"):
            x = normalize(images, self.mean, self.std, device=self.device)
            logits = self.model(x).logits
        return torch.sigmoid(logits.float()).cpu().numpy()


def start_summary(predictor: Predictor, *, out: Path | None, table_format: str, shard: tuple[int, int] | None = None) -> PredictSummary:
    """An empty :class:`PredictSummary` of a run with ``predictor``."""
    return PredictSummary(
        out=out,
        checkpoint=predictor.identity,
        au_names=predictor.au_names,
        thresholds=[float(t) for t in predictor.thresholds],
        device=str(predictor.device),
        precision="bf16" if predictor.uses_bf16 else "fp32",
        table_format=table_format,
        shard=shard,
    )
