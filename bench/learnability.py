"""Learnability check of the synthetic world (issue 4): are AUs learnable on the synthetic-world backbone?

On a synthetic corpus (``aucli synth``: BP4D layout, 24 subjects on the official 3-fold
partitions, 8 tasks of 250 frames at 224 px) put into a store the way a user does it
(CenterFace detection and alignment, every 5th frame, label set ``synth_clean``), three methods
are trained on this CPU for the same fixed budget of optimiser steps, on every fold, for each seed:

- ``AUFormer, synthface``: AUFormer (recipes/synthetic.yaml) on the backbone pretrained by
  ``aucli pretrain`` and shipped in the package (``embedded:synthface``);
- ``linear, synthface``: a linear probe (``train.method linear``) on the same frozen backbone;
- ``AUFormer, random``: AUFormer on a random-init backbone of the same architecture.

The table gives per-AU test F1 (thresholds fitted on validation subjects) as the mean over seeds
of each seed's 3-fold mean, with the standard deviation over seeds; the last row is the mean F1
over AUs and folds. Goal (issue 4): AUFormer on synthface at least 0.10 mean F1 ahead of both others.

Run:
    python bench/learnability.py                 (the full check: 27 AUFormer/linear fold runs of 300 steps x 32 faces;
                                                  several hours on a 2-core CPU, an estimate from the quick run's
                                                  ~2 s per AUFormer step of 16 faces on the busy machine)
    python bench/learnability.py --quick         (end-to-end in minutes: 8 subjects, 1 seed, tiny budget;
                                                  its figures say nothing about learnability)
    python bench/learnability.py --json out.json (also write every figure as JSON)
    python bench/learnability.py --device cuda --steps 3000 --loader-workers 8
                                                 (the same check at a GPU budget; its runs are kept apart
                                                  from the CPU check's, under steps3000-batch32-cuda)

Corpora, stores and runs are kept under ``--work`` (default ``bench/out/learnability``); a rerun
reuses them and resumes unfinished training runs, so the command can be stopped and run again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
METHODS = (
    ("AUFormer, synthface", "auformer", "pretrained"),
    ("linear, synthface", "linear", "pretrained"),
    ("AUFormer, random", "auformer", "random"),
)
GOAL = 0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 subjects, 2 tasks of 60 frames, 1 seed, 30 steps: checks the pipeline, not learnability",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "bench" / "out" / "learnability",
        help="folder for corpora, stores and runs (kept, reused)",
    )
    parser.add_argument("--subjects", type=int, default=24, help="corpus subjects (official BP4D ids over the 3 folds)")
    parser.add_argument("--tasks", type=int, default=8, help="BP4D tasks per subject (T1..Tn)")
    parser.add_argument("--frames", type=int, default=250, help="frames per task")
    parser.add_argument("--every", type=int, default=5, help="store every N-th frame (consecutive frames are near copies)")
    parser.add_argument("--detector", choices=["centerface", "none"], default="centerface", help="face detector of the store")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per fold (the fixed budget)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument(
        "--weights",
        default="embedded:synthface",
        help="the pretrained backbone: embedded:NAME, a registered name, or a file with its card beside it",
    )
    parser.add_argument(
        "--device", default="cpu", help="train.device: cpu (the check's definition), or cuda for a larger --steps budget on a GPU"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--render-workers", type=int, default=1, help="processes rendering the corpus")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.tasks, args.frames, args.every, args.steps, args.batch = 8, 2, 60, 3, 30, 16
        if args.seeds == "0,1,2":
            args.seeds = "0"
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def backbone(weights: str) -> tuple[str, dict[str, Any]]:
    """The weight file and its ``model_config`` (backbone, overrides, img_size) from the backbone card."""
    from aucli.pretrain.weights import read_backbone_card, resolve_backbone_weights

    path = Path(resolve_backbone_weights(weights))
    card = (
        read_backbone_card(path.with_suffix(".json"))
        if path.with_suffix(".json").is_file()
        else read_backbone_card(path.parent / "encoder.json")
    )
    return str(path), card["model_config"]


def make_store(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The corpus (rendered once) and its store (every N-th frame, label set synth_clean), reused when present."""
    from aucli.faces.pipeline import FaceOptions
    from aucli.preprocess import run_preprocess
    from aucli.synth.corpus import CorpusConfig, make_corpus

    key = f"s{args.subjects}-t{args.tasks}-f{args.frames}"
    corpus = args.work / f"corpus-{key}"
    store = args.work / f"store-{key}-every{args.every}-{args.detector}.h5"
    config = CorpusConfig(out=corpus, subjects=args.subjects, seed=0, tasks=tuple(f"T{i + 1}" for i in range(args.tasks)), frames=args.frames,
                          workers=args.render_workers)  # fmt: skip
    started = time.perf_counter()
    manifest = make_corpus(config)
    info: dict[str, Any] = {"corpus": str(corpus), "store": str(store), "render_seconds": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    summary = run_preprocess(
        [str(p) for p in manifest.media_paths()], store, face_options=FaceOptions(detector=args.detector, every=args.every),
        labels=[str(p) for p in manifest.label_paths(clean=True)], label_format="bp4d", label_set_name="synth_clean",
        label_aus=manifest.aus, show_progress=True,
    )  # fmt: skip
    info.update(
        store_seconds=round(time.perf_counter() - started, 1), faces=int(summary.store_faces), problems=len(summary.problems)
    )
    return store, info


def recipe_for(
    args: argparse.Namespace, method: str, source: str, weights_path: str, model_config: dict[str, Any], faces: int, seed: int
):
    """recipes/synthetic.yaml with the backbone, the fixed budget and the seed of this run."""
    from aucli.config import Recipe, merge_dicts, parse_overrides, read_yaml

    # about 10% of the budget as warm-up: the trainer counts warm-up in epochs of the training share (~2/3 x 85% of faces)
    per_epoch = max(faces * (2 / 3) * 0.85 / args.batch, 1.0)
    overrides = {
        "model.backbone": model_config["backbone"],
        "model.img_size": model_config["img_size"],
        "model.backbone_weights": weights_path if source == "pretrained" else "random",
        "data.labels": "synth_clean",
        "data.batch_size": args.batch,
        "data.num_workers": args.loader_workers,
        "optim.max_steps": args.steps,
        "optim.epochs": 100000,
        "optim.warmup_epochs": round(0.1 * args.steps / per_epoch, 4),
        "train.method": method,
        "train.fold": "all",
        "train.protocol": "auto",
        "train.seed": seed,
        "train.device": getattr(args, "device", "cpu"),
        "train.eval_every": 100000,
        "train.select_by": "last",
    }
    data = merge_dicts(read_yaml(ROOT / "recipes" / "synthetic.yaml"), parse_overrides(overrides))
    data["model"]["backbone_overrides"] = dict(model_config["backbone_overrides"])  # replaced whole, not merged key by key
    return Recipe.from_dict(data)


def weights_tag(weights_path: str) -> str:
    """``pretrained-<first 8 hex of the weight file's sha256>``: runs of another backbone file never resume these."""
    from aucli.model.checkpoint import file_sha256

    return f"pretrained-{file_sha256(weights_path)[:8]}"


def run_folder(args: argparse.Namespace, store: Path, method: str, source: str, seed: int) -> Path:
    """``runs/<store>/steps<S>-batch<B>[-cuda]/<method>-<source>/seed<seed>``: a GPU budget never mixes with the CPU check.

    ``source``: ``random``, or :func:`weights_tag` of the pretrained backbone.
    """
    budget = f"steps{args.steps}-batch{args.batch}" + ("" if args.device == "cpu" else f"-{args.device.split(':')[0]}")
    return args.work / "runs" / store.stem / budget / f"{method}-{source}" / f"seed{seed}"


def run_all(args: argparse.Namespace, store: Path, faces: int) -> dict[str, Any]:
    from aucli.engine import train

    weights_path, model_config = backbone(args.weights)
    tag = weights_tag(weights_path)
    results: dict[str, Any] = {}
    for label, method, source in METHODS:
        per_seed = []
        for seed in args.seed_list:
            folder = run_folder(args, store, method, "random" if source == "random" else tag, seed)
            recipe = recipe_for(args, method, source, weights_path, model_config, faces, seed)
            print(f"== {label}, seed {seed}: {folder}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            run = train(store, recipe, out=folder, resume=True, show_progress=True)
            per_seed.append({"seed": seed, "f1": run.f1_matrix().tolist(), "mean_f1": run.mean_f1(), "seconds": round(time.perf_counter() - started, 1),
                             "mean_auc": float(np.nanmean([f.test.mean_auc for f in run.folds]))})  # fmt: skip
            au_names = run.au_names
        results[label] = {"method": method, "backbone": source, "runs": per_seed}
    return {"au_names": au_names, "methods": results, "weights": weights_path, "weights_tag": tag, "model_config": model_config}


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    """Per method: per-AU F1 (mean, std over seeds of the fold means) and mean F1 (mean, std over seeds)."""
    out = {}
    for label, entry in figures["methods"].items():
        per_au = np.stack([np.nanmean(np.asarray(r["f1"], dtype=float), axis=0) for r in entry["runs"]])  # (seeds, aus)
        means = np.asarray([r["mean_f1"] for r in entry["runs"]])
        out[label] = {"f1_mean": np.nanmean(per_au, axis=0).tolist(), "f1_std": np.nanstd(per_au, axis=0).tolist(),
                      "mean_f1": float(np.mean(means)), "mean_f1_std": float(np.std(means)),
                      "mean_auc": float(np.mean([r["mean_auc"] for r in entry["runs"]])), "seconds": float(sum(r["seconds"] for r in entry["runs"]))}  # fmt: skip
    return out


def print_table(figures: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from rich.table import Table

    from aucli.console import console

    seeds = len(args.seed_list)
    title = "Learnability check (issue 4): test F1 % per AU, 3-fold subject-independent" + (
        " [QUICK: pipeline check only]" if args.quick else ""
    )
    caption = (f"mean ± std over {seeds} seed(s) of the 3-fold mean; {args.steps} steps x {args.batch} faces per fold on {args.device}; "
               f"{args.subjects} subjects, {args.tasks} tasks x {args.frames} frames, 1 frame in {args.every} stored")  # fmt: skip
    table = Table(title=title, caption=caption)
    table.add_column("AU")
    for label in summary:
        table.add_column(label, justify="right")

    def cell(mean: float, std: float) -> str:
        return "-" if not np.isfinite(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    for i, au in enumerate(figures["au_names"]):
        table.add_row(au, *[cell(s["f1_mean"][i], s["f1_std"][i]) for s in summary.values()])
    table.add_section()
    table.add_row("mean F1", *[cell(s["mean_f1"], s["mean_f1_std"]) for s in summary.values()], style="bold")
    table.add_row("mean AUC", *[f"{100 * s['mean_auc']:.1f}" for s in summary.values()])
    table.add_row("train+eval time", *[f"{s['seconds'] / 60:.1f} min" for s in summary.values()])
    console.print(table)
    ours = summary["AUFormer, synthface"]["mean_f1"]
    gap = ours - max(summary["linear, synthface"]["mean_f1"], summary["AUFormer, random"]["mean_f1"])
    verdict = "no verdict: --quick checks the pipeline only" if args.quick else "met" if gap >= GOAL else "NOT met"
    console.print(f"AUFormer on synthface leads the better of the others by {gap:+.3f} mean F1 (goal +{GOAL:.2f}: {verdict}).")
    console.print(f"Command: {command}")


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    command = " ".join(
        ["python", "bench/learnability.py", *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))]
    )
    print(f"Command: {command}", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    store, data = make_store(args)
    figures = run_all(args, store, data["faces"])
    summary = summarise(figures)
    print_table(figures, summary, args, command)
    payload = {"command": command, "quick": args.quick, "data": data, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")},
               "figures": figures, "summary": summary}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
