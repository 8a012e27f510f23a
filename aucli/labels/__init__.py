"""Label importers (BP4D, DISFA, OpenFace 2.0, CASME II, plain CSV), matching and export.

Each reader returns a :class:`~aucli.labels.table.LabelTable` with frame indices in the store's
convention; :func:`import_labels` matches it to a store's faces and writes a new label set.
"""

from __future__ import annotations

from aucli.labels.export import export_labels
from aucli.labels.importer import FORMATS, ImportReport, import_labels, match_labels, read_label_files
from aucli.labels.table import LabelTable, RecordingLabels, Target

__all__ = [
    "FORMATS",
    "ImportReport",
    "LabelTable",
    "RecordingLabels",
    "Target",
    "export_labels",
    "import_labels",
    "match_labels",
    "read_label_files",
]
