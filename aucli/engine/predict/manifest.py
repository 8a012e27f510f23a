"""The ``predictions.json`` manifest of a prediction folder: its format, reading, writing and planning.

The manifest says which checkpoint, AUs, thresholds, face options and shard made the folder's
tables, and each input's status (``pending``, ``done``, ``failed``) and table. A rerun reads it to
resume: inputs whose table exists are skipped, a folder made differently is refused (unless
``overwrite``), and an unsharded rerun keeps the entries of earlier runs into the same folder.
Every read and write of a manifest goes through this module (``aucli predict merge`` too).

Format (``aucli-predictions-1``)::

    format, table_format, columns, checkpoint (see aucli.engine.predict.inference.checkpoint_identity),
    au_names, thresholds, face_options, parameters (batch_size, precision, device, image_size),
    shard ({index, count} or null), corpus ({n_sources, keys_sha256}), inputs (one entry per input:
    key, path, kind, subject, recording, table, status, frames, faces, message), problems,
    created_at, created_by, updated_at, complete
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.engine.predict.inference import Predictor, same_checkpoint
from aucli.engine.predict.summary import InputOutcome, PredictSummary
from aucli.engine.predict.tables import table_columns, table_counts
from aucli.errors import UsageError
from aucli.fileio import atomic_write_bytes, json_safe, resolve_inside
from aucli.media.sources import MediaSource, natural_key

__all__ = [
    "IDENTITY_FACE_OPTIONS",
    "MANIFEST_FORMAT",
    "MANIFEST_INTERVAL",
    "MANIFEST_NAME",
    "MediaPlan",
    "check_folder",
    "check_out_folder",
    "check_table_slots",
    "finish_manifest",
    "keys_digest",
    "new_manifest",
    "plan_inputs",
    "read_manifest",
    "utc_now",
    "write_manifest",
]

MANIFEST_FORMAT = "aucli-predictions-1"
MANIFEST_NAME = "predictions.json"
#: Seconds between two rewrites of the manifest while tables are being written.
MANIFEST_INTERVAL = 2.0
#: Face options that change which frames and crops a table is made of; a folder predicted with
#: other values is not resumed (without ``overwrite``).
IDENTITY_FACE_OPTIONS = (
    "detector",
    "crop_size",
    "margin",
    "detect_width",
    "retry_full",
    "detect_every",
    "max_faces",
    "select",
    "every",
    "fps",
    "threshold",
)


# ------------------------------------------------------------------------------------ the file
def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def keys_digest(keys: Sequence[str]) -> str:
    """sha256 of the corpus' source keys in the given (discovery) order: shards of one corpus agree on it."""
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The folder's ``predictions.json``, checked for format; None when the folder has none.

    Every table name it lists is checked to lie inside ``folder`` (no absolute name, no ``..``, no
    symlink out of it), before anything is read, written or deleted: an edited or crafted manifest
    is refused with one error and nothing touched.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not valid JSON ({error}); it was not written by aucli predict, or was edited") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UsageError(f"{path} is not an aucli predictions manifest (expected format {MANIFEST_FORMAT!r}, found {found!r})")
    _check_fields(path, manifest)
    for entry in manifest.get("inputs", []):
        if entry.get("table"):
            resolve_inside(folder, entry["table"], str(path))
    return manifest


#: Fields every manifest holds, and their JSON types (NoneType: may be null).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "checkpoint": (dict,), "face_options": (dict, type(None)), "shard": (dict, type(None)), "corpus": (dict,),
    "inputs": (list,), "problems": (list,),
}  # fmt: skip
_STATUSES = ("pending", "done", "failed")


def _check_fields(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest whose fields are not of the types aucli writes (it was edited)."""
    edited = "; it was edited or does not come from aucli predict (nothing was changed)"
    for name, types in _FIELD_TYPES.items():
        if name not in manifest:
            raise UsageError(f"{path}: {name!r} is missing{edited}")
        if not isinstance(manifest[name], types):
            raise UsageError(f"{path}: {name!r} is a {type(manifest[name]).__name__}, not what aucli predict writes{edited}")
    shard = manifest.get("shard")
    if shard is not None and not all(isinstance(shard.get(k), int) for k in ("index", "count")):
        raise UsageError(f"{path}: 'shard' is not {{index, count}}{edited}")
    for k, entry in enumerate(manifest.get("inputs", []), start=1):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("table", ""), str)
            and entry.get("status") in _STATUSES
            and (entry["status"] != "done" or entry.get("table"))
            and all(type(entry.get(n, 0)) is int for n in ("frames", "faces"))
        ):
            raise UsageError(f"{path}: input {k} is not an entry aucli predict writes (key, table, status, frames, faces){edited}")


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``predictions.json`` atomically."""
    path = Path(folder) / MANIFEST_NAME
    text = json.dumps(json_safe(dict(manifest)), indent=2) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------ the folder's files
def _own_leftover(name: str) -> bool:
    """A file aucli leaves in an output folder before its manifest exists: an atomic write's
    temporary file (``.NAME.XXXX.tmp``) or the worker processes' parts folder (``..predict.parts``)."""
    return name.startswith(".") and name.endswith((".tmp", ".parts"))


def _shown(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_out_folder(out: Path, previous: Mapping[str, Any] | None) -> None:
    """Refuse an existing output folder without a manifest that holds anything aucli did not write.

    A folder with ``predictions.json`` is aucli's (its manifest says which tables are). One without
    it must be empty apart from leftovers of an aucli run killed before its first manifest
    (:func:`_own_leftover`): otherwise its files (label CSVs, say) could share a table's name and
    be read as a table, or replaced with ``--overwrite``.
    """
    if previous is not None or not out.is_dir():
        return
    foreign = sorted(_shown(p.name) for p in out.iterdir() if not _own_leftover(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UsageError(
            f"--out {out} holds files aucli predict did not write ({shown}) and no {MANIFEST_NAME}; "
            "give a new or empty folder (nothing was changed)"
        )


def check_table_slots(out: Path, previous: Mapping[str, Any] | None, names: Iterable[str]) -> None:
    """Refuse table names that would touch a file aucli did not write or reach outside ``out``.

    A file already at a table's name must be listed in the folder's manifest (``previous``): aucli
    writes the manifest, naming every table of the run, before its first table. And no name may
    lead out of ``out`` through a symbolic link in it. Called before anything is written or deleted.
    """
    listed = {e["table"].lower() for e in (previous or {}).get("inputs", []) if e.get("table")}
    base = out.resolve()
    for name in names:
        path = out / name
        if (path.exists() or path.is_symlink()) and name.lower() not in listed:
            raise UsageError(
                f"{path} exists but {out / MANIFEST_NAME} does not list it: aucli predict did not write it; "
                "move it away or choose another --out (nothing was changed)"
            )
        if not path.resolve().is_relative_to(base):
            raise UsageError(f"{path} leads outside {out} (a symbolic link in the folder); refusing to write it (nothing was changed)")


# ------------------------------------------------------------------------------------ a run's manifest
def new_manifest(
    predictor: Predictor,
    face_options: Any,
    *,
    table_format: str,
    shard: tuple[int, int] | None,
    keys: Sequence[str],
    problems: Sequence[str],
    batch_size: int,
) -> dict[str, Any]:
    """The manifest of a run that starts now (no inputs listed yet, not complete)."""
    from aucli import __version__

    precision = "bf16" if predictor.uses_bf16 else "fp32"
    return {
        "format": MANIFEST_FORMAT,
        "table_format": table_format,
        "columns": table_columns(predictor.au_names),
        "checkpoint": predictor.identity,
        "au_names": predictor.au_names,
        "thresholds": [float(t) for t in predictor.thresholds],
        "face_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(face_options).items()},
        "parameters": {"batch_size": batch_size, "precision": precision, "device": str(predictor.device), "image_size": predictor.image_size},
        "shard": {"index": shard[0], "count": shard[1]} if shard else None,
        "corpus": {"n_sources": len(keys), "keys_sha256": keys_digest(keys)},
        "inputs": [],
        "problems": list(problems),
        "created_at": utc_now(),
        "created_by": f"aucli {__version__}",
        "complete": False,
    }


def check_folder(out: Path, previous: Mapping[str, Any] | None, manifest: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse to resume a folder made by another checkpoint, format, face options or corpus split."""
    if previous is None or overwrite:
        return
    differences = []
    if not same_checkpoint(previous.get("checkpoint"), manifest["checkpoint"]):
        differences.append(f"checkpoint {previous.get('checkpoint', {}).get('name')} -> {manifest['checkpoint']['name']} (other files)")
    if previous.get("table_format") != manifest["table_format"]:
        differences.append(f"format {previous.get('table_format')} -> {manifest['table_format']}")
    before, now = previous.get("face_options") or {}, manifest["face_options"]
    differences.extend(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in IDENTITY_FACE_OPTIONS if before.get(k) != now.get(k))
    if previous.get("shard") != manifest["shard"]:
        differences.append(f"shard {_shard_text(previous.get('shard'))} -> {_shard_text(manifest['shard'])}")
    elif manifest["shard"] is not None and previous.get("corpus", {}).get("keys_sha256") != manifest["corpus"]["keys_sha256"]:
        differences.append("the corpus' input list (a shard's share depends on the whole list)")
    if differences:
        raise UsageError(
            f"{out} holds predictions made differently ({'; '.join(differences)}); use another --out, or --overwrite to predict again"
        )


def _shard_text(shard: Any) -> str:
    if not shard:
        return "none"
    return f"{shard['index']}/{shard['count']}"


def finish_manifest(out: Path, manifest: dict[str, Any], summary: PredictSummary, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the manifest at the end of a run (also after Ctrl-C): complete when no input is pending."""
    manifest["complete"] = all(e["status"] != "pending" for e in entries.values())
    manifest["updated_at"] = utc_now()
    manifest["problems"] = summary.problems
    write_manifest(out, manifest)


# ------------------------------------------------------------------------------------ planning
@dataclass
class MediaPlan:
    """What a run does: the sources to predict now, every input's table name and manifest entry.

    ``entries`` holds this run's inputs and (unsharded, same predictions) the inputs of earlier runs
    into the folder; the run updates them in place as tables are written.
    """

    todo: list[MediaSource] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_inputs(
    out: Path,
    previous: Mapping[str, Any] | None,
    manifest: dict[str, Any],
    sources: Sequence[MediaSource],
    names: dict[str, str],
    *,
    overwrite: bool,
    summary: PredictSummary,
) -> MediaPlan:
    """Decide per source of this run (``sources``): skip it (its table is there; a ``skipped``
    outcome in ``summary``) or predict it; list every entry in ``manifest["inputs"]``."""
    keys = list(names)
    resumed = previous is not None and not overwrite
    recorded = {e["key"]: e for e in (previous or {}).get("inputs", [])}
    plan = MediaPlan(names=dict(names))
    if resumed and manifest["shard"] is None:
        _keep_earlier_entries(plan, recorded, manifest, keys)
    check_table_slots(out, previous, (plan.names[s.key] for s in sources))
    for source in sources:
        plan.entries[source.key] = _plan_source(out, source, plan, recorded.get(source.key), overwrite, summary)
    manifest["inputs"] = sorted(plan.entries.values(), key=lambda e: natural_key(e["key"]))
    return plan


def _keep_earlier_entries(plan: MediaPlan, recorded: Mapping[str, dict[str, Any]], manifest: dict[str, Any], keys: list[str]) -> None:
    """An unsharded rerun into a folder: keep the inputs of earlier runs, and never give a new input
    a table name an earlier input already has."""
    taken = {e["table"].lower(): k for k, e in recorded.items() if e.get("table")}
    for key in keys:
        if key not in recorded and taken.get(plan.names[key].lower(), key) != key:
            plan.names[key] = key.strip("/") + "." + manifest["table_format"]
    plan.entries.update({k: e for k, e in recorded.items() if k not in set(keys)})
    every_key = sorted(set(keys) | set(plan.entries), key=natural_key)
    manifest["corpus"] = {"n_sources": len(every_key), "keys_sha256": keys_digest(every_key)}


def _plan_source(
    out: Path, source: MediaSource, plan: MediaPlan, old: Mapping[str, Any] | None, overwrite: bool, summary: PredictSummary
) -> dict[str, Any]:
    """The manifest entry of one source of this run; a source whose table exists is skipped."""
    table = plan.names[source.key]
    entry: dict[str, Any] = {
        "key": source.key, "path": str(source.path), "kind": source.kind, "subject": source.subject,
        "recording": source.recording, "table": table, "status": "pending", "frames": 0, "faces": 0, "message": "",
    }  # fmt: skip
    if (out / table).is_file() and not overwrite:
        if old is not None and old.get("status") == "done" and old.get("table") == table:
            frames, faces = int(old.get("frames", 0)), int(old.get("faces", 0))
        else:
            frames, faces = table_counts(out / table)  # written just before an interruption
        entry.update(status="done", frames=frames, faces=faces, message=(old or {}).get("message", ""))
        summary.outcomes.append(
            InputOutcome(source.key, source.kind, "skipped", frames, faces, table, subject=source.subject, path=str(source.path))
        )
        return entry
    if overwrite and old is not None and old.get("table") and old["table"] != table:
        resolve_inside(out, old["table"], str(out / MANIFEST_NAME))  # read_manifest checked it too
        (out / old["table"]).unlink(missing_ok=True)  # our own table of the earlier run, under another name
    plan.todo.append(source)
    return entry
