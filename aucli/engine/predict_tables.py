"""The former home of the prediction tables and manifest; they live in :mod:`aucli.engine.predict.tables`
and :mod:`aucli.engine.predict.manifest` now. This module keeps ``aucli.engine.predict_tables``
importable for code written against it (the demo); import from the new modules in new code."""

from aucli.engine.predict.manifest import MANIFEST_FORMAT, MANIFEST_NAME, keys_digest, read_manifest, utc_now, write_manifest
from aucli.engine.predict.tables import (
    BASE_COLUMNS,
    PROBABILITY_DECIMALS,
    TABLE_FORMATS,
    PredictionTable,
    check_table_format,
    read_table,
    table_columns,
    table_counts,
    table_names,
    write_table,
)

__all__ = [
    "BASE_COLUMNS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "PROBABILITY_DECIMALS",
    "TABLE_FORMATS",
    "PredictionTable",
    "check_table_format",
    "keys_digest",
    "read_manifest",
    "read_table",
    "table_columns",
    "table_counts",
    "table_names",
    "utc_now",
    "write_manifest",
    "write_table",
]
