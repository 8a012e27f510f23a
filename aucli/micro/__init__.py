"""``aucli finetune-micro``: adapt a trained AUFormer checkpoint to micro-expression data (CASME II style).

A workflow on top of the engine: :mod:`~aucli.micro.recipe` (its settings), :mod:`~aucli.micro.data`
(CASME II-style label sets, event windows, subject folds), :mod:`~aucli.micro.transfer` (the
checkpoint's AUs, configuration and weights carried over), :mod:`~aucli.micro.finetune` (the run)
and :mod:`~aucli.micro.report` (before and after, per fold and pooled).
"""

from aucli.micro.finetune import finetune_micro
from aucli.micro.recipe import MICRO_DEFAULTS, MicroConfig, split_micro_recipe
from aucli.micro.report import MicroResult

__all__ = ["MICRO_DEFAULTS", "MicroConfig", "MicroResult", "finetune_micro", "split_micro_recipe"]
