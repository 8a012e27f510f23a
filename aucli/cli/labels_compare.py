"""``aucli labels compare``: agreement between two label sets of a store, or a label set and another tool's CSV."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import echo_json, json_option, store_argument


@click.command("compare")
@store_argument()
@click.argument("reference", metavar="A")
@click.argument("other", metavar="B")
@click.option("--min-iou", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Two events match when their temporal IoU is at least this.")
@click.option("--source", help="B is a CSV: the store source (key) it was made from.  [default: the source with the "
                               "CSV's file stem, or the store's only source]")
@click.option("--track", type=click.IntRange(min=0), default=0, show_default=True,
              help="B is a CSV: the face track of that source it describes (0: the subject).")
@click.option("--tool", "tool_format", type=click.Choice(["openface", "pyfeat"]),
              help="B is a CSV: its format.  [default: found from its header]")
@json_option
def compare(store, reference, other, min_iou, source, track, tool_format, as_json) -> None:
    """Agreement of B with label set A: per-AU Cohen's kappa, F1 of B against A, event agreement, and
    ICC(3,1) of the intensities when both sides have them.

    B is another label set of STORE, or, when it names an existing file, another tool's CSV of one
    video: OpenFace 2.0 (AU01_r / AU01_c columns; frame f is video frame f-1) or py-feat (AU01,
    AU02, ... probabilities; present at 0.5; frame f is video frame f). The CSV's frames meet the
    faces of one source (--source) and track (--track) by frame index. Frames count where both
    sides code the AU. Events are runs of 1s over consecutive frames of a (source, track); they
    match one-to-one when their temporal IoU reaches --min-iou.

    \b
    Examples:
      aucli labels compare corpus.h5 coder1 coder2
      aucli labels compare synth.h5 synth_clean synth_reviewed --json
      aucli labels compare clips.h5 human openface_out/clip1.csv --source clips/clip1.mp4
      aucli labels compare clips.h5 human pyfeat/clip1.csv --tool pyfeat
    """
    from aucli.console import console

    if Path(other).is_file():
        from aucli.audit.compare import compare_store_with_tool

        report = compare_store_with_tool(store, reference, other, source=source, track=track, tool_format=tool_format,
                                         min_iou=min_iou)
    else:
        from aucli.audit.compare import compare_store_label_sets
        from aucli.errors import UsageError

        given = [name for name, value in (("--source", source), ("--tool", tool_format)) if value]
        if given:
            raise UsageError(f"{' and '.join(given)} apply when B is a CSV file; {other!r} is not a file")
        report = compare_store_label_sets(store, reference, other, min_iou=min_iou)
    if as_json:
        echo_json(report.to_dict())
        return
    console.print(report.table())
