"""``aucli predict``: AU tables for videos, frame folders and images, /predictions runs in stores;
``aucli predict merge``: join the folders of sharded runs; ``aucli predict events``: AU events tables."""

from __future__ import annotations

import click

from aucli.cli.options import (
    accept_modified_weights_option,
    detector_device,
    device_option,
    echo_json,
    face_options,
    face_options_from,
    json_option,
)


class PredictGroup(click.Group):
    """``aucli predict INPUTS...`` runs the ``run`` subcommand; ``aucli predict merge ...`` merges.

    Any first argument other than a subcommand name or a help flag is the start of ``run``'s
    arguments (an input named like a subcommand can be given as ``./merge``).
    """

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group("predict", cls=PredictGroup)
def predict() -> None:
    """Predict AUs on videos, frame folders, images or stores; merge sharded runs.

    `aucli predict INPUTS...` is `aucli predict run INPUTS...` (see `aucli predict run --help`).
    Media inputs get one table per input in --out (frame, timestamp, face_id, success,
    confidence, FaceRectX/Y/Width/Height, AUxx_p, AUxx_c) and a predictions.json manifest; a
    store (.h5) gets /predictions/<run> inside it. `--shard i/n` predicts every n-th input, and
    `aucli predict merge` joins the n folders.

    \b
    Examples:
      aucli predict clips/*.mp4 --checkpoint runs/bp4d/fold1/best.safetensors --out preds/
      aucli predict corpus.h5 --checkpoint runs/bp4d/fold1/best.safetensors
      aucli predict videos/ --checkpoint best.json --out part1/ --shard 1/2
      aucli predict merge part1/ part2/ --out preds/
      aucli predict events preds/
    """


@predict.command("run")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--checkpoint", "-c", help="Checkpoint (NAME.safetensors / NAME.json) or a registry name (required; without it the registered ones are listed)."
)
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), help="Folder of the tables (media inputs).")
@click.option(
    "--format",
    "table_format",
    type=click.Choice(("csv", "parquet")),
    default="csv",
    show_default=True,
    help="Table format (parquet needs pyarrow).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Faces per model call, across frames and inputs.",
)
@click.option(
    "--precision",
    type=click.Choice(("auto", "bf16", "fp32")),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on GPU, fp32 on CPU.",
)
@click.option(
    "--shard", help="i/n: predict every n-th input of the sorted list, from the i-th (1-based); join with `aucli predict merge`."
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Predict again inputs whose table (or store run) exists, and accept a folder made differently.",
)
@click.option("--run-name", help="Name of the /predictions run of a store input.  [default: from the checkpoint]")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Face extraction processes (media inputs)."
)
@click.option("--pattern", help=r"Regex with (?P<subject>...) and optional (?P<recording>...) applied to each path.")
@click.option("--backbone-weights", help="Backbone weight file, when the one the checkpoint records has moved.")
@face_options
@click.option(
    "--detector-device",
    "detector_device_name",
    default="auto",
    show_default=True,
    help="Face detector device: auto, cpu or cuda.",
)
@device_option
@json_option
@accept_modified_weights_option
def run(
    inputs,
    checkpoint,
    out,
    table_format,
    batch_size,
    precision,
    shard,
    overwrite,
    run_name,
    workers,
    pattern,
    backbone_weights,
    detector_device_name,
    device,
    as_json,
    **face_values,
) -> None:
    """Predict AUs on every sampled frame of INPUTS with a checkpoint.

    INPUTS are videos, images, frame folders, folders to search, globs, list files, or stores
    (.h5). The preprocess face pipeline finds and aligns the faces (same options as `aucli
    preprocess`), and the model scores them in batches across frames and inputs while the next
    frames are decoded. A table that exists is skipped, so an interrupted run is resumed by
    running it again; an unreadable input is a warning, not a stop. The exit status is 1 when no
    input was predicted (docs/exit-codes.md). --out must be new, empty, or an earlier predict
    output (with its predictions.json).

    \b
    Examples:
      aucli predict clips/*.mp4 --checkpoint runs/bp4d/fold1/best.safetensors --out preds/
      aucli predict BP4D/2DFaces --checkpoint bp4d-auformer --out preds/ --format parquet --fps 10
      aucli predict corpus.h5 --checkpoint best.json --run-name fold1
      aucli predict videos/ --checkpoint best.json --out part2/ --shard 2/4 --device cuda --batch-size 256
    """
    if not checkpoint:
        from aucli.errors import UsageError
        from aucli.model.registry import checkpoint_choices

        raise UsageError(checkpoint_choices())
    from aucli.console import err_console
    from aucli.engine.predict import check_predicted_any, render_predict_summary, run_predict

    options = face_options_from(**face_values, device=detector_device(detector_device_name))
    summary = run_predict(
        list(inputs),
        checkpoint,
        out,
        run_name=run_name,
        device=device,
        precision=precision,
        batch_size=batch_size,
        backbone_weights=backbone_weights,
        show_progress=not as_json,
        announce=lambda line: err_console.print(f"Predicting with {line}", highlight=False),
        face_options=options,
        table_format=table_format,
        shard=shard,
        overwrite=overwrite,
        workers=workers,
        pattern=pattern,
    )
    if as_json:
        echo_json(summary.as_dict())
    else:
        render_predict_summary(summary)
    check_predicted_any(summary)


@predict.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False), help="The merged folder (new).")
@click.option("--overwrite", is_flag=True, help="Write into a folder that already holds predictions.")
@json_option
def merge(folders, out, overwrite, as_json) -> None:
    """Join the output folders of `aucli predict --shard i/n` into one folder.

    Checks that the shards come from the same checkpoint, format, face options and input list,
    that each of 1..n is there once, and that no input is missing or in two shards; then copies
    the tables and writes one predictions.json.

    \b
    Examples:
      aucli predict merge part1/ part2/ part3/ --out preds/
      aucli predict merge shards/* --out preds/ --json
    """
    from aucli.engine.predict.merge import merge_predictions, render_merge_summary

    summary = merge_predictions(list(folders), out, overwrite=overwrite)
    if as_json:
        echo_json(summary.as_dict())
    else:
        render_merge_summary(summary)


@predict.command("events")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--smooth/--no-smooth", default=True, show_default=True,
              help="Smooth the probabilities with the two-state HMM before thresholding (docs/events.md).")
@click.option("--mean-event", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Mean AU event length in seconds (the HMM's prior).")
@click.option("--mean-gap", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Mean gap between events in seconds (the HMM's prior).")
@click.option("--fps", type=click.FloatRange(0, min_open=True),
              help="Frame rate for tables without timestamps (frame folders, images).  [default: from the timestamps]")
@json_option
def events(folder, smooth, mean_event, mean_gap, fps, as_json) -> None:
    """Write the AU events (onset, apex, offset) of every table in a predictions FOLDER.

    One CSV per input at FOLDER/events/<table>.csv: face_id, au, onset/apex/offset in frames and
    seconds, duration, peak and mean probability. Events are runs of frames at or above the
    checkpoint's threshold, after HMM smoothing (--no-smooth: the raw probabilities). A rerun
    rewrites the same files; the prediction tables are only read.

    \b
    Examples:
      aucli predict events preds/
      aucli predict events frames_preds/ --fps 25 --json
      aucli predict events preds/ --mean-event 0.5 --mean-gap 2
    """
    from aucli.console import console, warn
    from aucli.engine.predict.events import write_prediction_events

    summary = write_prediction_events(folder, smooth=smooth, fps=fps, mean_event_s=mean_event, mean_gap_s=mean_gap,
                                      warn=None if as_json else warn)
    if as_json:
        echo_json(summary.to_dict())
        return
    total = sum(summary.events.values())
    console.print(f"{total} event(s) in {len(summary.files)} table(s) under {summary.folder}/events"
                  f" ({'smoothed' if smooth else 'raw probabilities'}); skipped {len(summary.skipped)}")
    per_au = ", ".join(f"{au} {n}" for au, n in summary.events.items() if n)
    if per_au:
        console.print(per_au)


@predict.command("export")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "layout", type=click.Choice(["openface"]), default="openface", show_default=True,
              help="The other tool's layout: OpenFace 2.0 FeatureExtraction CSVs.")
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False), help="Folder of the exported CSVs.")
@click.option("--overwrite", is_flag=True, help="Replace exported files already in --out.")
@json_option
def export(folder, layout, out, overwrite, as_json) -> None:
    """Write the tables of a predictions FOLDER in another tool's layout (OpenFace 2.0).

    One CSV per input under --out, same names: frame (from 1), face_id, timestamp, confidence,
    success and AUxx_c (the checkpoint's decisions) with OpenFace's headers and order, so that
    scripts written for OpenFace output read aucli's. AUxx_p has no OpenFace column.

    \b
    Examples:
      aucli predict export preds/ --out preds_openface/
      aucli labels compare corpus.h5 coder1 preds_openface/F001_T1.csv --source F001_T1
    """
    from aucli.console import console
    from aucli.engine.predict.export import export_openface

    summary = export_openface(folder, out, overwrite=overwrite)
    if as_json:
        echo_json(summary.to_dict())
        return
    console.print(f"{len(summary.files)} OpenFace 2.0 CSV(s), {summary.rows} row(s), in {summary.out}")
