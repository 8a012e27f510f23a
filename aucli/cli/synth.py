"""``aucli synth``: render a synthetic AU corpus with exact ground truth (and optionally store it)."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import echo_json, json_option

_TASKS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8")


def _tasks(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= len(_TASKS):
            raise click.BadParameter(f"a task count must be between 1 and {len(_TASKS)}, got {count}")
        return _TASKS[:count]
    names = tuple(t.strip().upper() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in _TASKS]
    if unknown or not names:
        raise click.BadParameter(f"unknown task(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(_TASKS)} or give a count")
    return names


@click.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder of the corpus (created; an interrupted run resumes).")
@click.option("--subjects", default=24, show_default=True, type=int, help="Number of subjects.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed: the same seed gives the same corpus.")
@click.option("--layout", type=click.Choice(["bp4d", "disfa", "casme2"]), default=None, help="Corpus layout and label format [default: bp4d; casme2 with --micro].")
@click.option("--micro", is_flag=True, help="Micro-expression clips (CASME II layout): one brief, low-intensity event per neutral clip.")
@click.option("--tasks", callback=_tasks, default=None, help="BP4D tasks recorded: a list (T1,T3) or a count (3 = T1..T3) [default: all 8].")
@click.option("--frames", type=int, default=None, help="Frames per recording [default: 250 per BP4D task, 1000 per DISFA subject, 40 per micro clip].")
@click.option("--clips", default=4, show_default=True, type=int, help="Micro clips per subject (--micro).")
@click.option("--size", default=224, show_default=True, type=int, help="Frame size in pixels (square, even).")
@click.option("--fps", default=25.0, show_default=True, type=float, help="Frames per second of the timelines and videos.")
@click.option("--noise", default="none", show_default=True, help="Label noise: a preset (none, light, realistic, heavy) and/or TYPE=RATE for boundary, missed, confusion, flip, uncoded, noapex; pairs=4-12+15-17 sets the pairs that confusion swaps (default 1-2+6-7+23-24).")
@click.option("--frame-folders", is_flag=True, help="bp4d layout: numbered JPEG folders (BP4D/F001/T1/2440.jpg) instead of mp4 videos.")
@click.option("--occlusion", default=0.25, show_default=True, type=float, help="Share of recordings with an occlusion episode (a hand or object over the face).")
@click.option("--workers", default=1, show_default=True, type=int, help="Processes rendering recordings in parallel.")
@click.option("--overwrite", is_flag=True, help="Replace a corpus made with other settings in --out (only the corpus's own files are removed).")
@click.option("--store", "store", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also preprocess the corpus into this HDF5 store (label sets synth and synth_clean).")
@click.option("--detector", type=click.Choice(["centerface", "auto", "insightface", "none"]), default="centerface", show_default=True, help="Face detector for --store.")
@click.option("--crop-size", type=int, default=None, help="Aligned crop size for --store [default: preprocess's].")
@click.option("--contact-sheet", "contact_sheet", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a PNG of neutral vs apex faces per AU for the corpus's first subjects.")
@json_option
def synth(
    out: Path, subjects: int, seed: int, layout: str | None, micro: bool, tasks: tuple[str, ...] | None, frames: int | None, clips: int,
    size: int, fps: float, noise: str, frame_folders: bool, occlusion: float, workers: int, overwrite: bool, store: Path | None,
    detector: str, crop_size: int | None, contact_sheet: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Render a synthetic AU corpus whose ground truth is known exactly.

    Faces of synthetic subjects (identity, pose, light, occlusion vary) move through AU events
    (onset, apex, offset at 25 fps) with BP4D-like occurrence rates and co-occurrences. Writes the
    media and label files in the layout of BP4D (default), DISFA or CASME II (--micro), a
    manifest.json, groundtruth.npz (exact intensities, pose, landmarks, ...) and noise_log.csv
    (every label --noise changed).

    \b
    Examples:
      aucli synth --out synth/ --subjects 24 --seed 0
      aucli synth --out small/ --subjects 3 --tasks 2 --frames 100 --size 112
      aucli synth --out noisy/ --noise realistic,flip=0.005 --store noisy.h5
      aucli synth --out micro/ --micro --subjects 8 --clips 5
      aucli synth --out disfa/ --layout disfa --subjects 9 --contact-sheet sheet.png
    """
    from aucli.console import console, progress
    from aucli.errors import UsageError
    from aucli.synth.corpus import CorpusConfig, corpus_to_store, make_corpus

    if micro and layout not in (None, "casme2"):
        raise UsageError(f"--micro makes a CASME II layout; it cannot be combined with --layout {layout}")
    if store is None and (crop_size is not None):
        raise UsageError("--crop-size applies to --store only")
    config = CorpusConfig(
        out=out, subjects=subjects, seed=seed, layout=("casme2" if micro else layout or "bp4d"),  # type: ignore[arg-type]
        tasks=tasks or _TASKS, frames=frames, clips=clips, size=size, fps=fps, noise=noise,
        frame_folders=frame_folders, occlusion=occlusion, workers=workers,
    )  # fmt: skip
    config.validate()
    with progress(transient=True) as bar:
        task = bar.add_task("rendering", total=None, rate="")

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, rate=f"{done}/{total} recordings")

        manifest = make_corpus(config, overwrite=overwrite, progress=report)
    result = {
        "out": str(out),
        "layout": config.layout,
        "subjects": config.subjects,
        "recordings": len(manifest.recordings),
        "frames": manifest.data["statistics"]["frames"],
        "rendered": manifest.rendered,
        "render_seconds": round(manifest.render_seconds, 2),
        "noise": manifest.data["noise"],
        "statistics": manifest.data["statistics"],
    }
    if contact_sheet is not None:
        from aucli.synth.contact_sheet import contact_sheet as write_sheet

        result["contact_sheet"] = str(write_sheet(contact_sheet, subjects=min(4, config.subjects), seed=seed))
    if store is not None:
        summary = corpus_to_store(manifest, store, detector=detector, crop_size=crop_size, show_progress=not as_json)
        result["store"] = {"path": str(store), "faces": summary.store_faces, "problems": summary.problems}
    if as_json:
        echo_json(result)
        return
    from rich.table import Table

    stats = manifest.data["statistics"]
    table = Table(title=f"aucli synth: {len(manifest.recordings)} recordings, {stats['frames']} frames in {out}")
    for column in ("AU", "target rate", "rate", "rate in label files"):
        table.add_column(column, justify="left" if column == "AU" else "right")
    for name, rate in stats["occurrence"].items():
        noisy = stats["occurrence_noisy"][name]
        table.add_row(name, f"{stats['target'][name]:.2f}", f"{rate:.3f}", "-" if noisy is None else f"{noisy:.3f}")
    console.print(table)
    noise_info = manifest.data["noise"]
    console.print(f"noise {noise_info['mix']}: {noise_info['changed_labels']} label(s) changed {noise_info['by_reason']}")
    kept = len(manifest.recordings) - manifest.rendered
    console.print(
        f"rendered {manifest.rendered} recording(s) in {manifest.render_seconds:.1f} s"
        + (f"; kept {kept} from an earlier run" if kept else "")
    )
    if contact_sheet is not None:
        console.print(f"contact sheet: {result['contact_sheet']}")
    if store is not None:
        console.print(f"store: {store} ({result['store']['faces']} faces; label sets synth, synth_clean)")
