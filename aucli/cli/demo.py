"""``aucli demo``: the main job end to end on the embedded defaults (synth -> preprocess -> train -> predict)."""

from __future__ import annotations

from pathlib import Path

import click

from aucli.cli.options import device_option, echo_json, json_option


@click.command("demo")
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False), help="Folder for everything the demo makes.")
@click.option("--subjects", default=9, show_default=True, type=click.IntRange(min=3), help="Synthetic subjects (3 folds of subjects).")
@click.option("--frames", default=100, show_default=True, type=click.IntRange(min=10), help="Frames per subject and task (25 fps).")
@click.option("--tasks", default="T1,T2", show_default=True, help="Synthetic tasks per subject (T1..T8).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: the recipe's]")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False), help="Training recipe.  [default: recipes/synthetic.yaml]")
@click.option("--override", "-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe field (repeatable).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the corpus and the training.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@json_option
def demo(out, subjects, frames, tasks, epochs, recipe, overrides, seed, device, quiet, as_json) -> None:
    """Run the main job end to end on the embedded defaults.

    Renders a synthetic AU corpus with known ground truth (aucli synth), detects and aligns its
    faces into a store with the built-in CenterFace detector (aucli preprocess), trains AUFormer on
    the synthetic-world backbone with subject-independent fold 1 (aucli train), and labels the test
    subjects' videos (aucli predict). Every stage resumes: run the same command again after an
    interruption.

    \b
    Examples:
      aucli demo --out demo/
      aucli demo --out demo-big/ --subjects 24 --tasks T1,T2,T3 --epochs 6
      aucli demo --out demo-gpu/ --device cuda --json
    """
    from aucli.console import console, err_console
    from aucli.demo import RECIPE_PATH, DemoConfig, run_demo

    config = DemoConfig(
        out=Path(out), subjects=subjects, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), frames=frames,
        epochs=epochs, seed=seed, device=device, recipe=Path(recipe) if recipe else RECIPE_PATH, overrides=tuple(overrides),
    )
    announce = (lambda line: None) if quiet else (lambda line: err_console.print(f"[bold cyan]{line}[/]", highlight=False))
    result = run_demo(config, show_progress=not quiet, announce=announce)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.table import Table

    table = Table(title="aucli demo", show_header=False)
    table.add_row("corpus", f"{result.frames} frames, {result.faces} faces stored in {result.store}")
    table.add_row("model", str(result.checkpoint))
    table.add_row("test subjects", ", ".join(result.test_subjects))
    table.add_row("test mean F1", f"{100 * result.mean_f1:.1f}")
    table.add_row("predictions", f"{result.predicted_videos} tables in {result.predictions}")
    table.add_row("time", ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))
    console.print(table)
