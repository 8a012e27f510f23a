"""``aucli predict``: stores (``.h5``) get ``/predictions/<run>``; videos, frame folders and images get tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aucli.engine.predict.inference import Predictor
from aucli.engine.predict.manifest import check_out_folder, read_manifest
from aucli.engine.predict.media import predict_sources
from aucli.engine.predict.sources import parse_shard
from aucli.engine.predict.store import is_store_path, predict_store
from aucli.engine.predict.summary import PredictSummary
from aucli.engine.predict.tables import check_table_format
from aucli.errors import StoreError, UsageError

__all__ = ["run_predict"]


def run_predict(
    inputs: Sequence[str | Path],
    checkpoint: str | Path,
    out_dir: str | Path | None,
    *,
    run_name: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    backbone_weights: str | None = None,
    show_progress: bool = True,
    announce: Callable[[str], None] | None = None,
    **media_options: Any,
) -> PredictSummary:
    """``aucli predict``: stores (``.h5``) get ``/predictions/<run>``; media go to ``out_dir`` tables.

    The checkpoint is loaded once for all inputs. ``media_options`` are those of
    :func:`predict_sources` (face_options, table_format, shard, overwrite, workers, pattern, root).
    ``announce`` receives one line describing the checkpoint (its AU set) before any work.
    """
    stores = [Path(i) for i in inputs if is_store_path(i)]
    media = [i for i in inputs if not is_store_path(i)]
    _check_inputs(stores, media, out_dir, run_name, media_options)
    predictor = Predictor(checkpoint, device=device, precision=precision, backbone_weights=backbone_weights)
    if announce is not None:
        announce(predictor.describe())
    parts: list[PredictSummary] = []
    if media:
        parts.append(predict_sources(media, predictor, out_dir, batch_size=batch_size, show_progress=show_progress, **media_options))  # type: ignore[arg-type]
    overwrite = bool(media_options.get("overwrite"))
    for store in stores:
        parts.append(predict_store(store, predictor, run_name=run_name, batch_size=batch_size, overwrite=overwrite, show_progress=show_progress))
    summary = parts[0]
    for part in parts[1:]:
        summary.merge(part)
    return summary


def _check_inputs(stores: list[Path], media: list, out_dir: str | Path | None, run_name: str | None, media_options: dict[str, Any]) -> None:
    """Refuse option combinations that do not fit the inputs, before the checkpoint is loaded."""
    if not stores and not media:
        raise UsageError("give at least one input: a video, image, frame folder or store (.h5)")
    missing = [s for s in stores if not s.is_file()]
    if missing:
        raise StoreError(f"{missing[0]}: no such store; create one with `aucli preprocess INPUTS --out {missing[0]}`")
    if media and out_dir is None:
        raise UsageError("videos, images and frame folders need --out DIR for their prediction tables")
    if stores and media_options.get("shard") is not None:
        raise UsageError("--shard splits media inputs; a store is predicted whole (give stores without --shard)")
    if out_dir is not None and not media:
        raise UsageError("--out is the folder of media tables; a store's predictions go into the store (drop --out, or add media inputs)")
    if run_name is not None and not stores:
        raise UsageError("--run-name names the /predictions run of a store input; no store (.h5) was given")
    if media:
        check_table_format(media_options.get("table_format", "csv"))
        parse_shard(media_options.get("shard"))
        out = Path(out_dir).expanduser()  # type: ignore[arg-type]
        if out.is_dir():  # a folder aucli may not write into is refused before the checkpoint loads
            check_out_folder(out, read_manifest(out))
