"""``aucli labels``: list, import, export, rename, delete, compare and list the events of the label sets of a store."""

from __future__ import annotations

import click

from aucli.cli.options import echo_json, json_option, label_format_option, store_argument


@click.group("labels")
def labels() -> None:
    """Manage the label sets of a store (several coexist; none is ever overwritten).

    \b
    Examples:
      aucli labels list corpus.h5
      aucli labels import corpus.h5 AU_OCC/ --format bp4d --as human
      aucli labels export corpus.h5 human --out human.csv
    """


@labels.command("list")
@store_argument()
@json_option
def list_(store, as_json) -> None:
    """List label sets with their AU occurrence rates.

    \b
    Examples:
      aucli labels list corpus.h5
      aucli labels list corpus.h5 --json
    """
    from aucli.store.store import CorpusStore
    from aucli.store.summary import label_set_stats, render_label_sets

    with CorpusStore.open(store, "r") as opened:
        stats = [label_set_stats(opened.read_labels(name)) for name in opened.label_sets()]
    if as_json:
        echo_json(stats)
    else:
        render_label_sets(stats)


@labels.command("import")
@store_argument()
@click.argument("files", nargs=-1, required=True)
@label_format_option("--format", "label_format", required=True, help="Format of FILES.")
@click.option("--as", "name", required=True, help="Name of the new label set.")
@click.option("--aus", help="AUs to import, e.g. bp4d or 1,2,4 (default: the files' own; BP4D: its 12).")
@click.option("--threshold", type=float, help="DISFA: occurrence = intensity >= this.  [default: 2]")
@click.option("--track", type=int, default=0, show_default=True, help="Face track the labels belong to (0: the subject).")
@json_option
def import_(store, files, label_format, name, aus, threshold, track, as_json) -> None:
    """Import label files into a store as a new label set.

    FILES are files, folders or globs. Frames are matched by (source, frame index), each format
    with its own convention: BP4D the number in the frame image's name, DISFA line k = video
    frame k-1, OpenFace frame f = video frame f-1 (success = 0 rows unknown), py-feat frame f =
    video frame f (AU probabilities, present at 0.5), CASME II the numbers in img46.jpg, plain CSV
    the store's own frame index. Frames without labels and labels without frames are reported.

    \b
    Examples:
      aucli labels import bp4d.h5 BP4D/AUCoding/AU_OCC --format bp4d --as human
      aucli labels import disfa.h5 'DISFA/ActionUnit_Labels/*/*.txt' --format disfa --as human --threshold 1
      aucli labels import clips.h5 openface_out/ --format openface --as openface
      aucli labels import clips.h5 pyfeat_out/ --format pyfeat --as pyfeat
      aucli labels import casme2.h5 CASME2-coding.csv --format casme2 --as coded
    """
    from aucli.aus import parse_au_list
    from aucli.console import console, warn
    from aucli.labels.importer import import_labels

    report = import_labels(
        store, files, label_format, name, au_names=parse_au_list(aus) if aus else None, threshold=threshold, track=track
    )
    if as_json:
        echo_json(report.as_dict())
        return
    for problem in report.problems():
        warn(problem)
    console.print(
        f"Label set [bold]{name}[/bold] ({label_format}): {report.n_matched} face(s) labelled from "
        f"{report.n_labelled} labelled frame(s) in {len(report.files)} file(s); "
        f"{report.n_noface} without a face, {report.n_missing} not in the store.",
        highlight=False,
    )
    _print_rates(report)


def _print_rates(report) -> None:
    from rich.table import Table

    from aucli.console import console

    table = Table(header_style="bold")
    for column in ("AU", "known", "positives", "rate"):
        table.add_column(column, justify="left" if column == "AU" else "right")
    for au in report.au_names:
        known = report.known[au]
        table.add_row(au, str(known), str(report.positives[au]), f"{report.rates[au]:.3f}" if known else "unknown")
    console.print(table)


@labels.command("export")
@store_argument()
@click.argument("name")
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False, writable=True), help="CSV file to write.")
@click.option("--all-faces", is_flag=True, help="Also write faces without any known label (as -1).")
def export(store, name, out, all_faces) -> None:
    """Export a label set as CSV: source, subject, frame, timestamp, track, one column per AU.

    The file imports back with `aucli labels import STORE FILE --format csv`.

    \b
    Examples:
      aucli labels export corpus.h5 human --out human.csv
    """
    from aucli.console import console
    from aucli.labels.export import export_labels
    from aucli.store.store import CorpusStore

    with CorpusStore.open(store, "r") as opened:
        n = export_labels(opened, name, out, include_unlabelled=all_faces)
    console.print(f"Wrote {n} row(s) of label set {name!r} to {out}.", highlight=False)


@labels.command("rename")
@store_argument()
@click.argument("old")
@click.argument("new")
def rename(store, old, new) -> None:
    """Rename a label set.

    \b
    Examples:
      aucli labels rename corpus.h5 bp4d human
    """
    from aucli.console import console
    from aucli.store.store import CorpusStore

    with CorpusStore.open(store, "a") as opened:
        opened.rename_labels(old, new)
    console.print(f"Renamed label set {old!r} to {new!r}.", highlight=False)


@labels.command("delete")
@store_argument()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(store, name, yes) -> None:
    """Delete a label set (asks first unless --yes).

    \b
    Examples:
      aucli labels delete corpus.h5 draft --yes
    """
    from aucli.console import console
    from aucli.store.store import CorpusStore

    with CorpusStore.open(store, "a") as opened:
        attrs = opened.label_attrs(name)
        if not yes:
            click.confirm(
                f"Delete label set {name!r} ({attrs.get('format', '')}, {len(attrs.get('au_names', []))} AUs) from {store}?",
                abort=True,
            )
        opened.delete_labels(name)
    console.print(f"Deleted label set {name!r}.", highlight=False)


@labels.command("events")
@store_argument()
@click.argument("name")
@click.option("--source", "sources", multiple=True, help="Only this source key (repeatable).  [default: every source]")
@click.option("--track", type=click.IntRange(min=0), help="Only this face track.  [default: every labelled track]")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="Frame rate of sources without a clock (frame folders).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), help="Write the events as CSV here.")
@json_option
def events(store, name, sources, track, fps, out, as_json) -> None:
    """List the events of a label set: per AU, onset, apex and offset (frames and seconds), duration
    and peak intensity, per source and track.

    An event is a run of frames coded 1; a 0, an unknown label or a gap of more than two usual
    frame steps ends it. The apex is the frame of the highest intensity when the set has
    intensities (docs/events.md).

    \b
    Examples:
      aucli labels events disfa.h5 human --source SN001/LeftVideoSN001_comp.avi
      aucli labels events bp4d.h5 human --fps 25 --out human_events.csv
    """
    from rich.table import Table

    from aucli.console import console
    from aucli.fileio import atomic_write_text
    from aucli.labels.events import events_csv, label_set_events

    tracks = label_set_events(store, name, sources=list(sources) or None, track=track, fps=fps)
    if out:
        atomic_write_text(out, events_csv(tracks))
    if as_json:
        echo_json([{"source": t.source, "track": t.track, "fps": t.table.fps, "events": t.table.records()} for t in tracks])
        return
    for item in tracks:
        table = Table(title=f"{item.source}, track {item.track} ({item.table.fps:g} fps)")
        for column in ("AU", "onset", "apex", "offset", "onset s", "offset s", "duration s", "peak intensity"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        for row in item.table.records():
            peak = "-" if row["peak_intensity"] is None else f"{row['peak_intensity']:.2f}"
            table.add_row(row["au"], str(row["onset_frame"]), str(row["apex_frame"]), str(row["offset_frame"]),
                          f"{row['onset_s']:.3f}", f"{row['offset_s']:.3f}", f"{row['duration_s']:.3f}", peak)
        console.print(table)
    total = sum(len(t.table) for t in tracks)
    written = f"; written to {out}" if out else ""
    console.print(f"{total} event(s) of label set {name!r} in {len(tracks)} track(s){written}.", highlight=False)


from aucli.cli.labels_compare import compare  # noqa: E402  (aucli labels compare lives in its own module)

labels.add_command(compare)
