"""Agreement of two label sets of one store (two coders, or before and after an audit's corrections)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aucli.audit.temporal import segment_ids, sequence_order
from aucli.errors import UsageError
from aucli.metrics import DEFAULT_MIN_IOU, AgreementReport, compare_label_sets

__all__ = ["compare_store_label_sets"]


def compare_store_label_sets(store: str | Path, reference: str, other: str, *, min_iou: float = DEFAULT_MIN_IOU,
                             max_gap: float = 2.0) -> AgreementReport:
    """Per-AU Cohen's kappa, F1 of ``other`` against ``reference`` and event agreement, on the AUs both sets have.

    Faces are put in sequence order (source, track, frame) so that events are runs of consecutive
    frames; a frame gap of more than ``max_gap`` usual steps ends an event.
    """
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        a = opened.read_labels(reference)
        b = opened.read_labels(other)
        common = [au for au in a.au_names if au in b.au_names]
        if not common:
            raise UsageError(f"label sets {reference!r} ({', '.join(a.au_names)}) and {other!r} ({', '.join(b.au_names)}) "
                             "share no AU")
        faces = opened.face_table(["source", "track", "frame"])
    labels_a = a.occurrence[:, [a.au_names.index(au) for au in common]]
    labels_b = b.occurrence[:, [b.au_names.index(au) for au in common]]
    coded = np.flatnonzero(((labels_a >= 0) & (labels_b >= 0)).any(axis=1))
    order = coded[sequence_order(faces["source"][coded], faces["track"][coded], faces["frame"][coded])]
    segments = segment_ids(faces["source"][order], faces["track"][order], faces["frame"][order], max_gap=max_gap)
    return compare_label_sets(labels_a[order], labels_b[order], au_names=common, sequences=segments, min_iou=min_iou,
                              names=(reference, other))
