"""``aucli pretrain``: pretrain a small ViT on synthetic faces (masked autoencoder, no AU labels)."""

from __future__ import annotations

import click

from aucli.cli.options import device_option, echo_json, json_option


@click.command("pretrain")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (created; --resume continues it).")
@click.option("--steps", type=click.IntRange(min=1), help="Optimiser steps.  [default: 1200]")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), help="Faces per step.  [default: 32]")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of identities, faces, masks and initialisation.  [default: 0]")
@click.option(
    "--identities",
    type=click.IntRange(min=1),
    help="Synthetic identities rendered for pretraining (24 faces each).  [default: 400]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch CPU threads (on a busy shared machine 1 is often fastest).  [default: torch's]",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Processes rendering faces.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    help="auto: bf16 on GPU, fp32 on CPU; bf16 also speeds up CPUs with AVX512-BF16.  [default: auto]",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop (state saved) after this much wall time; continue later with --resume.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last saved state.")
@click.option(
    "--override",
    "-o",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set any PretrainConfig field, e.g. -o mask_ratio=0.6 -o overrides.depth=8 (repeatable).",
)
@click.option("--keep-cache", is_flag=True, help="Keep the rendered faces (OUT/cache) after the run.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@json_option
def pretrain(
    out,
    steps,
    batch_size,
    seed,
    identities,
    threads,
    workers,
    precision,
    max_minutes,
    resume,
    overrides,
    keep_cache,
    device,
    quiet,
    as_json,
) -> None:
    """Pretrain a small ViT on rendered synthetic faces as a masked autoencoder.

    Faces of fresh synthetic identities (random expressions, poses, light, occlusions) are rendered
    and aligned exactly as `aucli synth` + `aucli preprocess` + the synthetic training recipe
    present them; 75% of each face's patches are hidden and a light decoder reconstructs them. No
    AU label is used. The encoder (a timm VisionTransformer; default vit_tiny_patch16_224 with
    patch 8, depth 6 at 112 px: a 14 x 14 token grid) goes to OUT/encoder.safetensors with timm's
    state-dict keys, its model card to OUT/encoder.json and OUT/MODEL_CARD.md, including an AU
    linear probe against a random-init encoder. AUFormer loads the file through
    model.backbone_weights (--backbone-weights). Precedence: defaults < --override < flags.

    \b
    Examples:
      aucli pretrain --out runs/synthface --threads 1 --precision bf16
      aucli pretrain --out runs/synthface --resume --max-minutes 9
      aucli pretrain --out runs/tiny --steps 50 --identities 20 -o overrides.depth=2
    """
    from aucli.console import console
    from aucli.pretrain import load_pretrain_config
    from aucli.pretrain import pretrain as run_pretrain

    flags = {"steps": steps, "batch_size": batch_size, "seed": seed, "identities": identities, "precision": precision}
    config = load_pretrain_config(overrides, flags=flags)
    result = run_pretrain(
        config, out, resume=resume, threads=threads, workers=workers, device=device, max_minutes=max_minutes,
        show_progress=not (quiet or as_json), keep_cache=keep_cache,
    )  # fmt: skip
    summary = {
        "out": str(result.out),
        "finished": result.finished,
        "step": result.step,
        "steps": config.steps,
        "encoder": str(result.encoder_path) if result.encoder_path else None,
        "val_loss": result.val_loss,
        "model_config": config.model_config(),
        "probe": result.card.get("probe") if result.card else None,
    }
    if as_json:
        echo_json(summary)
        return
    if not result.finished:
        console.print(
            f"Stopped at step {result.step}/{config.steps} (state saved). Continue with: aucli pretrain --out {out} --resume"
        )
        return
    _print_summary(result)


def _print_summary(result) -> None:
    from rich.table import Table

    from aucli.console import console

    card = result.card
    pre = card["pretraining"]
    console.print(
        f"Encoder: {result.encoder_path} ({card['weights']['params']:,} parameters, {card['weights']['bytes'] / 2**20:.1f} MiB, "
        f"sha256 {card['weights']['sha256'][:12]}...)"
    )
    console.print(f"Model config for a recipe: {card['model_config']}")
    val = pre["loss"]["val"]
    if val:
        console.print(
            f"Masked reconstruction loss (held-out faces): {val[0][1]:.3f} at step {val[0][0]} -> {val[-1][1]:.3f} at step {val[-1][0]}"
        )
    probe = card.get("probe")
    if probe:
        table = Table(
            title=f"AU linear probe: {probe['faces']} faces of {probe['identities']} new identities, 3-fold subject-independent"
        )
        for column in ("features", "mean AUC %", "mean F1 %"):
            table.add_column(column, justify="left" if column == "features" else "right")
        for encoder, kinds in probe["results"].items():
            for kind, score in kinds.items():
                table.add_row(f"{encoder}, {kind}", f"{100 * score['mean_auc']:.1f}", f"{100 * score['mean_f1']:.1f}")
        console.print(table)
