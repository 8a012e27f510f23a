"""Model cards of pretrained encoders: the JSON card (data) and its markdown rendering (people)."""

from __future__ import annotations

from typing import Any

from aucli.model.weights import BACKBONE_FORMAT
from aucli.pretrain.config import PretrainConfig

__all__ = ["build_card", "card_markdown"]


def _loss_summary(curve: list[list[float]]) -> dict[str, Any]:
    if not curve:
        return {}
    return {"first": [int(curve[0][0]), round(float(curve[0][1]), 4)], "last": [int(curve[-1][0]), round(float(curve[-1][1]), 4)]}


def build_card(
    config: PretrainConfig,
    *,
    weights: dict[str, Any],
    mean,
    std,
    position: dict[str, Any],
    probe: dict[str, Any] | None,
    environment: dict[str, Any],
) -> dict[str, Any]:
    """The ``aucli-backbone-1`` card of a finished run (see :mod:`aucli.model.weights`)."""
    train_curve = [[int(s), round(float(v), 5)] for s, v in position["train_loss"]]
    val_curve = [[int(s), round(float(v), 5)] for s, v in position["val_loss"]]
    return {
        "format": BACKBONE_FORMAT,
        "name": None,
        "architecture": config.architecture,
        "overrides": dict(config.overrides),
        "img_size": config.img_size,
        "model_config": config.model_config(),
        "input": {
            "mean": list(mean),
            "std": list(std),
            "view": (
                f"aligned face (aucli.faces.align: 5-point similarity onto the margin template, margin 0.25, centre_y 66, "
                f"256 px), resized to {config.crop_size} px (antialiased bilinear), centre crop {config.img_size} px at evaluation, "
                "random crop + flip + colour jitter in training: the synthetic training recipe's view"
            ),
        },
        "weights": weights,
        "pretraining": {
            "objective": _objective(config),
            "decoder": {"dim": config.decoder_dim, "depth": config.decoder_depth, "heads": config.decoder_heads},
            "steps": int(position["step"]),
            "batch_size": config.batch_size,
            "faces_seen": int(position["step"]) * config.batch_size,
            "optimizer": {
                "name": "AdamW",
                "lr": config.lr,
                "betas": list(config.betas),
                "weight_decay": config.weight_decay,
                "warmup_steps": config.warmup_steps,
                "schedule": f"cosine to {config.min_lr_ratio} x lr",
                "grad_clip": config.grad_clip,
            },
            "precision": config.precision,
            "seed": config.seed,
            "train_seconds": round(float(position["train_seconds"]), 1),
            "render_seconds": round(float(position["render_seconds"]), 1),
            "loss": {
                "train": train_curve,
                "val": val_curve,
                "train_summary": _loss_summary(train_curve),
                "val_summary": _loss_summary(val_curve),
            },
            "config": config.to_dict(),
        },
        "data": {
            "source": "aucli.synth renderer (no AU labels used)",
            "identities": config.identities,
            "faces": config.identities * config.frames_per_identity,
            "validation_identities": config.val_identities,
            "frame": f"{config.frame_size} px video framing (head and shoulders), 2 recordings per identity (room, light, camera), "
            "pose, gaze, blinks and occlusions as in aucli synth",
            "expressions": "0-6 random AUs of the 15 rendered per face at intensity 0.3-5, 20% asymmetric (about 1 face in 7 neutral)",
            "landmarks": "the renderer's 5 points plus Gaussian noise (1 px) standing in for a detector",
            "identity_streams": "seeded apart from aucli synth corpora: no corpus subject is a pretraining identity",
        },
        "probe": probe,
        "environment": environment,
    }


def _objective(config: PretrainConfig) -> str:
    if config.target == "hog":
        what = (f"masked feature prediction (MaskFeat): per-patch HOG ({config.hog_bins} orientation bins, "
                f"{config.hog_cell} px cells, L2-normalised per patch)")  # fmt: skip
    else:
        what = f"masked autoencoder: {'per-patch normalised' if config.norm_pix_loss else 'raw'} pixels"
    where = "the masked patches" + (f" and the visible ones at weight {config.visible_weight:g}" if config.visible_weight else "")
    return f"{what}, {round(config.mask_ratio * 100)}% of patches masked, MSE on {where}"


def _objective_short(pretraining: dict[str, Any]) -> str:
    return "masked HOG prediction" if pretraining.get("config", {}).get("target") == "hog" else "masked autoencoder"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _probe_notes(probe: dict[str, Any] | None) -> list[str]:
    """One plain sentence comparing the probe rows (pretrained, random init, pixels), from the figures themselves."""
    if not probe:
        return []
    results = probe["results"]

    def best(name: str) -> float:
        return max(score["mean_auc"] for score in results.get(name, {}).values()) if results.get(name) else float("nan")

    pretrained, random_init, pixels = best("pretrained"), best("random init"), best("pixels")
    verdict = "above" if pretrained - random_init >= 0.02 else "no better than" if pretrained - random_init > -0.02 else "below"
    return [
        f"- AU linear probe (best mean AUC per row group): pretrained {100 * pretrained:.1f}, random init {100 * random_init:.1f}, "
        f"raw pixels {100 * pixels:.1f}. The frozen features are {verdict} a random-init encoder's for a linear readout; "
        "masked-prediction features are known to need adapting (which AUFormer's experts do), so the learnability check "
        "(bench/learnability.py), not this probe, says whether the backbone helps.",
    ]


def _evaluation_lines(evaluations: list[dict[str, Any]]) -> list[str]:
    """``## Evaluations``: downstream results measured after pretraining (added to the card by hand, with their source).

    Each entry: ``task`` (what was measured, on what data), ``setting`` (budget, folds, seeds, device),
    ``results`` (model -> {metric: a fraction, or [mean, std] over seeds}), ``source`` (the command
    and where its figures are kept).
    """
    if not evaluations:
        return []
    lines = ["## Evaluations", ""]
    for entry in evaluations:
        metrics = list(dict.fromkeys(metric for scores in entry["results"].values() for metric in scores))
        lines += [
            f"{entry['task']}; {entry['setting']}. Percent. Source: {entry['source']}.",
            "",
            "| model | " + " | ".join(metrics) + " |",
            "| --- | " + " | ".join("---:" for _ in metrics) + " |",
        ]
        for model, scores in entry["results"].items():
            lines.append(f"| {model} | " + " | ".join(_mean_std(scores.get(metric)) for metric in metrics) + " |")
        lines.append("")
    return lines


def _mean_std(value: float | list[float] | None) -> str:
    if isinstance(value, (list, tuple)):
        return f"{_pct(value[0])} ± {_pct(value[1])}"
    return _pct(value)


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people: what the encoder is, how it was trained, what it measured, how to use it."""
    pre = card["pretraining"]
    data = card["data"]
    name = card.get("name") or "pretrained encoder"
    overrides = ", ".join(f"{k}: {v}" for k, v in card["overrides"].items())
    loss = pre["loss"]
    lines = [
        f"# {name}: a ViT pretrained on synthetic faces ({_objective_short(pre)})",
        "",
        "A small timm VisionTransformer pretrained by `aucli pretrain` on faces rendered by `aucli.synth`, without AU "
        "labels, as the backbone of AUFormer in the synthetic world (no pretrained ViT weights reach the machines aucli "
        "is developed on). It is not a model of real faces: use it for the synthetic corpus, the demo and learning checks.",
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | `{card['architecture']}` with `{{{overrides}}}` at {card['img_size']} px |",
        f"| parameters | {card['weights']['params']:,} ({card['weights']['dtype']}, {card['weights']['bytes'] / 2**20:.1f} MiB) |",
        f"| input | mean {card['input']['mean']}, std {card['input']['std']}; {card['input']['view']} |",
        f"| objective | {pre['objective']}; decoder: {pre['decoder']['depth']} block(s) of width {pre['decoder']['dim']} |",
        f"| training | {pre['steps']} steps x {pre['batch_size']} faces ({pre['faces_seen']:,} faces seen), AdamW lr {pre['optimizer']['lr']}, "
        f"{pre['optimizer']['schedule']}, {card['environment'].get('precision', pre['precision'])}, seed {pre['seed']} |",
        f"| time | {pre['train_seconds'] / 60:.1f} min training + {pre['render_seconds'] / 60:.1f} min rendering on "
        f"{card['environment']['device']} ({card['environment']['threads']} threads) |",
        f"| data | {data['identities']} identities x {data['faces'] // max(data['identities'], 1)} faces; {data['expressions']}; {data['frame']} |",
        f"| weights sha256 | `{card['weights']['sha256']}` |",
        "",
        "## Loss",
        "",
        f"Masked reconstruction loss on {data['validation_identities']} held-out identities (fixed faces and masks): "
        + ", ".join(f"step {int(s)}: {v:.3f}" for s, v in loss["val"])
        + ".",
        "",
    ]
    probe = card.get("probe")
    if probe:
        lines += [
            "## AU linear probe",
            "",
            f"Ridge regression on frozen features predicting the presence of the 15 rendered AUs on {probe['faces']} faces of "
            f"{probe['identities']} new identities (AU rate {probe['au_rate']:.2f}), 3-fold subject-independent; AUC and F1 "
            "in percent, means over AUs and folds. `grid`: patch tokens averaged over 4 x 4 regions; `- neutral twin`: minus "
            "the features of the same face rendered without AUs (identity, pose and light removed). See aucli.pretrain.probe.",
            "",
            "| features | mean AUC | mean F1 |",
            "| --- | ---: | ---: |",
        ]
        for encoder, kinds in probe["results"].items():
            for kind, score in kinds.items():
                lines.append(f"| {encoder}, {kind} | {_pct(score['mean_auc'])} | {_pct(score['mean_f1'])} |")
        lines.append("")
    lines += _evaluation_lines(card.get("evaluations") or [])
    model = card["model_config"]
    lines += [
        "## Use",
        "",
        "In a recipe:",
        "",
        "```yaml",
        "model:",
        f"  backbone: {model['backbone']}",
        f"  backbone_overrides: {{{', '.join(f'{k}: {v}' for k, v in model['backbone_overrides'].items())}}}",
        f"  img_size: {model['img_size']}",
        (
            f"  backbone_weights: embedded:{card['embedded_name']}   # the package's copy (aucli.model.weights.resolve_backbone_weights)"
            if card.get("embedded_name")
            else "  backbone_weights: PATH/TO/encoder.safetensors"
        ),
        "```",
        "",
        (
            "A command that does not resolve `embedded:` names takes the file's path instead: "
            f"`python -c \"from aucli.model.weights import resolve_backbone_weights as r; print(r('embedded:{card['embedded_name']}'))\"`."
            if card.get("embedded_name")
            else "The path may also be given as `--backbone-weights PATH` to `aucli train`."
        ),
        "",
        "With timm directly:",
        "",
        "```python",
        "import timm",
        f"vit = timm.create_model('{model['backbone']}', pretrained=True, num_classes=0, img_size={model['img_size']},",
        f"                        {', '.join(f'{k}={v!r}' for k, v in model['backbone_overrides'].items())},",
        "                        pretrained_cfg_overlay=dict(file=PATH, custom_load=False))",
        "```",
        "",
        "## Limits",
        "",
        "- Trained only on rendered faces: cartoon-like skin, hair and lighting; it has never seen a real face.",
        "- A short CPU pretraining run: the features are far from converged.",
        *_probe_notes(probe),
        "- Pretraining identities are fresh draws from the same generator as `aucli synth` subjects (not copies of them): "
        "on the synthetic corpus it is in-domain by construction.",
        "",
    ]
    return "\n".join(lines)
