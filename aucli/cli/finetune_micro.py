"""``aucli finetune-micro``: adapt a trained AUFormer checkpoint to micro-expression data (CASME II style)."""

from __future__ import annotations

import click

from aucli.cli.options import RECIPE, accept_modified_weights_option, device_option, echo_json, json_option, store_argument


@click.command("finetune-micro")
@store_argument()
@click.option("--checkpoint", "-c", required=True, help="AUFormer checkpoint (NAME.safetensors / NAME.json) or a registry name.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (created; --resume continues it).")
@click.option("--recipe", "recipe_path", type=RECIPE, help="Recipe YAML (no model: section), or the packaged casme2.")
@click.option("--labels", help="Micro-expression label set.  [default: the store's only casme2 set]")
@click.option("--aus", help="AUs to fine-tune (micro.aus): casme2 or a list like 1,2,4,12.  [default: all the checkpoint and labels share]")
@click.option("--protocol", type=click.Choice(("loso", "kfold")), help="micro.protocol: leave-one-subject-out or subject k-fold.  [default: loso]")
@click.option("--folds", type=click.IntRange(min=2), help="micro.n_folds of the kfold protocol (implies --protocol kfold).")
@click.option("--heads-only", is_flag=True, help="micro.tune=heads: train the heads, keep the checkpoint's experts frozen.")
@click.option("--no-final", is_flag=True, help="micro.final=false: evaluate the folds only; write no fine-tuned model.")
@click.option("--override", "-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe field, e.g. -o optim.lr=5e-5 -o micro.event_repeat=4.")
@click.option("--epochs", type=click.IntRange(min=1), help="optim.epochs")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="optim.lr")
@click.option("--batch-size", type=click.IntRange(min=1), help="data.batch_size")
@click.option("--workers", type=click.IntRange(min=0), help="data.num_workers: DataLoader processes.")
@click.option("--seed", type=click.IntRange(min=0), help="train.seed")
@click.option("--backbone-weights", help="Backbone weight file, when the one the checkpoint records has moved.")
@click.option("--resume", is_flag=True, help="Continue the run in --out (finished folds are kept).")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@json_option
@accept_modified_weights_option
def finetune_micro(store, checkpoint, out, recipe_path, labels, aus, protocol, folds, heads_only, no_final, overrides, epochs, lr,
                   batch_size, workers, seed, backbone_weights, resume, device, quiet, as_json) -> None:
    """Fine-tune a trained AUFormer CHECKPOINT on STORE's micro-expression labels.

    The frozen backbone stays; the MoKE experts and heads of the AUs that the checkpoint and the
    CASME II-style label set share are fine-tuned (--heads-only: the heads alone). Faces of a coded
    clip outside its onset..offset window count as neutral. Leave-one-subject-out (or --folds K)
    folds fit thresholds on validation subjects, never the test subject; the table gives per-AU F1
    over the pooled test predictions of the checkpoint before fine-tuning (zero-shot, at its own
    and at validation-fitted thresholds) and after. A last model trained on every subject (its
    thresholds from held-out validation subjects) is written as OUT/finetuned.safetensors for
    `aucli predict`. Precedence: finetune defaults (lr 1e-4, 5 epochs) < --recipe < --override <
    the dedicated flags.

    \b
    Examples:
      aucli finetune-micro casme2.h5 --checkpoint runs/bp4d/fold1/best.safetensors --out runs/micro
      aucli finetune-micro casme2.h5 -c bp4d.json --recipe recipes/casme2.yaml --aus casme2 --out runs/micro
      aucli finetune-micro casme2.h5 -c bp4d.json --folds 5 --heads-only --no-final --out runs/micro-heads
      aucli predict clips/ --checkpoint runs/micro/finetuned.safetensors --out preds/
    """
    from aucli.config import recipe_data
    from aucli.console import console
    from aucli.micro import finetune_micro as run_finetune
    from aucli.errors import UsageError

    if protocol == "loso" and folds is not None:
        raise UsageError("--folds applies to --protocol kfold; leave-one-subject-out has one fold per subject")
    flags = {
        "micro.aus": aus,
        "micro.protocol": "kfold" if folds is not None else protocol,
        "micro.n_folds": folds,
        "micro.tune": "heads" if heads_only else None,
        "micro.final": False if no_final else None,
        "data.labels": labels,
        "optim.epochs": epochs,
        "optim.lr": lr,
        "data.batch_size": batch_size,
        "data.num_workers": workers,
        "train.seed": seed,
        "train.device": device if device != "auto" else None,
    }
    data = recipe_data(recipe_path, overrides, flags)
    result = run_finetune(store, checkpoint, data, out=out, resume=resume, backbone_weights=backbone_weights,
                          show_progress=not quiet and not as_json)
    if as_json:
        echo_json(result.summary())
        return
    console.print(result.folds_table())
    console.print(result.table())
    for note in result.notes:
        console.print(f"Note: {note}", highlight=False)
    written = f"fine-tuned checkpoint {result.finetuned}" if result.finetuned else "no fine-tuned checkpoint (--no-final)"
    console.print(f"Run folder: {result.folder}; {written}", highlight=False)
