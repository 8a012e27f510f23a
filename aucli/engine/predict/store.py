"""Store inputs: every face row of a corpus store scored from its stored crops, kept inside the store.

The result is written atomically into the store as ``/predictions/<run>``::

    probs       (n_faces, n_aus) float32   probability per face row and AU
    decisions   (n_faces, n_aus) int8      1 where probs >= the AU's threshold
    thresholds  (n_aus,) float64
    au_names    (n_aus,) str
    attributes  checkpoint (name, path, sha256 of both files, method, backbone), au_names,
                thresholds, precision, batch_size, device, image_size

Crops are read and turned into model views in a thread (:class:`aucli.prefetch.Producer`) while
the model scores the previous batch.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aucli.console import progress
from aucli.engine.predict.inference import Predictor, same_checkpoint, start_summary
from aucli.engine.predict.summary import InputOutcome, PredictSummary
from aucli.errors import StoreError, UsageError
from aucli.prefetch import Producer, Put
from aucli.store import CorpusStore
from aucli.store.schema import check_name

__all__ = ["STORE_SUFFIXES", "default_run_name", "is_store_path", "predict_store"]

#: Inputs with these suffixes are corpus stores (scored from their crops), not media.
STORE_SUFFIXES = (".h5", ".hdf5")


def is_store_path(path: str | Path) -> bool:
    """Whether an input names a corpus store (an ``.h5``/``.hdf5`` file)."""
    return Path(path).suffix.lower() in STORE_SUFFIXES


def default_run_name(identity: dict[str, Any]) -> str:
    """A run name from the checkpoint: its stem, with its folder's name for generic stems (``fold1-best``)."""
    path = Path(identity.get("path") or identity["name"])
    stem = path.stem
    if stem in ("best", "last", "final", "checkpoint", "model") and path.parent.name:
        stem = f"{path.parent.name}-{stem}"
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.") or "predictions"
    if not name[0].isalnum():
        name = "p" + name
    return name[:100]


def predict_store(
    store_path: str | Path,
    checkpoint: str | Path | Predictor,
    *,
    run_name: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    backbone_weights: str | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """Predict every face row of a store and write ``/predictions/<run>`` into it, atomically.

    Args:
        store_path: a corpus store made by ``aucli preprocess``.
        checkpoint: a checkpoint path or registry name, or a :class:`Predictor`.
        run_name: the run's name (default: from the checkpoint, see :func:`default_run_name`).
        batch_size, device, precision, backbone_weights: as :func:`aucli.engine.predict.predict_sources`.
        overwrite: replace a run of that name (by default an existing run of the same checkpoint
            over the same rows is kept and the store is skipped; a default-named run of another
            checkpoint gets a free name, ``NAME-2``).

    Returns:
        a :class:`PredictSummary` with one outcome (``table`` = ``/predictions/<run>``).
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if run_name is not None:
        check_name(run_name, "run name")
    store_path = Path(store_path).expanduser()
    with CorpusStore.open(store_path, "r"):
        pass  # a missing or foreign store fails before the model is loaded
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    summary = start_summary(predictor, out=None, table_format="store")
    key = str(store_path)
    with CorpusStore.open(store_path, "r") as store:
        n_faces, n_frames = store.n_faces, store.n_faces + store.n_noface
        name, done = _run_name(store, store_path, predictor, run_name, overwrite)
        if done:
            summary.outcomes.append(InputOutcome(key, "store", "skipped", n_frames, n_faces, f"/predictions/{name}", path=key))
            summary.seconds = time.perf_counter() - started
            return summary
        probs = _score(store, predictor, batch_size, summary, show_progress, store_path.name)
    _write_run(store_path, name, probs, predictor, summary, batch_size, overwrite)
    summary.outcomes.append(InputOutcome(key, "store", "done", n_frames, n_faces, f"/predictions/{name}", path=key))
    summary.predicted_frames += n_faces
    summary.seconds = time.perf_counter() - started
    return summary


def _run_name(store: CorpusStore, store_path: Path, predictor: Predictor, run_name: str | None, overwrite: bool) -> tuple[str, bool]:
    """``(the run to write, False)``, or ``(name, True)`` when the store already holds this
    checkpoint's run over the same rows (kept unless ``overwrite``)."""
    name = run_name or default_run_name(predictor.identity)
    if name not in store.runs("predictions"):
        return name, False
    attrs = store.run_attrs("predictions", name)
    mine = same_checkpoint(attrs.get("checkpoint"), predictor.identity)
    if mine and int(attrs.get("n_faces", -1)) == store.n_faces and not overwrite:
        return name, True
    if overwrite:
        return name, False
    if run_name is not None:
        why = "another checkpoint" if not mine else "fewer faces (the store grew since)"
        raise StoreError(
            f"{store_path} already has predictions run {name!r} made with {why}; pass --overwrite to replace it or choose another --run-name"
        )
    return store.unique_run_name("predictions", name), False


def _score(store: CorpusStore, predictor: Predictor, batch_size: int, summary: PredictSummary, show_progress: bool, label: str) -> np.ndarray:
    """``(n_faces, n_aus)`` probabilities of every face row; crops are read ahead in a thread."""
    n_faces = store.n_faces
    probs = np.zeros((n_faces, len(predictor.au_names)), np.float32)

    def produce(put: Put) -> None:
        for start in range(0, n_faces, batch_size):
            crops = store.images(slice(start, min(start + batch_size, n_faces)))
            if not put((start, torch.stack([predictor.prepare(c) for c in crops]))):
                return

    producer = Producer("aucli-predict-store", 4, produce)
    bar = progress()
    bar.disable = not show_progress
    started = time.perf_counter()
    with bar:
        task = bar.add_task(label, total=n_faces or None, rate="")
        producer.start()
        try:
            for start, images in producer.drain():
                tick = time.perf_counter()
                probs[start : start + images.shape[0]] = predictor.probabilities(images)
                summary.model_seconds += time.perf_counter() - tick
                done = start + images.shape[0]
                bar.update(task, completed=done, rate=f"{done / max(time.perf_counter() - started, 1e-9):.1f} faces/s")
        finally:
            producer.stop()
    return probs


def _write_run(
    store_path: Path, name: str, probs: np.ndarray, predictor: Predictor, summary: PredictSummary, batch_size: int, overwrite: bool
) -> None:
    """Write ``/predictions/<name>``; an existing run of that name is replaced only once the new one is complete."""
    decisions = (np.round(probs.astype(np.float64), 6) >= predictor.thresholds[None, :]).astype(np.int8)
    attrs = {
        "kind": "aucli predict", "checkpoint": predictor.identity, "au_names": predictor.au_names,
        "thresholds": [float(t) for t in predictor.thresholds], "precision": summary.precision, "device": summary.device,
        "batch_size": batch_size, "image_size": predictor.image_size,
    }  # fmt: skip
    arrays = {
        "probs": probs, "decisions": decisions, "thresholds": predictor.thresholds.astype(np.float64),
        "au_names": np.asarray(predictor.au_names, dtype=object),
    }  # fmt: skip
    with CorpusStore.open(store_path, "a") as store:
        if overwrite and name in store.runs("predictions"):
            temporary = store.unique_run_name("predictions", f"{name}-new")
            store.write_run("predictions", temporary, arrays, attrs)
            store.delete_run("predictions", name)
            store.rename_run("predictions", temporary, name)
        else:
            store.write_run("predictions", name, arrays, attrs)
