"""What ``aucli info`` reports on a model: configuration, parameter counts per component, checkpoint files.

The model is built on PyTorch's meta device (shapes only, no memory, no weights), so a ViT-B/16
summary takes a fraction of a second and never needs a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aucli.config import ModelConfig, Recipe, load_recipe
from aucli.errors import UsageError
from aucli.model.auformer import build_model
from aucli.model.checkpoint import checkpoint_model_config, checkpoint_paths, read_checkpoint_metadata
from aucli.model.methods import build_method_model
from aucli.model.registry import resolve_checkpoint

__all__ = ["config_overrides", "summarize_config", "summarize_recipe", "summarize_checkpoint", "render_model_summary", "COMPONENT_LABELS"]

#: Row labels of the component table, in order.
COMPONENT_LABELS = {
    "backbone": "backbone (timm ViT, frozen)",
    "attention_experts": "attention MoKE groups",
    "mlp_experts": "MLP MoKE groups",
    "main_head": "main head",
    "expert_heads": "expert heads",
    "adapters": "adapters",
    "lora": "LoRA matrices",
}


def config_overrides(overrides: Sequence[str] = (), *, backbone: str | None = None, aus: str | None = None) -> list[str]:
    """``--override`` strings followed by the dedicated flags (which win): ``--backbone``, ``--aus``.

    ``--aus`` takes a set name (bp4d, disfa, casme2), a list (``1,2,4`` or ``AU1,AU2``) or a bare
    count N (the first N FACS AUs: only the number matters for parameter counts). One AU is
    written ``AU12``.
    """
    result = list(overrides)
    if backbone is not None:
        result.append(f"model.backbone={backbone}")
    if aus is not None:
        result.append(f"model.au_names={_au_spec(aus)}")
    return result


def _au_spec(aus: str) -> str:
    text = aus.strip()
    if text.isdigit():
        from aucli.aus import FACS_NAMES, au_name

        count = int(text)
        if not 1 <= count <= len(FACS_NAMES):
            raise UsageError(f"--aus {text}: a count must be between 1 and {len(FACS_NAMES)} (for one AU write AU{text})")
        return ",".join(au_name(n) for n in sorted(FACS_NAMES)[:count])
    return text


def summarize_config(cfg: ModelConfig, *, kind: str = "configuration", source: str | None = None) -> dict[str, Any]:
    """Configuration and parameter counts of the AUFormer ``cfg`` describes (built on the meta device)."""
    model = build_model(cfg, weights="random", device="meta")
    return _describe(model, cfg, kind=kind, source=source)


def summarize_recipe(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`summarize_config` of a recipe's model section (after ``overrides``)."""
    recipe = load_recipe(path, overrides)
    return summarize_config(recipe.model, kind="recipe", source=str(path))


def summarize_checkpoint(path: str | Path) -> dict[str, Any]:
    """Configuration, parameter counts and files of a checkpoint (``NAME``, its .json/.safetensors, or a registry name)."""
    meta_path = resolve_checkpoint(path)
    meta = read_checkpoint_metadata(meta_path)
    cfg = checkpoint_model_config(meta)
    method = str(meta["method"])
    model = build_method_model(cfg, Recipe.from_dict(meta["recipe"]).baseline, method, weights="random", device="meta")
    summary = _describe(model, cfg, kind="checkpoint", source=str(meta_path.with_suffix("")))
    weights_path, meta_path = checkpoint_paths(meta_path)
    thresholds = meta.get("thresholds") or []
    summary["checkpoint"] = {
        "method": method,
        "weights_file": str(weights_path),
        "config_file": str(meta_path),
        "weights_bytes": weights_path.stat().st_size,
        "config_bytes": meta_path.stat().st_size,
        "total_bytes": weights_path.stat().st_size + meta_path.stat().st_size,
        "backbone_source": meta.get("backbone_source"),
        "backbone_in_checkpoint": bool(meta.get("backbone_in_checkpoint")),
        "thresholds": dict(zip(meta["au_names"], thresholds)),
        "data_config": meta.get("data_config"),
        "training": meta.get("training") or {},
        "created_by": meta.get("created_by"),
        "created_at": meta.get("created_at"),
    }
    return summary


def _describe(model: Any, cfg: ModelConfig, *, kind: str, source: str | None) -> dict[str, Any]:
    vit = model.backbone
    data = model.data_config
    patch = tuple(int(p) for p in vit.patch_embed.patch_size)
    grid = tuple(int(g) for g in vit.patch_embed.grid_size)
    return {
        "kind": kind,
        "source": source,
        "method": getattr(model, "method", "auformer"),
        "backbone": cfg.backbone,
        "backbone_overrides": dict(cfg.backbone_overrides),
        "backbone_weights": cfg.backbone_weights,
        "embed_dim": int(vit.embed_dim),
        "depth": len(vit.blocks),
        "num_heads": int(vit.blocks[0].attn.num_heads),
        "input_size": list(data["input_size"]),
        "patch_size": list(patch),
        "grid": list(grid),
        "mean": list(data["mean"]),
        "std": list(data["std"]),
        "au_names": list(cfg.au_names),
        "moke": cfg.moke.to_dict(),
        "head_pool": cfg.head_pool,
        "head_norm": cfg.head_norm,
        "head_hidden": cfg.head_hidden,
        "expert_pool": cfg.expert_pool,
        "expert_supervision": cfg.expert_supervision,
        "supervised_blocks": [int(i) + 1 for i in getattr(model, "supervised_blocks", ())],
        "parameters": model.parameter_summary(),
    }


def render_model_summary(summary: dict[str, Any]) -> None:
    """Print a summary from the functions above as rich tables on stdout."""
    from rich.table import Table

    from aucli.console import console

    about = Table(show_header=False, box=None, pad_edge=False)
    about.add_column(style="bold")
    about.add_column()
    title = {"configuration": "model configuration", "recipe": "recipe", "checkpoint": "checkpoint"}[summary["kind"]]
    if summary["source"]:
        about.add_row(title, summary["source"])
    if summary["method"] != "auformer":
        about.add_row("method", summary["method"])
    overrides = ", ".join(f"{k}={v}" for k, v in summary["backbone_overrides"].items())
    about.add_row("backbone", summary["backbone"] + (f" ({overrides})" if overrides else ""))
    about.add_row(
        "architecture",
        f"depth {summary['depth']}, width {summary['embed_dim']}, {summary['num_heads']} heads, "
        f"input {summary['input_size'][1]}x{summary['input_size'][2]}, patch {summary['patch_size'][0]}, "
        f"grid {summary['grid'][0]}x{summary['grid'][1]}",
    )
    about.add_row("normalisation", f"mean {_floats(summary['mean'])}, std {_floats(summary['std'])}")
    about.add_row(f"AUs ({len(summary['au_names'])})", ", ".join(summary["au_names"]))
    if summary["method"] == "auformer":
        moke = summary["moke"]
        about.add_row("MoKE", f"d = {moke['bottleneck']}, dilations {moke['dilations']}, scale s = {moke['scale']}")
        blocks = summary["supervised_blocks"]
        supervision = f"{summary['expert_supervision']} (block {', '.join(map(str, blocks))})" if blocks else "none"
        about.add_row("heads", f"main: {summary['head_pool']} pooling" + (", standardised" if summary.get("head_norm") == "batch" else "") + (f", MLP {summary['head_hidden']}" if summary["head_hidden"] else ", linear")
                      + f"; experts: {summary['expert_pool']} pooling, supervision {supervision}")
    checkpoint = summary.get("checkpoint")
    if checkpoint:
        about.add_row(
            "files",
            f"{checkpoint['weights_file']} ({_size(checkpoint['weights_bytes'])}) + .json ({_size(checkpoint['config_bytes'])}), "
            f"{_size(checkpoint['total_bytes'])} on disk",
        )
        backbone = "stored in the checkpoint" if checkpoint["backbone_in_checkpoint"] else str(checkpoint["backbone_source"])
        about.add_row("backbone weights", backbone)
        if checkpoint["thresholds"]:
            about.add_row("thresholds", ", ".join(f"{au} {t:.2f}" for au, t in checkpoint["thresholds"].items()))
        if checkpoint["training"]:
            about.add_row("training", ", ".join(f"{k}={v}" for k, v in list(checkpoint["training"].items())[:8]))
        if checkpoint["created_by"]:
            about.add_row("created", f"{checkpoint['created_at']} by {checkpoint['created_by']}")
    console.print(about)

    parameters = summary["parameters"]
    table = Table(title="parameters", title_justify="left")
    table.add_column("component")
    table.add_column("trainable", justify="right")
    table.add_column("frozen", justify="right")
    n_aus, depth = len(summary["au_names"]), summary["depth"]
    for name, counts in parameters["components"].items():
        label = COMPONENT_LABELS.get(name, name.replace("_", " "))
        if name in ("attention_experts", "mlp_experts"):
            label += f" ({depth} x {n_aus} experts)"
        table.add_row(label, f"{counts['trainable']:,}", f"{counts['frozen']:,}")
    table.add_section()
    table.add_row("[bold]total[/bold]", f"[bold]{parameters['trainable']:,}[/bold]", f"[bold]{parameters['frozen']:,}[/bold]")
    console.print(table)
    console.print(f"trainable: {parameters['trainable']:,} of {parameters['total']:,} parameters ({parameters['trainable_percent']:.2f}%)")


def _floats(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"
