"""``aucli labels compare``: agreement between two label sets of a store."""

from __future__ import annotations

import click

from aucli.cli.options import echo_json, json_option, store_argument


@click.command("compare")
@store_argument()
@click.argument("reference", metavar="A")
@click.argument("other", metavar="B")
@click.option("--min-iou", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Two events match when their temporal IoU is at least this.")
@json_option
def compare(store, reference, other, min_iou, as_json) -> None:
    """Agreement of label set B with label set A: per-AU Cohen's kappa, F1 of B against A, and event agreement.

    Frames count where both sets code the AU. Events are runs of 1s over consecutive frames of a
    (source, track); they match one-to-one when their temporal IoU reaches --min-iou.

    \b
    Examples:
      aucli labels compare corpus.h5 coder1 coder2
      aucli labels compare synth.h5 synth_clean synth_reviewed --json
    """
    from aucli.audit.compare import compare_store_label_sets
    from aucli.console import console

    report = compare_store_label_sets(store, reference, other, min_iou=min_iou)
    if as_json:
        echo_json(report.to_dict())
        return
    console.print(report.table())
