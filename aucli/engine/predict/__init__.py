"""``aucli predict``: AU probabilities and decisions for videos, frame folders, images and stores.

- :mod:`~aucli.engine.predict.sources`: media discovery, order and sharding, the face stream;
- :mod:`~aucli.engine.predict.inference`: :class:`Predictor` (a checkpoint ready for inference);
- :mod:`~aucli.engine.predict.batching`: faces batched across frames and inputs, rows back to tables;
- :mod:`~aucli.engine.predict.media`: :func:`predict_sources`, one table per media input;
- :mod:`~aucli.engine.predict.store`: :func:`predict_store`, ``/predictions/<run>`` inside a store;
- :mod:`~aucli.engine.predict.tables`: the table format (CSV or Parquet), written and read;
- :mod:`~aucli.engine.predict.manifest`: ``predictions.json``, written, read and planned from;
- :mod:`~aucli.engine.predict.merge`: joining the folders of sharded runs;
- :mod:`~aucli.engine.predict.run`: :func:`run_predict`, what the command calls;
- :mod:`~aucli.engine.predict.summary`: outcomes, the run's report and its rendering.

The threads that run ahead (face extraction, crop reading) are :class:`aucli.prefetch.Producer`.
"""

from aucli.engine.predict.inference import Predictor, checkpoint_identity
from aucli.engine.predict.media import predict_sources
from aucli.engine.predict.run import run_predict
from aucli.engine.predict.sources import parse_shard, shard_of
from aucli.engine.predict.store import STORE_SUFFIXES, is_store_path, predict_store
from aucli.engine.predict.summary import InputOutcome, PredictSummary, check_predicted_any, render_predict_summary

__all__ = [
    "STORE_SUFFIXES",
    "InputOutcome",
    "PredictSummary",
    "Predictor",
    "check_predicted_any",
    "checkpoint_identity",
    "is_store_path",
    "parse_shard",
    "predict_sources",
    "predict_store",
    "render_predict_summary",
    "run_predict",
    "shard_of",
]
