"""What a store holds, as a plain dict (``--json``) and as rich tables (``aucli info STORE``)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from aucli.store.files import DAMAGE_ERRORS, damaged_error
from aucli.store.store import CorpusStore, LabelSet

__all__ = ["label_set_stats", "render_label_sets", "render_store_summary", "summarize_store"]

#: Run attributes shown in the summary when present.
_RUN_FIELDS = ("created_at", "checkpoint", "label_set", "labels", "method", "n_faces")


def label_set_stats(labels: LabelSet) -> dict[str, Any]:
    """Counts and per-AU occurrence rates of a label set (rates among known values)."""
    known = labels.known()
    positives = labels.positives()
    rates = labels.rates()
    return {
        "name": labels.name,
        "format": labels.attrs.get("format", ""),
        "au_names": list(labels.au_names),
        "labelled_faces": int(labels.labelled_rows().size),
        "has_intensity": labels.intensity is not None,
        "created_at": labels.attrs.get("created_at", ""),
        "files": len(labels.attrs.get("files", []) or []),
        "known": {au: int(k) for au, k in zip(labels.au_names, known)},
        "positives": {au: int(p) for au, p in zip(labels.au_names, positives)},
        "rates": {au: (None if math.isnan(r) else round(float(r), 4)) for au, r in zip(labels.au_names, rates)},
    }


def summarize_store(path: str | Path) -> dict[str, Any]:
    """Summary of the store at ``path``: sources, subjects, frames, faces, label sets, runs.

    Raises:
        StoreError: missing file, not an aucli store, other schema version.
    """
    path = Path(path)
    try:
        return _summarize(path)
    except DAMAGE_ERRORS as error:
        raise damaged_error(path, error) from None


def _summarize(path: Path) -> dict[str, Any]:
    with CorpusStore.open(path, "r") as store:
        attrs = store.attrs
        sources = store.sources()
        faces = store.face_table(["source", "track"])
        done = [s for s in sources if s.status == "done"]
        failed = [s for s in sources if s.status == "failed"]
        subject_of = store.face_subjects()
        face_counts = Counter(subject_of.tolist())
        source_counts = Counter(s.subject for s in done)
        frame_counts = Counter()
        for s in done:
            frame_counts[s.subject] += s.n_frames
        subjects = [
            {
                "subject": subject,
                "sources": source_counts[subject],
                "frames": frame_counts[subject],
                "faces": face_counts.get(subject, 0),
            }
            for subject in sorted(source_counts)
        ]
        label_sets = [label_set_stats(store.read_labels(name)) for name in store.label_sets()]
        runs = {}
        for kind in ("predictions", "audit"):
            runs[kind] = []
            for name in store.runs(kind):
                run_attrs = store.run_attrs(kind, name)
                runs[kind].append({"name": name, **{k: run_attrs[k] for k in _RUN_FIELDS if k in run_attrs}})
        return {
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "schema_version": attrs.get("schema_version"),
            "crop_size": store.crop_size,
            "compression": store.compression,
            "created_at": attrs.get("created_at", ""),
            "created_by": attrs.get("created_by", ""),
            "preprocess": attrs.get("preprocess", {}),
            "sources": {
                "done": len(done),
                "failed": len(failed),
                "by_kind": dict(Counter(s.kind for s in done)),
            },
            "subjects": subjects,
            "frames": int(sum(s.n_frames for s in done)),
            "faces": store.n_faces,
            "frames_without_face": store.n_noface,
            "faces_off_subject_track": int((faces["track"] != 0).sum()),
            "failed_sources": [{"key": s.key, "message": s.message} for s in failed],
            "sources_with_problems": [{"key": s.key, "message": s.message} for s in done if s.message],
            "label_sets": label_sets,
            "predictions": runs["predictions"],
            "audit": runs["audit"],
        }


def _size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def render_label_sets(label_sets: list[dict[str, Any]]) -> None:
    """Two tables: the label sets, and the AU occurrence rates of each (AU x set)."""
    from rich.table import Table

    from aucli.console import console

    if not label_sets:
        console.print("No label sets.")
        return
    sets = Table(title="Label sets", header_style="bold")
    for column, justify in (
        ("name", "left"),
        ("format", "left"),
        ("AUs", "right"),
        ("labelled faces", "right"),
        ("intensity", "left"),
        ("created", "left"),
    ):
        sets.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in label_sets:
        sets.add_row(
            item["name"],
            item["format"],
            str(len(item["au_names"])),
            str(item["labelled_faces"]),
            "yes" if item["has_intensity"] else "",
            str(item["created_at"])[:16].replace("T", " "),
        )
    console.print(sets)
    from aucli.aus import au_number

    aus = sorted({au for item in label_sets for au in item["au_names"]}, key=lambda a: (au_number(a), a))
    rates = Table(title="AU occurrence rate (positives / known)", header_style="bold")
    rates.add_column("AU")
    for item in label_sets:
        rates.add_column(item["name"], justify="right")
    for au in aus:
        cells = []
        for item in label_sets:
            rate = item["rates"].get(au)
            if au not in item["rates"]:
                cells.append("")
            elif rate is None:
                cells.append("[dim]unknown[/dim]")
            else:
                cells.append(f"{rate:.3f} [dim]({item['positives'][au]}/{item['known'][au]})[/dim]")
        rates.add_row(au, *cells)
    console.print(rates)


def render_store_summary(summary: dict[str, Any]) -> None:
    """Print a store summary (from :func:`summarize_store`) as rich tables."""
    from rich.table import Table

    from aucli.console import console

    overview = Table(title=f"Store {summary['path']}", show_header=False)
    overview.add_column(style="bold")
    overview.add_column()
    nouns = {"video": ("video", "videos"), "image": ("image", "images"), "frames": ("frame folder", "frame folders")}
    kinds = ", ".join(f"{n} {nouns.get(k, (k, k))[n != 1]}" for k, n in sorted(summary["sources"]["by_kind"].items()))
    rows = [
        (
            "schema",
            f"version {summary['schema_version']}, {summary['crop_size']}x{summary['crop_size']} crops, "
            f"compression {summary['compression']}",
        ),
        ("size", _size(summary["size_bytes"])),
        ("created", f"{summary['created_at']} by {summary['created_by']}"),
        (
            "sources",
            f"{summary['sources']['done']} done ({kinds or 'none'})"
            + (f", {summary['sources']['failed']} failed" if summary["sources"]["failed"] else ""),
        ),
        ("subjects", str(len(summary["subjects"]))),
        ("frames", f"{summary['frames']} sampled, {summary['frames_without_face']} without a face"),
        (
            "faces",
            f"{summary['faces']}"
            + (
                f" ({summary['faces_off_subject_track']} of other people than the subject)"
                if summary["faces_off_subject_track"]
                else ""
            ),
        ),
        ("label sets", ", ".join(s["name"] for s in summary["label_sets"]) or "none"),
        ("predictions", ", ".join(r["name"] for r in summary["predictions"]) or "none"),
        ("audit runs", ", ".join(r["name"] for r in summary["audit"]) or "none"),
    ]
    for key, value in rows:
        overview.add_row(key, value)
    console.print(overview)

    if summary["subjects"]:
        subjects = Table(title="Subjects", header_style="bold")
        for column in ("subject", "sources", "frames", "faces"):
            subjects.add_column(column, justify="left" if column == "subject" else "right")
        shown = summary["subjects"] if len(summary["subjects"]) <= 40 else summary["subjects"][:40]
        for item in shown:
            subjects.add_row(item["subject"], str(item["sources"]), str(item["frames"]), str(item["faces"]))
        if len(summary["subjects"]) > 40:
            subjects.add_row(f"... {len(summary['subjects']) - 40} more", "", "", "")
        console.print(subjects)

    if summary["label_sets"]:
        render_label_sets(summary["label_sets"])

    for kind, title in (("predictions", "Prediction runs"), ("audit", "Audit runs")):
        if not summary[kind]:
            continue
        table = Table(title=title, header_style="bold")
        fields = ["name", *[f for f in _RUN_FIELDS if any(f in r for r in summary[kind])]]
        for column in fields:
            table.add_column(column)
        for run in summary[kind]:
            table.add_row(*[str(run.get(f, "")) for f in fields])
        console.print(table)

    problems = summary["failed_sources"] + summary["sources_with_problems"]
    if problems:
        console.print(f"[yellow]{len(problems)} source(s) with problems:[/yellow]")
        for item in problems[:20]:
            console.print(f"  - {item['message']}", highlight=False, markup=False)
        if len(problems) > 20:
            console.print(f"  ... {len(problems) - 20} more (see --json)")
