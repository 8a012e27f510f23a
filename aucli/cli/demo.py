"""``aucli demo``: the main job end to end on what ships with aucli, ending in one HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import RECIPE, device_option, echo_json, json_option


@click.command("demo")
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False), help="Folder for everything the demo makes.")
@click.option("--subjects", default=12, show_default=True, type=click.IntRange(min=3), help="Synthetic subjects (3 folds of subjects).")
@click.option("--frames", default=100, show_default=True, type=click.IntRange(min=10), help="Frames per subject and task (25 fps).")
@click.option("--tasks", default="T1,T2", show_default=True, help="Synthetic tasks per subject (T1..T8).")
@click.option("--noise", default="light", show_default=True, help="Label noise of the corpus (none, light, realistic, heavy; see aucli synth).")
@click.option("--base", default="synthface-auformer", show_default=True,
              help="Checkpoint to fine-tune and to audit with (registered name or path); none: train from zero, no audit.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: 2 when fine-tuning, else the recipe's]")
@click.option("--no-linear", is_flag=True, help="Skip the linear-probe baseline.")
@click.option("--recipe", type=RECIPE, help="Training recipe (a path or a packaged name).  [default: synthetic]")
@click.option("--override", "-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe field (repeatable).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the corpus and the training.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@json_option
def demo(out, subjects, frames, tasks, noise, base, epochs, no_linear, recipe, overrides, seed, device, quiet, as_json) -> None:
    """Run the main job end to end and write one report.

    Renders a synthetic AU corpus with known ground truth and label noise (aucli synth), detects
    and aligns its faces into a store with the built-in CenterFace detector (aucli preprocess),
    fine-tunes the registered AUFormer checkpoint synthface-auformer on the noisy labels of fold 1's
    training subjects (aucli train --init-from) beside a linear probe, labels the held-out
    subjects' videos (aucli predict), audits every label of the corpus with the base model (aucli
    audit --checkpoint) and scores the review queue against the injected noise. Prints the held-out
    F1 against calling every AU present, and the report's path: OUT/report/index.html. Every stage
    resumes: run the same command again after an interruption.

    \b
    Examples:
      aucli demo --out demo/
      aucli demo --out demo-s1/ --seed 1 --json
      aucli demo --out demo-big/ --subjects 24 --tasks T1,T2,T3 --noise realistic
      aucli demo --out demo-scratch/ --base none --epochs 4
    """
    from aucli.console import console, err_console
    from aucli.demo import RECIPE_PATH, DemoConfig, run_demo

    config = DemoConfig(
        out=Path(out), subjects=subjects, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), frames=frames, noise=noise,
        epochs=epochs, seed=seed, device=device, recipe=Path(recipe) if recipe else RECIPE_PATH, overrides=tuple(overrides),
        base=base, linear=not no_linear,
    )
    announce = (lambda line: None) if quiet or as_json else (lambda line: err_console.print(f"[bold cyan]{line}[/]", highlight=False))
    result = run_demo(config, show_progress=not quiet and not as_json, announce=announce)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    table = Table(title="aucli demo: held-out subjects " + ", ".join(result.test_subjects), show_header=False)
    table.add_row("corpus", f"{result.frames:,} frames, {result.faces:,} faces in {result.store}")
    table.add_row("AUFormer mean F1", f"[bold]{pct(result.mean_f1)}[/bold]  ({100 * result.gain_over_all_present:+.1f} over calling every AU present)")
    table.add_row("every AU present, F1", pct(result.all_present_f1))
    table.add_row("AUFormer mean AUC", pct(result.mean_auc))
    if result.linear_f1 is not None:
        table.add_row("linear probe mean F1", pct(result.linear_f1))
    if result.base_f1 is not None:
        table.add_row("before fine-tuning", f"F1 {pct(result.base_f1)}, AUC {pct(result.base_auc)}")
    if result.audit is not None:
        audit = result.audit
        table.add_row(f"audit, top {audit['top_k']} flags",
                      f"{audit['hits']} wrong labels found (precision {pct(audit['precision_at_k'])}%; "
                      f"a random label is wrong {pct(audit['base_rate'])}% of the time)")
    table.add_row("predictions", f"{result.predicted_videos} tables in {result.predictions}")
    table.add_row("model", str(result.checkpoint))
    table.add_row("time", ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))
    console.print(table)
    console.print(f"Report: {result.report}", highlight=False, soft_wrap=True)
