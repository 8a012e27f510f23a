"""``aucli predict merge``: join the output folders of ``aucli predict --shard i/n`` into one.

Every shard folder's ``predictions.json`` records the checkpoint (sha256 of both files), the
table format, the face options, the shard ``i/n`` and the whole corpus' key list (count and
digest). The merge checks, before writing anything, that:

- every folder is a finished predict output (no input left ``pending``);
- all come from the same checkpoint files, table format and face options;
- all are shards of the same corpus with the same n, each shard 1..n exactly once;
- no input appears in two shards, and together they cover the corpus' every key;
- every table a shard's manifest names lies inside that shard folder, and lands inside the output
  folder, where it replaces no file aucli did not write (an output folder without a manifest must be
  new or empty): a crafted manifest cannot make the merge read or overwrite a file elsewhere.

Then the tables are copied (each atomically) into the output folder, and a merged manifest is
written last, without a shard: the result reads like one unsharded run. Inputs that failed in
their shard stay ``failed`` in the merged manifest (and are reported).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.console import warn
from aucli.engine.predict.manifest import (
    MANIFEST_NAME,
    check_out_folder,
    check_table_slots,
    keys_digest,
    read_manifest,
    utc_now,
    write_manifest,
)
from aucli.errors import UsageError
from aucli.fileio import file_mode, resolve_inside
from aucli.media.sources import natural_key

__all__ = ["MergeSummary", "merge_predictions", "render_merge_summary"]


@dataclass
class MergeSummary:
    """What :func:`merge_predictions` wrote."""

    out: Path
    folders: list[Path]
    shards: int
    checkpoint: dict[str, Any]
    inputs: int = 0
    done: int = 0
    failed: int = 0
    frames: int = 0
    faces: int = 0
    tables: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "folders": [str(f) for f in self.folders],
            "shards": self.shards,
            "checkpoint": dict(self.checkpoint),
            "inputs": self.inputs,
            "done": self.done,
            "failed": self.failed,
            "frames": self.frames,
            "faces": self.faces,
            "tables": self.tables,
            "problems": list(self.problems),
            "seconds": round(self.seconds, 3),
        }


def _shard(manifest: dict[str, Any]) -> tuple[int, int]:
    shard = manifest.get("shard")
    return (1, 1) if not shard else (int(shard["index"]), int(shard["count"]))


def merge_predictions(folders: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> MergeSummary:
    """Check and join shard folders into ``out``; see the module docstring.

    Args:
        folders: the output folders of ``aucli predict --shard i/n`` (any order).
        out: the merged folder (created); it must not be one of ``folders``.
        overwrite: write into an ``out`` that already holds predictions.

    Raises:
        UsageError: a folder is not a predict output or unfinished; checkpoints, formats, face
            options or corpora differ; shards are missing, repeated or overlap.
    """
    started = time.perf_counter()
    if not folders:
        raise UsageError("give the shard folders to merge")
    paths = [Path(f).expanduser() for f in folders]
    out = Path(out).expanduser()
    manifests = [_finished_manifest(folder, out) for folder in paths]
    _check_same_run(paths, manifests)
    count = _check_shards(paths, manifests)
    entries = _check_inputs(paths, manifests)
    previous = read_manifest(out) if out.is_dir() else None
    if previous is not None and not overwrite:
        raise UsageError(f"{out} already holds predictions; choose a new --out, or --overwrite to replace them")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    check_out_folder(out, previous)
    check_table_slots(out, previous, (entry["table"] for _, entry in entries if entry.get("status") == "done"))
    out.mkdir(parents=True, exist_ok=True)
    summary = MergeSummary(out=out, folders=paths, shards=count, checkpoint=manifests[0]["checkpoint"], inputs=len(entries))
    merged_inputs = [_copy_entry(folder, entry, out, summary) for folder, entry in entries]
    write_manifest(out, _merged_manifest(paths, manifests, merged_inputs))
    summary.seconds = time.perf_counter() - started
    return summary


def _finished_manifest(folder: Path, out: Path) -> dict[str, Any]:
    """The manifest of a finished shard folder (not ``out`` itself)."""
    if folder.resolve() == out.resolve():
        raise UsageError(f"--out {out} is one of the folders to merge; write the merged result to a new folder")
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    manifest = read_manifest(folder)
    if manifest is None:
        raise UsageError(f"{folder} has no {MANIFEST_NAME}: not an output folder of aucli predict")
    pending = [e["key"] for e in manifest.get("inputs", []) if e.get("status") == "pending"]
    if pending or not manifest.get("complete", False):
        shard = _shard(manifest)
        detail = f"{len(pending)} input(s) pending, e.g. {pending[0]}" if pending else "the run did not finish"
        raise UsageError(f"{folder} (shard {shard[0]}/{shard[1]}) is incomplete: {detail}; rerun its aucli predict command to finish it")
    return manifest


def _check_same_run(paths: list[Path], manifests: list[dict[str, Any]]) -> None:
    """Every shard from the same checkpoint files, table format, face options and input list."""
    first, base = manifests[0], paths[0]
    for folder, manifest in zip(paths[1:], manifests[1:]):
        mine, theirs = first["checkpoint"], manifest["checkpoint"]
        if (mine.get("weights_sha256"), mine.get("config_sha256")) != (theirs.get("weights_sha256"), theirs.get("config_sha256")):
            raise UsageError(
                f"{folder} was predicted with checkpoint {theirs.get('name')} (sha256 {str(theirs.get('weights_sha256'))[:12]}), "
                f"{base} with {mine.get('name')} (sha256 {str(mine.get('weights_sha256'))[:12]}); shards must come from the same checkpoint"
            )
        if manifest.get("table_format") != first.get("table_format"):
            raise UsageError(
                f"{folder} holds {manifest.get('table_format')} tables, {base} {first.get('table_format')}; predict all shards with one --format"
            )
        if manifest.get("face_options") != first.get("face_options"):
            before, now = first.get("face_options") or {}, manifest.get("face_options") or {}
            differ = ", ".join(f"{k} {before.get(k)!r} vs {now.get(k)!r}" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
            raise UsageError(f"{folder} and {base} were predicted with other face options ({differ}); predict all shards with the same options")
        if manifest.get("corpus") != first.get("corpus"):
            raise UsageError(
                f"{folder} and {base} are shards of different input lists ({manifest['corpus'].get('n_sources')} vs "
                f"{first['corpus'].get('n_sources')} inputs); give every shard the same inputs"
            )


def _check_shards(paths: list[Path], manifests: list[dict[str, Any]]) -> int:
    """Each shard 1..n exactly once, all of the same n; returns n."""
    count = _shard(manifests[0])[1]
    seen: dict[int, Path] = {}
    for folder, manifest in zip(paths, manifests):
        index, n = _shard(manifest)
        if n != count:
            raise UsageError(f"{folder} is shard {index}/{n}, {paths[0]} is one of {count}; every shard must split the inputs into the same n")
        if index in seen:
            raise UsageError(f"shard {index}/{n} is given twice: {seen[index]} and {folder}")
        seen[index] = folder
    absent = [i for i in range(1, count + 1) if i not in seen]
    if absent:
        raise UsageError(f"shard(s) {', '.join(f'{i}/{count}' for i in absent)} missing: give all {count} shard folders")
    return count


def _check_inputs(paths: list[Path], manifests: list[dict[str, Any]]) -> list[tuple[Path, dict[str, Any]]]:
    """Every input of the corpus in exactly one shard, every done table present; ``(folder, entry)``
    per input in natural key order."""
    owner: dict[str, Path] = {}
    entries: list[tuple[Path, dict[str, Any]]] = []
    for folder, manifest in zip(paths, manifests):
        for entry in manifest.get("inputs", []):
            key = entry["key"]
            if key in owner:
                raise UsageError(f"input {key} is in two shards ({owner[key]} and {folder}); shards must not overlap")
            owner[key] = folder
            entries.append((folder, entry))
    keys = sorted(owner, key=natural_key)
    corpus = manifests[0].get("corpus") or {}
    if len(keys) != int(corpus.get("n_sources", -1)) or keys_digest(keys) != corpus.get("keys_sha256"):
        raise UsageError(
            f"the shards hold {len(keys)} input(s), the corpus has {corpus.get('n_sources')}: some inputs are missing or "
            "do not belong to it; rerun the missing shard(s)"
        )
    for folder, entry in entries:
        if entry.get("status") == "done" and not (folder / entry["table"]).is_file():
            raise UsageError(f"{folder / entry['table']} is missing although {folder / MANIFEST_NAME} lists it as done; rerun that shard")
    return sorted(entries, key=lambda item: natural_key(item[1]["key"]))


def _copy_entry(folder: Path, entry: dict[str, Any], out: Path, summary: MergeSummary) -> dict[str, Any]:
    """Copy a done input's table into ``out`` (a failed one is reported); returns its merged entry."""
    if entry.get("status") == "done":
        source = resolve_inside(folder, entry["table"], str(folder / MANIFEST_NAME))  # read_manifest checked it too
        resolve_inside(out, entry["table"], str(folder / MANIFEST_NAME))  # and check_table_slots this
        _copy_atomic(source, out / entry["table"])
        summary.done += 1
        summary.tables += 1
        summary.frames += int(entry.get("frames", 0))
        summary.faces += int(entry.get("faces", 0))
    else:
        summary.failed += 1
        message = f"{entry['key']}: failed in shard folder {folder}: {entry.get('message', '')}".rstrip(": ")
        warn(message)
        summary.problems.append(message)
    return dict(entry)


def _merged_manifest(paths: list[Path], manifests: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One manifest for the merged folder: the first shard's settings, no shard, every input."""
    dropped = ("inputs", "shard", "problems", "created_at", "updated_at", "complete")
    merged = {key: value for key, value in manifests[0].items() if key not in dropped}
    merged.update(
        shard=None,
        inputs=inputs,
        problems=[p for m in manifests for p in m.get("problems", [])],
        merged_from=[
            {"folder": str(folder.resolve()), "shard": f"{_shard(m)[0]}/{_shard(m)[1]}", "created_at": m.get("created_at")}
            for folder, m in zip(paths, manifests)
        ],
        created_at=utc_now(),
        complete=True,
    )
    return merged


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.chmod(temporary, file_mode())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_merge_summary(summary: MergeSummary) -> None:
    """Print what the merge wrote."""
    from rich.table import Table

    from aucli.console import console

    table = Table(title=f"Merged {summary.shards} shard(s) into {summary.out}", show_header=True, header_style="bold")
    for column in ("inputs", "done", "failed", "frames", "faces", "tables copied"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.inputs), str(summary.done), str(summary.failed), str(summary.frames), str(summary.faces), str(summary.tables)
    )
    console.print(table)
    for problem in summary.problems:
        console.print(f"  - {problem}", highlight=False, markup=False)
    console.print(
        f"Checkpoint: {summary.checkpoint.get('name')} ({' '.join(summary.checkpoint.get('au_names', []))})", highlight=False
    )
