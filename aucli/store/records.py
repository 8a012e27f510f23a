"""Plain records the store hands out: sources, label sets, runs."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelSet", "Run", "SourceInfo", "SourceRecord", "utc_now", "version_string"]


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def version_string() -> str:
    """``aucli <version>``, written into what aucli creates."""
    from aucli import __version__

    return f"aucli {__version__}"


@dataclass(frozen=True)
class SourceInfo:
    """What the store needs to know about an input before its faces are written."""

    key: str
    path: str
    kind: str
    subject: str
    recording: str
    size: int = 0
    mtime_ns: int = 0
    digest: str = ""


@dataclass(frozen=True)
class SourceRecord:
    """One committed row of /sources (``index`` is its row number)."""

    index: int
    key: str
    path: str
    kind: str
    subject: str
    recording: str
    size: int
    mtime_ns: int
    digest: str
    status: str
    n_frames: int
    n_faces: int
    row_start: int
    row_stop: int
    noface_start: int
    noface_stop: int
    message: str
    processed_at: str

    @property
    def rows(self) -> range:
        """Its face rows in /frames."""
        return range(self.row_start, self.row_stop)


@dataclass
class LabelSet:
    """A label set read from ``/labels/<name>``.

    Attributes:
        occurrence: (n_rows, n_aus) int8: 1 present, 0 absent, -1 unknown.
        intensity: (n_rows, n_aus) float32 (NaN unknown) or None.
        attrs: the set's attributes (format, files, threshold, created_at, ...).
    """

    name: str
    au_names: list[str]
    occurrence: np.ndarray
    intensity: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)

    def known(self) -> np.ndarray:
        """(n_aus,) number of rows with a known value per AU."""
        return (self.occurrence >= 0).sum(axis=0)

    def positives(self) -> np.ndarray:
        """(n_aus,) number of rows labelled present per AU."""
        return (self.occurrence == 1).sum(axis=0)

    def rates(self) -> np.ndarray:
        """(n_aus,) occurrence rate among known rows per AU (NaN where nothing is known)."""
        known = self.known()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(known > 0, self.positives() / np.maximum(known, 1), np.nan)

    def labelled_rows(self) -> np.ndarray:
        """Rows with at least one known AU value."""
        return np.flatnonzero((self.occurrence >= 0).any(axis=1))


@dataclass
class Run:
    """A prediction or audit run read from ``/<kind>/<name>``: its datasets and attributes."""

    kind: str
    name: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
