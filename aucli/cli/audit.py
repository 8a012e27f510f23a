"""``aucli audit``: find likely mislabeled frames, export a review queue, apply the corrections."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import RECIPE, accept_modified_weights_option, device_option, echo_json, json_option, store_argument


class AuditGroup(click.Group):
    """``aucli audit STORE ...`` runs an audit (the ``run`` subcommand); ``apply`` and ``export`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("audit", cls=AuditGroup)
def audit() -> None:
    """Find labels that look wrong, queue them for review, take the corrections back.

    `aucli audit STORE` (the same as `aucli audit run STORE`) judges every labelled frame with
    out-of-fold predictions (a model that never saw it), calibrated per AU on held-out subjects,
    and flags labels in MDWA's truncated region (missed AUs) or far below it (spurious labels),
    with temporal evidence from neighbouring frames. `export` writes the review queue (CSV, Label
    Studio, HTML report); `apply` turns the reviewed queue into a new label set.

    \b
    Examples:
      aucli audit synth.h5 --labels synth --recipe recipes/synthetic.yaml --csv queue.csv --html report.html
      aucli audit export synth.h5 synth --label-studio review/
      aucli audit apply queue.csv --store synth.h5 --as synth_reviewed
    """


def _print_or_json(record, as_json: bool, extra: dict) -> None:
    from aucli.console import console

    if as_json:
        echo_json({**record.summary(), **extra})
        return
    console.print(record.thresholds.table())
    console.print(record.table())
    if len(record.flags):
        console.print(record.top_table(10))
    for key, value in extra.items():
        console.print(f"{key}: {value}", highlight=False)


def _export(store_path: str, record, csv_path, label_studio, html, top: int | None, report_top: int) -> dict:
    from aucli.audit.export import write_label_studio, write_queue_csv
    from aucli.audit.report import write_report
    from aucli.store import CorpusStore

    written: dict = {}
    if csv_path:
        written["csv"] = f"{csv_path} ({write_queue_csv(record, csv_path, top=top)} flags)"
    if label_studio or html:
        with CorpusStore.open(store_path) as opened:
            if label_studio:
                written["label_studio"] = f"{label_studio} ({write_label_studio(opened, record, label_studio, top=top)} tasks)"
            if html:
                written["html"] = str(write_report(opened, record, html, top=report_top))
    return written


export_options = [
    click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the review queue as CSV (fill in 'corrected')."),
    click.option("--label-studio", type=click.Path(file_okay=False), help="Write a Label Studio project folder (tasks, images, config)."),
    click.option("--html", type=click.Path(dir_okay=False), help="Write a self-contained HTML report."),
    click.option("--top", type=click.IntRange(min=1), help="Export only the N best-ranked flags (CSV, Label Studio).  [default: all]"),
    click.option("--report-top", type=click.IntRange(min=0), default=30, show_default=True, help="Flags shown with frames and timelines in the HTML report."),
]


def _with(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@audit.command("run")
@store_argument()
@click.option("--labels", help="Label set to audit.  [default: the store's only set]")
@click.option("--recipe", "recipe_path", type=RECIPE, help="Training recipe of the fold models: a YAML file or a packaged recipe (synthetic, bp4d, ...).")
@click.option("--override", "-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set a recipe field (repeatable).")
@click.option("--folds", type=click.IntRange(min=2), help="Subject folds to train.  [default: the recipe's]")
@click.option("--out", "run_dir", type=click.Path(file_okay=False), help="Folder of the fold models.  [default: beside the store]")
@click.option("--resume", is_flag=True, help="Continue interrupted fold training in --out.")
@click.option("--backbone-weights", help="Backbone weight file for the fold models (or of the checkpoint, if moved).")
@click.option("--checkpoint", type=click.Path(dir_okay=True), help="Judge with a model trained elsewhere instead of fold models.")
@click.option("--au-map", help="--checkpoint: model AU -> label-set AU where names differ (AU12=AU12R,...).")
@click.option("--predictions", help="Reuse the out-of-fold predictions stored as /predictions/RUN.")
@click.option("--calibration", type=click.Choice(["platt", "isotonic"]), default="platt", show_default=True, help="Per-AU calibration.")
@click.option("--missed-threshold", help="Flag y=0 at calibrated p >= this: 0.9, or AU12=0.9,AU4=0.8.  [default: p* per AU]")
@click.option("--spurious-threshold", help="Flag y=1 at calibrated p <= this: 0.1, or AU=VALUE pairs.  [default: 1 - p*]")
@click.option("--margin", type=click.FloatRange(0, 1, max_open=True), help="MDWA margin for p*.  [default: the model's recipe]")
@click.option("--gamma", "gamma", help="MDWA gamma for p*: one value or AU=VALUE pairs.  [default: the model's recipe]")
@click.option("--no-temporal", is_flag=True, help="Judge each frame alone (no runs, no neighbour evidence).")
@click.option("--extend", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="A flag extends over neighbouring frames whose contradiction is at least this.")
@click.option("--context", type=click.IntRange(min=0), default=5, show_default=True, help="Neighbouring frames on each side weighed in a flag's score.")
@click.option("--confusion-pairs", metavar="AU/AU,...",
              help="AU pairs coders confuse: a label swap between partners counts both disagreements.  [default: AU1/AU2,AU6/AU7,AU23/AU24 where audited]")
@click.option("--no-confusion", is_flag=True, help="No confusion evidence (each AU judged without its partner).")
@click.option("--min-auc", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="AUs the model ranks worse than this AUC (out-of-fold, against the audited labels) get no flag.")
@click.option("--max-gap", type=click.FloatRange(min=1), default=2.0, show_default=True, help="A frame step above this many usual steps starts a new segment.")
@click.option("--name", help="Name of the audit run in the store.  [default: the label set's name]")
@_with(export_options)
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="--checkpoint: inference batch size.")
@click.option("--quiet", is_flag=True, help="No training progress.")
@json_option
@accept_modified_weights_option
def run(store, labels, recipe_path, overrides, folds, run_dir, resume, backbone_weights, checkpoint, au_map, predictions, calibration,
        missed_threshold, spurious_threshold, margin, gamma, no_temporal, extend, context, confusion_pairs, no_confusion, min_auc,
        max_gap, name, csv_path, label_studio, html, top, report_top, device, batch_size, quiet, as_json) -> None:
    """Audit a label set of STORE and store the flags as /audit/RUN.

    Probabilities come from k fold models trained on STORE (default, with --recipe), from a
    --checkpoint trained elsewhere (calibration cross-fitted over subject groups), or from
    stored out-of-fold --predictions. Thresholds derive from each AU's MDWA gradient peak p*
    (printed) and can be set with --missed-threshold / --spurious-threshold. A label swap between
    AUs coders confuse (AU1 labelled where the model sees AU2, and AU2 missing) counts the
    evidence of both AUs (--confusion-pairs). The label set itself is never changed.

    \b
    Examples:
      aucli audit synth.h5 --labels synth --recipe recipes/synthetic.yaml --html report.html
      aucli audit bp4d.h5 --labels human --checkpoint runs/disfa/fold1/best.json --csv queue.csv
      aucli audit synth.h5 --labels synth --predictions synth-oof --missed-threshold 0.9
      aucli audit synth.h5 --labels synth --predictions synth-oof --no-temporal --name frames-only
      aucli audit synth.h5 --labels synth --predictions synth-oof --confusion-pairs AU1/AU2,AU4/AU7
    """
    from aucli.audit.flags import ScoringConfig, confusion_columns
    from aucli.audit.run import check_run_name, run_audit
    from aucli.audit.sources import from_checkpoint, from_predictions, from_training, write_out_of_fold
    from aucli.engine.data import resolve_label_set
    from aucli.errors import UsageError
    from aucli.store import CorpusStore

    chosen = [flag for flag, value in (("--checkpoint", checkpoint), ("--predictions", predictions)) if value]
    if len(chosen) > 1:
        raise UsageError("give one of --checkpoint and --predictions (or neither, to train fold models)")
    training_only = [flag for flag, value in (("--recipe", recipe_path), ("--override", overrides), ("--folds", folds),
                                              ("--out", run_dir), ("--resume", resume)) if value]
    if chosen and training_only:
        raise UsageError(f"{', '.join(training_only)} configure fold training; they do not apply with {chosen[0]}")
    if confusion_pairs is not None and no_confusion:
        raise UsageError("give --confusion-pairs or --no-confusion, not both")
    scoring = ScoringConfig(temporal=not no_temporal, extend=extend, context=context,
                            confusion_pairs=[] if no_confusion else confusion_pairs)
    gammas = _parse_gamma(gamma)
    with CorpusStore.open(store) as opened:
        label_set = resolve_label_set(opened, labels)
        check_run_name(opened, name)
        if scoring.confusion_pairs:  # a misspelt pair fails now, not after training
            confusion_columns(scoring, [str(a) for a in opened.label_attrs(label_set).get("au_names", [])])
        oof = from_predictions(opened, predictions) if predictions else None
    extra: dict = {}
    if checkpoint:
        oof = from_checkpoint(store, checkpoint, label_set=label_set, calibration=calibration, device=device,
                              batch_size=batch_size, backbone_weights=backbone_weights, au_map=au_map)
    elif oof is None:
        from aucli.config import load_recipe

        recipe = load_recipe(recipe_path, overrides, {"train.device": device if device != "auto" else None})
        folder = Path(run_dir) if run_dir else Path(store).with_name(f"{Path(store).stem}-audit-{name or label_set}")
        oof = from_training(store, recipe, out=folder, label_set=label_set, folds=folds, calibration=calibration, resume=resume,
                            weights=backbone_weights, show_progress=not quiet and not as_json)
        extra["fold models"] = str(folder)
    record = run_audit(store, oof, label_set=label_set, name=name, missed=missed_threshold, spurious=spurious_threshold,
                       margin=margin, gammas=gammas, scoring=scoring, max_gap=max_gap, min_auc=min_auc)
    if not predictions and not checkpoint:
        with CorpusStore.open(store, "a") as opened:
            oof_name = opened.unique_run_name("predictions", f"{record.name}-oof")
            write_out_of_fold(opened, oof_name, oof)
        extra["out-of-fold predictions"] = f"/predictions/{oof_name} (reuse: --predictions {oof_name})"
    extra["audit run"] = f"/audit/{record.name} in {store}"
    extra.update(_export(store, record, csv_path, label_studio, html, top, report_top))
    _print_or_json(record, as_json, extra)


def _parse_gamma(text: str | None):
    if text is None:
        return None
    from aucli.errors import UsageError

    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"--gamma must be a number or AU=VALUE pairs (AU1=0.75,AU12=1.25); found {text!r}") from None
    values = {}
    for item in filter(None, text.replace(" ", "").split(",")):
        key, _, value = item.partition("=")
        try:
            values[key] = float(value)
        except ValueError:
            raise UsageError(f"--gamma: {item!r} is not AU=VALUE") from None
    return values


@audit.command("export")
@store_argument()
@click.argument("run_name", metavar="RUN")
@_with(export_options)
@json_option
def export(store, run_name, csv_path, label_studio, html, top, report_top, as_json) -> None:
    """Export audit RUN of STORE: CSV queue, Label Studio project, HTML report.

    \b
    Examples:
      aucli audit export synth.h5 synth --csv queue.csv
      aucli audit export synth.h5 synth --label-studio review/ --top 200
      aucli audit export synth.h5 synth --html report.html --report-top 50
    """
    from aucli.audit.run import read_audit
    from aucli.errors import UsageError
    from aucli.store import CorpusStore

    if not (csv_path or label_studio or html):
        raise UsageError("say what to write: --csv FILE, --label-studio DIR and/or --html FILE")
    with CorpusStore.open(store) as opened:
        record = read_audit(opened, run_name)
    written = _export(store, record, csv_path, label_studio, html, top, report_top)
    if as_json:
        echo_json(written)
        return
    from aucli.console import console

    for key, value in written.items():
        console.print(f"{key}: {value}", highlight=False)


@audit.command("apply")
@click.argument("corrections", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store", required=True, type=click.Path(exists=True, dir_okay=False), help="The corpus store.")
@click.option("--as", "name", required=True, help="Name of the new label set.")
@click.option("--base", help="Label set the corrections apply to.  [default: the one the file names]")
@json_option
def apply(corrections, store, name, base, as_json) -> None:
    """Write a new label set: BASE with the reviewed CORRECTIONS applied (BASE stays as it is).

    CORRECTIONS is the CSV queue with its 'corrected' column filled in (1/present, 0/absent,
    -1/unknown; empty or 'unsure' = no change; frame_start/frame_stop may be edited), or a Label
    Studio export (JSON, JSON-MIN or CSV) of the project `aucli audit export --label-studio` wrote.
    A CSV saved by a spreadsheet is read as it is: UTF-8 (with or without BOM), UTF-16 or
    Windows-1252, delimited by commas, semicolons or tabs. An empty queue, or one where no
    correction applies, is an error and writes nothing.

    \b
    Examples:
      aucli audit apply queue.csv --store synth.h5 --as synth_reviewed
      aucli audit apply project-1-at-2026-11-26.json --store bp4d.h5 --as human_v2 --base human
    """
    from aucli.audit.apply import apply_corrections
    from aucli.console import console

    report = apply_corrections(store, corrections, name=name, base=base)
    if as_json:
        echo_json(report.to_dict())
        return
    console.print(report.table())
    console.print(f"Wrote label set {name!r} ({report.corrections} correction(s) applied, {report.skipped} left unanswered, "
                  f"{len(report.problems)} problem(s)); {report.base!r} is unchanged.", highlight=False)
