"""``aucli preprocess``: detect, align and store faces (and import labels) into an HDF5 store."""

from __future__ import annotations

import click

from aucli.cli.options import detector_device, echo_json, face_options, json_option, label_format_option


@click.command("preprocess")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="The store file to create or complete (.h5)."
)
@click.option("--labels", "labels", multiple=True, help="Label files, folders or globs to import after the faces (repeatable).")
@label_format_option("--label-format", help="Format of --labels.")
@click.option("--as", "label_set_name", help="Name of the label set (default: the format's name).")
@click.option("--label-aus", help="AUs to import, e.g. bp4d or 1,2,4 (default: the files' own; BP4D: its 12).")
@click.option("--label-threshold", type=float, help="DISFA: occurrence = intensity >= this.  [default: 2]")
@face_options
@click.option(
    "--compression",
    type=click.Choice(("none", "lzf", "gzip")),
    default="none",
    show_default=True,
    help="Crop compression of a new store (none reads fastest).",
)
@click.option("--pattern", help=r"Regex with (?P<subject>...) and optional (?P<recording>...) applied to each path.")
@click.option("--device", default="auto", show_default=True, help="Detector device: auto, cpu or cuda.")
@click.option("--retry-failed", is_flag=True, help="Process again sources that failed before even if unchanged.")
@click.option("--workers", type=int, default=1, show_default=True, help="Sources processed at once, in worker processes.")
@json_option
def preprocess(
    inputs,
    out,
    labels,
    label_format,
    label_set_name,
    label_aus,
    label_threshold,
    detector,
    detector_models,
    every,
    fps,
    max_faces,
    select,
    crop_size,
    margin,
    detect_width,
    detect_every,
    min_score,
    compression,
    pattern,
    device,
    retry_failed,
    workers,
    as_json,
) -> None:
    """Detect, align and store the faces of videos, images and frame folders.

    INPUTS are videos, images, folders (searched for frame folders and videos), globs or list
    files. The run is resumable: sources already in STORE are skipped, an interrupted run is
    completed by running the same command again, and a bad input is a warning, not a stop. The
    exit status is 1 when no input is in the store after the run (docs/exit-codes.md).

    \b
    Examples:
      aucli preprocess clips/*.mp4 --out corpus.h5
      aucli preprocess BP4D/2DFaces --out bp4d.h5 --labels BP4D/AUCoding/AU_OCC --label-format bp4d
      aucli preprocess DISFA/Videos_LeftCamera --out disfa.h5 --fps 10 --labels DISFA/ActionUnit_Labels --label-format disfa
      aucli preprocess crops/ --out crops.h5 --detector none --crop-size 224
    """
    from aucli.aus import parse_au_list
    from aucli.cli.options import face_options_from
    from aucli.preprocess import check_stored_any, render_preprocess_summary, run_preprocess

    options = face_options_from(
        detector=detector,
        detector_models=detector_models,
        every=every,
        fps=fps,
        max_faces=max_faces,
        select=select,
        crop_size=crop_size,
        margin=margin,
        detect_width=detect_width,
        detect_every=detect_every,
        min_score=min_score,
        device=detector_device(device),
    )
    summary = run_preprocess(
        inputs,
        out,
        face_options=options,
        compression=compression,
        labels=list(labels) or None,
        label_format=label_format,
        label_set_name=label_set_name,
        label_aus=parse_au_list(label_aus) if label_aus else None,
        label_threshold=label_threshold,
        pattern=pattern,
        retry_failed=retry_failed,
        workers=workers,
        show_progress=not as_json,
    )
    if as_json:
        echo_json(summary.as_dict())
    else:
        render_preprocess_summary(summary)
    check_stored_any(summary)
