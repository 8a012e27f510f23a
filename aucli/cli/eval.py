"""``aucli eval``: score a checkpoint on a store, also across corpora through an AU map."""

from __future__ import annotations

import click

from aucli.cli.options import accept_modified_weights_option, device_option, echo_json, json_option, store_argument


@click.command("eval")
@click.argument("checkpoint")
@store_argument()
@click.option("--labels", help="Label set of STORE to score against.  [default: the store's only set]")
@click.option("--au-map", help="MODEL_AU=STORE_AU pairs, e.g. AU1=AU1,AU12=AU12R; other AUs match by name, unmatched ones are skipped.")
@click.option("--subjects", help="Comma-separated subjects: score only these; with --refit-thresholds, fit on these and score the rest.")
@click.option("--refit-thresholds", is_flag=True, help="Re-fit per-AU thresholds on --subjects and write a new checkpoint to --out.")
@click.option("--out", type=click.Path(dir_okay=False), help="New checkpoint (NAME.safetensors + NAME.json) with re-fitted thresholds.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader processes.")
@click.option("--backbone-weights", help="Backbone weight file, when the one the checkpoint records has moved.")
@click.option("--min-iou", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="A predicted event matches a true one when their temporal IoU is at least this.")
@click.option("--smooth", is_flag=True, help="Also score the probabilities smoothed by the two-state HMM (docs/events.md).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="With --smooth: frame rate of sources without a clock (frame folders).")
@device_option
@json_option
@accept_modified_weights_option
def eval_(checkpoint, store, labels, au_map, subjects, refit_thresholds, out, batch_size, workers, backbone_weights,
          min_iou, smooth, fps, device, as_json) -> None:
    """Evaluate CHECKPOINT on STORE: per-AU F1 (counts summed over the faces), AUC, mean, and event F1.

    The model is scored on the AUs it shares with the label set (the cross-corpus setting, e.g.
    a BP4D model on DISFA's AU1, AU2, AU4, AU6, AU12). Thresholds are the checkpoint's unless
    --refit-thresholds fits new ones on a labelled part of STORE (--subjects); the other subjects
    are then scored and the checkpoint is written again with the new thresholds (--out).

    Events are runs of present frames of a (source, track); a predicted event counts when it
    matches a true one one-to-one with temporal IoU >= --min-iou. --smooth adds frame and event F1
    after HMM smoothing of the probabilities (frame rates from the store's clock, or --fps).

    \b
    Examples:
      aucli eval runs/bp4d/fold1/best.safetensors bp4d.h5
      aucli eval runs/bp4d/fold1/best.safetensors disfa.h5 --labels human --json
      aucli eval runs/bp4d/fold1/best.safetensors disfa.h5 --au-map AU1=AU1,AU2=AU2,AU4=AU4,AU6=AU6,AU12=AU12
      aucli eval runs/bp4d/fold1/best.safetensors disfa.h5 --refit-thresholds --subjects SN001,SN002 --out bp4d_on_disfa
      aucli eval runs/bp4d/fold1/best.safetensors bp4d.h5 --smooth --fps 25
    """
    from aucli.console import console
    from aucli.engine.evaluate import evaluate_checkpoint

    subject_list = [s.strip() for s in subjects.split(",") if s.strip()] if subjects else None
    result = evaluate_checkpoint(
        checkpoint, store, labels=labels, au_map=au_map or None, subjects=subject_list, refit_thresholds=refit_thresholds,
        out=out, device=device, batch_size=batch_size, num_workers=workers, backbone_weights=backbone_weights,
        min_iou=min_iou, smooth=smooth, fps=fps,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    console.print(result.report.table())
    for events in (result.events, result.events_smoothed):
        if events is not None:
            console.print(events.table())
    pairs = ", ".join(a if a == b else f"{a}->{b}" for a, b in result.au_pairs.items())
    console.print(f"AUs scored: {pairs}; faces: {result.n_faces:,}; subjects: {len(result.subjects)}; "
                  f"mean F1 at 0.5: {100 * result.report_at_half.mean_f1:.1f}", highlight=False)
    if result.refit_on:
        where = "the same subjects (in-sample: no other subject is labelled)" if result.in_sample else "the other subjects"
        console.print(f"Thresholds re-fitted on {', '.join(result.refit_on)}; scored on {where}.", highlight=False)
    if result.new_checkpoint is not None:
        console.print(f"New checkpoint: {result.new_checkpoint}", highlight=False)
