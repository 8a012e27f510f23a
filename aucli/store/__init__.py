"""The aucli corpus store: one HDF5 file per corpus (schema in :mod:`aucli.store.schema`).

Importing this package does not import torch; the training dataset lives in
:mod:`aucli.store.dataset`.
"""

from __future__ import annotations

from aucli.store.schema import SCHEMA_VERSION
from aucli.store.store import (
    CorpusStore,
    LabelSet,
    Run,
    SourceInfo,
    SourceRecord,
    SourceWriter,
    check_output_path,
    open_store,
)

__all__ = [
    "SCHEMA_VERSION",
    "CorpusStore",
    "LabelSet",
    "Run",
    "SourceInfo",
    "SourceRecord",
    "SourceWriter",
    "check_output_path",
    "open_store",
]
