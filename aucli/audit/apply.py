"""Corrections back into the store: a reviewed queue becomes a new label set (the old one stays).

Accepted files:

- the CSV queue of :func:`aucli.audit.export.write_queue_csv`, ``corrected`` filled in (any CSV with
  the columns source, frame_start, frame_stop, au, corrected; track defaults to 0);
- a Label Studio export: JSON (tasks with ``annotations``; the last annotation that was not
  cancelled counts), JSON-MIN (one object per task with ``corrected``) or CSV (the task's data
  columns and ``corrected``).

Values of ``corrected``: ``1`` / ``present`` / ``yes``; ``0`` / ``absent`` / ``no``; ``-1`` /
``unknown`` (the frames become uncoded); empty / ``unsure`` / ``skip``: no change.

A queue names store keys (``source``) and label sets, never a file to open: a Label Studio task's
``image`` is ignored, so an edited or crafted queue cannot make ``apply`` read or write a file
elsewhere (tests/test_faults_manifests.py).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aucli.aus import parse_au
from aucli.errors import LabelFormatError, StoreError, UsageError
from aucli.labels.text import csv_delimiter, read_text

__all__ = ["ApplyReport", "Correction", "apply_corrections", "read_corrections"]

_VALUES = {"1": 1, "present": 1, "yes": 1, "y": 1, "true": 1, "0": 0, "absent": 0, "no": 0, "n": 0, "false": 0,
           "-1": -1, "unknown": -1, "uncoded": -1}
_SKIP = {"", "unsure", "skip", "?"}


@dataclass
class Correction:
    """One reviewed flag: set ``au`` to ``value`` on frames ``frame_start..frame_stop`` of (source, track)."""

    source: str
    track: int
    frame_start: int
    frame_stop: int
    au: str
    value: int
    where: str
    label_set: str = ""
    audit_run: str = ""


@dataclass
class ApplyReport:
    """What :func:`apply_corrections` changed, per AU (label-set order)."""

    name: str
    base: str
    file: str
    au_names: list[str]
    added: dict[str, int]
    removed: dict[str, int]
    uncoded: dict[str, int]
    unchanged: dict[str, int]
    corrections: int
    skipped: int
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label_set": self.name, "base": self.base, "file": self.file, "corrections": self.corrections,
                "skipped": self.skipped, "problems": list(self.problems),
                "per_au": {a: {"added": self.added[a], "removed": self.removed[a], "uncoded": self.uncoded[a],
                               "unchanged": self.unchanged[a]} for a in self.au_names}}

    def table(self):
        from rich.table import Table

        table = Table(title=f"Label set {self.name} = {self.base} + {self.corrections} correction(s) from {Path(self.file).name}")
        for column in ("AU", "added (0->1)", "removed (1->0)", "made unknown", "unchanged"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        for a in self.au_names:
            if self.added[a] or self.removed[a] or self.uncoded[a] or self.unchanged[a]:
                table.add_row(a, str(self.added[a]), str(self.removed[a]), str(self.uncoded[a]), str(self.unchanged[a]))
        table.add_section()
        table.add_row("total", str(sum(self.added.values())), str(sum(self.removed.values())), str(sum(self.uncoded.values())),
                      str(sum(self.unchanged.values())), style="bold")
        return table


def _value(raw: Any, where: str) -> int | None:
    text = str(raw if raw is not None else "").strip().lower()
    if text in _SKIP:
        return None
    text = text.removesuffix(".0")
    if text not in _VALUES:
        raise LabelFormatError(f"{where}: corrected value {raw!r} is not one of 1/present, 0/absent, -1/unknown, "
                               "or empty/unsure (no change)")
    return _VALUES[text]


def _int(value: Any, column: str, where: str) -> int:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        raise LabelFormatError(f"{where}: column {column!r} must be a whole number; found {value!r}") from None


def _from_mapping(item: dict[str, Any], value: Any, where: str) -> Correction | None:
    missing = [c for c in ("source", "frame_start", "frame_stop", "au") if c not in item or item[c] in (None, "")]
    if missing:
        raise LabelFormatError(f"{where}: missing {', '.join(missing)} (a correction names source, frame_start, "
                               "frame_stop, au and corrected)")
    parsed = _value(value, where)
    if parsed is None:
        return None
    start, stop = _int(item["frame_start"], "frame_start", where), _int(item["frame_stop"], "frame_stop", where)
    if stop < start:
        raise LabelFormatError(f"{where}: frame_stop {stop} is before frame_start {start}")
    track = item.get("track")
    return Correction(source=str(item["source"]), track=_int(track, "track", where) if track not in (None, "") else 0,
                      frame_start=start, frame_stop=stop, au=str(item["au"]), value=parsed, where=where,
                      label_set=str(item.get("label_set") or ""), audit_run=str(item.get("audit_run") or ""))


def _label_studio_choice(task: dict[str, Any], where: str) -> Any:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not annotations:
        return None
    for result in annotations[-1].get("result") or []:
        if result.get("from_name") == "corrected" and result.get("type", "choices") == "choices":
            choices = (result.get("value") or {}).get("choices") or []
            if len(choices) != 1:
                raise LabelFormatError(f"{where}: expected one choice for 'corrected', found {choices}")
            return choices[0]
    return None


def read_corrections(path: str | Path) -> tuple[list[Correction], int]:
    """Corrections in a reviewed CSV queue or a Label Studio export; also the number of rows left unanswered."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (expected the reviewed CSV queue or a Label Studio export)")
    text = read_text(path)
    if not text.strip():
        raise LabelFormatError(f"{path}: the queue is empty (an empty file)")
    corrections: list[Correction] = []
    skipped = 0
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise LabelFormatError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, list):
            raise LabelFormatError(f"{path}: expected a list of tasks (Label Studio JSON or JSON-MIN export)")
        for k, task in enumerate(data):
            where = f"{path.name} task {k + 1}"
            if not isinstance(task, dict):
                raise LabelFormatError(f"{where}: expected an object, found {type(task).__name__}")
            if "data" in task:
                item, value = task["data"], _label_studio_choice(task, where)
            else:
                item, value = task, task.get("corrected")
            correction = _from_mapping(item, value, where)
            if correction is None:
                skipped += 1
            else:
                corrections.append(correction)
        return corrections, skipped
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text))
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
    columns = set(reader.fieldnames)
    needed = {"source", "frame_start", "frame_stop", "au", "corrected"}
    if not needed <= columns:
        raise LabelFormatError(f"{path}: missing column(s) {', '.join(sorted(needed - columns))}; expected the CSV queue of "
                               "`aucli audit export --csv` with the corrected column filled in")
    for line, row in enumerate(reader, start=2):
        correction = _from_mapping(row, row.get("corrected"), f"{path.name} line {line}")
        if correction is None:
            skipped += 1
        else:
            corrections.append(correction)
    return corrections, skipped


def apply_corrections(store: str | Path, path: str | Path, *, name: str, base: str | None = None) -> ApplyReport:
    """Write label set ``name`` = ``base`` with the corrections of ``path`` applied.

    ``base`` defaults to the label set the corrections name (the queue's ``label_set`` column). Bad
    corrections (unknown source, AU, frames without a face) are warnings in ``problems``; the rest
    is applied. The base label set is left as it was.
    """
    from aucli.console import warn
    from aucli.store import CorpusStore

    corrections, skipped = read_corrections(path)
    if not corrections:
        detail = f"none of its {skipped} row(s) has a corrected value (1, 0 or -1)" if skipped else "it has no rows"
        raise LabelFormatError(f"{path}: the queue is empty: {detail}; nothing to apply")
    base = base if base is not None else _named_base(corrections)
    with CorpusStore.open(store, "a") as opened:
        if name in opened.label_sets():
            raise StoreError(f"label set {name!r} already exists in {store}; choose another name with --as")
        labels = opened.read_labels(base)
        occurrence = labels.occurrence.copy()
        intensity = None if labels.intensity is None else labels.intensity.copy()
        au_names = list(labels.au_names)
        assigned, problems, applied = _assign(opened, corrections, au_names, occurrence.shape, base)
        for problem in problems:
            warn(problem)
        if not applied:
            raise LabelFormatError(
                f"none of the {len(corrections)} correction(s) in {path} could be applied (see the warnings above); "
                f"label set {name!r} was not written"
            )
        mask = assigned != -2
        counts = _change_counts(occurrence, assigned, mask)
        changed = mask & (assigned != occurrence)
        occurrence[mask] = assigned[mask]
        if intensity is not None:
            intensity[changed] = np.nan
        opened.write_labels(name, au_names, occurrence, intensity=intensity, attrs={
            "format": "audit-corrections", "base": base, "files": [str(Path(path).resolve())],
            "audit_runs": sorted({c.audit_run for c in corrections if c.audit_run}), "corrections": applied,
            "changed_labels": int(changed.sum()),
        })
    return ApplyReport(
        name=name, base=base, file=str(path), au_names=au_names,
        **{key: {a: int(v[i]) for i, a in enumerate(au_names)} for key, v in counts.items()},
        corrections=applied, skipped=skipped, problems=problems,
    )


def _named_base(corrections: list[Correction]) -> str:
    """The one label set the corrections name (the queue's ``label_set`` column)."""
    named = sorted({c.label_set for c in corrections if c.label_set})
    if len(named) != 1:
        found = ", ".join(named) if named else "none"
        raise UsageError(f"say which label set the corrections apply to with --base LABELSET (the file names {found})")
    return named[0]


def _assign(opened, corrections: list[Correction], au_names: list[str], shape: tuple[int, ...], base: str):
    """(assigned, problems, applied): the value each correction sets, per (face row, AU), -2 where
    none does; the corrections that could not be applied; how many were."""
    assigned = np.full(shape, -2, np.int8)
    where_assigned: dict[tuple[int, int], str] = {}
    rows_of: dict[tuple[str, int], dict[int, int]] = {}
    problems: list[str] = []
    applied = 0
    for c in corrections:
        try:
            au = parse_au(c.au)
        except UsageError:
            problems.append(f"{c.where}: {c.au!r} is not an AU name")
            continue
        if au not in au_names:
            problems.append(f"{c.where}: label set {base!r} has no {au} (its AUs: {', '.join(au_names)})")
            continue
        key = (c.source, c.track)
        if key not in rows_of:
            record = opened.find_source(c.source)
            rows_of[key] = opened.frame_rows(record, track=c.track) if record is not None else {}
            if record is None:
                problems.append(f"{c.where}: no source {c.source!r} in {opened.path}")
                continue
        frames = rows_of[key]
        rows = [frames[f] for f in range(c.frame_start, c.frame_stop + 1) if f in frames]
        if not rows:
            problems.append(f"{c.where}: no face of track {c.track} on frames {c.frame_start}-{c.frame_stop} of {c.source}")
            continue
        k = au_names.index(au)
        for row in rows:
            previous = where_assigned.get((row, k))
            if previous is not None and assigned[row, k] != c.value:
                problems.append(f"{c.where}: {au} on face row {row} was set to {int(assigned[row, k])} by {previous}; "
                                f"the later value {c.value} wins")
            assigned[row, k] = c.value
            where_assigned[(row, k)] = c.where
        applied += 1
    return assigned, problems, applied


def _change_counts(occurrence: np.ndarray, assigned: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """(n_aus,) counts per kind of change: added (->1), removed (1->0), uncoded (->-1), unchanged."""
    before, after = occurrence[mask], assigned[mask]
    columns = np.nonzero(mask)[1]
    counts = {key: np.zeros(occurrence.shape[1], np.int64) for key in ("added", "removed", "uncoded", "unchanged")}
    np.add.at(counts["added"], columns[(after == 1) & (before != 1)], 1)
    np.add.at(counts["removed"], columns[(after == 0) & (before == 1)], 1)
    np.add.at(counts["uncoded"], columns[(after == -1) & (before != -1)], 1)
    np.add.at(counts["unchanged"], columns[after == before], 1)
    return counts
