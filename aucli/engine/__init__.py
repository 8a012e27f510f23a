"""Training, evaluation and out-of-fold prediction on corpus stores.

- :func:`train` (``aucli train``): subject-independent folds, AUFormer or a baseline method,
  resumable, DDP under torchrun; see :mod:`aucli.engine.trainer`.
- :func:`evaluate_checkpoint` (``aucli eval``): a checkpoint on a store, across corpora through an
  AU map, with optional threshold re-fitting; see :mod:`aucli.engine.evaluate`.
- :func:`out_of_fold_predictions`: k fold models and every labelled face's out-of-fold logits,
  calibrated per fold on validation subjects (``aucli audit``); see :mod:`aucli.engine.oof`.

Models, their checkpoints and the registry live in :mod:`aucli.model`.
"""

from aucli.engine.evaluate import EvalResult, evaluate_checkpoint, predict_logits
from aucli.engine.oof import OOFResult, out_of_fold_predictions
from aucli.engine.results import FoldResult, TrainResult
from aucli.engine.trainer import train

__all__ = [
    "train",
    "TrainResult",
    "FoldResult",
    "evaluate_checkpoint",
    "EvalResult",
    "predict_logits",
    "out_of_fold_predictions",
    "OOFResult",
]
