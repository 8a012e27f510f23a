"""Run folders: layout, atomic files, metrics logs (JSONL and CSV) and the resumable training state.

Layout of ``aucli train --out runs/NAME``::

    runs/NAME/
      recipe.yaml                 the resolved recipe (every field), written before training
      run.json                    store, label set, AU columns, protocol partitions, folds, versions
      summary.json, summary.csv   per-AU test F1 over the folds run so far: each fold, mean, std
      fold1/
        split.json                train / validation / test subjects and face counts
        metrics.jsonl             one JSON object per line: {"event": "train", ...} every log_every
                                  steps, {"event": "eval", ...} after each evaluated epoch
        metrics.csv               one row per evaluated epoch (means and per-AU test F1)
        best.safetensors, best.json   the checkpoint selected on the validation subjects
        best_predictions.safetensors  its logits on the validation and test rows (rows, logits)
        state.json, state-<step>.safetensors   the resumable state (see below)
        result.json               the fold's outcome: best epoch, test and validation reports

The resumable state is a JSON file (positions, history, RNG states of Python and numpy, optimiser
hyper-parameters) and a safetensors file (trainable weights, optimiser moments, torch RNG states).
The tensor file has a unique name and is written first; ``state.json`` names it (and records its
sha256, checked on resume) and is replaced atomically afterwards, so a kill at any moment leaves a
consistent pair. Nothing is pickled. Names read back from ``state.json`` must stay inside the fold
folder (:func:`aucli.fileio.resolve_inside`).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aucli.errors import UsageError
from aucli.fileio import atomic_write_json, atomic_write_text, file_sha256, json_safe, load_tensors, resolve_inside, save_tensors
from aucli.model.checkpoint import verify_weights

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "save_tensors",
    "load_tensors",
    "MetricsLog",
    "write_metrics_csv",
    "rng_state",
    "restore_rng_state",
    "save_state",
    "load_state",
    "json_safe",
]

STATE_FILE = "state.json"
STATE_FORMAT = "aucli-train-state-1"


# ------------------------------------------------------------------------------------ metrics
class MetricsLog:
    """``metrics.jsonl``: appended line by line; truncated back to a saved offset on resume."""

    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, offset: int) -> None:
        """Drop what was logged after the state being resumed was saved."""
        if self.enabled and self.path.exists():
            with open(self.path, "r+b") as stream:
                stream.truncate(offset)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(json_safe(record)) + "\n")
            stream.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_metrics_csv(path: str | Path, evaluations: Sequence[Mapping[str, Any]], au_names: Sequence[str]) -> None:
    """One row per evaluated epoch: positions, losses, validation and test means, per-AU test F1."""
    columns = [
        "epoch", "step", "train_loss", "lr", "val_mean_f1", "val_mean_auc", "test_mean_f1", "test_mean_f1_at_0.5",
        "test_mean_auc", "best",
    ] + [f"test_f1_{au}" for au in au_names]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for record in evaluations:
        per_au = record.get("test_f1") or [None] * len(au_names)
        row = [record.get(c) for c in columns[: len(columns) - len(au_names)]]
        writer.writerow(["" if v is None else _round(v) for v in row + list(per_au)])
    atomic_write_text(path, buffer.getvalue())


def _round(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


# ------------------------------------------------------------------------------------ state
def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The RNG states of Python, numpy (JSON) and torch CPU/CUDA (tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    return plain, tensors


def restore_rng_state(plain: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimiser's state dict split into JSON (param groups, scalar entries) and tensors (moments)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def restore_optimizer(optimizer: torch.optim.Optimizer, plain: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    entries: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            entries.setdefault(int(index), {})[key] = value
    for index, values in plain.get("scalars", {}).items():
        entries.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": entries, "param_groups": plain["param_groups"]})


def save_state(
    folder: str | Path,
    *,
    step: int,
    position: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> Path:
    """Save the resumable state: ``state-<step>.safetensors`` first, then ``state.json`` atomically.

    Args:
        position: JSON-safe positions and history (epoch, batch, step, best score, log offset, ...).
        weights: the trainable tensors by name.
    """
    folder = Path(folder)
    rng_plain, rng_tensors = rng_state()
    optim_plain, optim_tensors = optimizer_tensors(optimizer)
    tensor_file = f"state-{step:09d}.safetensors"
    tensors = {**{f"weights.{k}": v for k, v in weights.items()}, **optim_tensors, **rng_tensors}
    save_tensors(folder / tensor_file, tensors, {"format": STATE_FORMAT})
    payload = {"format": STATE_FORMAT, "tensors": tensor_file, "tensors_sha256": file_sha256(folder / tensor_file), "position": position,
               "optimizer": optim_plain, "rng": rng_plain}  # fmt: skip
    atomic_write_json(folder / STATE_FILE, payload)
    for old in folder.glob("state-*.safetensors"):
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return folder / STATE_FILE


def load_state(folder: str | Path, *, accept_modified_weights: bool | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(state.json payload, tensors)`` of the last saved state, or None when there is none.

    The tensor file ``state.json`` names must lie in ``folder`` and match the sha256 recorded
    (states saved before it was recorded are not checked) unless ``accept_modified_weights``; see
    :func:`aucli.model.checkpoint.verify_weights`.
    """
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not valid JSON ({error}); the training state is damaged") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise UsageError(f"{path} is not an aucli training state (format {found!r})")
    tensor_file = resolve_inside(folder, str(payload.get("tensors", "")), str(path))
    if not tensor_file.is_file():
        raise UsageError(f"{path} names the tensor file {tensor_file.name}, which is not there; the training state is incomplete")
    verify_weights(tensor_file, payload.get("tensors_sha256"), record=path, accept=accept_modified_weights)
    tensors = load_tensors(tensor_file)
    return payload, tensors


def weights_from_state(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}


def clean_partial_files(folder: str | Path) -> None:
    """Remove temporary files a kill left behind (``.NAME.xxxx.tmp``)."""
    for leftover in Path(folder).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
