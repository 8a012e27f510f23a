"""Learnability check of the synthetic world (issue 4): are AUs learnable on the synthetic-world backbone?

On a synthetic corpus (``aucli synth``: BP4D layout, 41 subjects as in BP4D, on its official
3-fold partitions of 14, 14 and 13 subjects, 8 tasks of 250 frames at 224 px) put into a store the way a user does it
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
    python bench/learnability.py                 (the full check: 27 fold runs of 600 steps x 32 faces; on 2 CPU
                                                  cores seed 0 took 2 h 38 min (AUFormer 75, linear 13, random
                                                  backbone 70): about 8 h; on one H100, 11 min with the store)
    python bench/learnability.py --quick         (end-to-end in minutes: 8 subjects, 1 seed, tiny budget;
                                                  its figures say nothing about learnability)
    python bench/learnability.py --json out.json (also write every figure as JSON)
    python bench/learnability.py --device cuda --loader-workers 4
                                                 (the same check, fp32 (TF32 matmuls) on a GPU; its runs are kept
                                                  apart from the CPU check's, under steps600-batch32-cuda)
    python bench/learnability.py --store-only --render-workers 14     (render and store the corpus, then stop)
    python bench/learnability.py --methods random --seeds 1 &         (part of the grid per process: runs are
    python bench/learnability.py --methods auformer --seeds 2 &        locked, so processes never train one twice)
    python bench/learnability.py --report-only   (the table of the finished runs, training nothing)
    python bench/learnability.py -o optim.lr=5e-3 -o optim.moke_up_lr_scale=0.25
                                                 (a recipe variant for every method; runs kept apart under -o<hash>)

Corpora, stores and runs are kept under ``--work`` (default ``bench/out/learnability``); a rerun
reuses them and resumes unfinished training runs, so the command can be stopped and run again. A
run whose loss turns NaN (the trainer's guard) is recorded as diverged (``diverged.json`` in its
folder), counted in the table and left out of its means; a rerun does not train it again (delete
the file to retry).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
# The fixed budget of every learning check (this one, bench/method_comparison.py's tables): optimiser
# steps of 32 faces per fold, about two passes over a fold's training subjects. 300 until 2026-11-27.
BUDGET_STEPS = 600
METHODS = (
    ("AUFormer, synthface", "auformer", "pretrained"),
    ("linear, synthface", "linear", "pretrained"),
    ("AUFormer, random", "auformer", "random"),
)
METHOD_KEYS = {"auformer": "AUFormer, synthface", "linear": "linear, synthface", "random": "AUFormer, random"}
GOAL = 0.10
DIVERGED_FILE = "diverged.json"


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
    parser.add_argument("--subjects", type=int, default=41, help="corpus subjects (official BP4D ids over the 3 folds; 41 fills them)")
    parser.add_argument("--tasks", type=int, default=8, help="BP4D tasks per subject (T1..Tn)")
    parser.add_argument("--frames", type=int, default=250, help="frames per task")
    parser.add_argument("--every", type=int, default=5, help="store every N-th frame (consecutive frames are near copies)")
    parser.add_argument("--detector", choices=["centerface", "none"], default="centerface", help="face detector of the store")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    parser.add_argument("--methods", default="auformer,linear,random",
                        help="comma-separated subset of auformer (AUFormer, synthface), linear (linear, synthface), random (AUFormer, random)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=BUDGET_STEPS, help="optimiser steps per fold (the fixed budget)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument(
        "--weights",
        default="embedded:synthface",
        help="the pretrained backbone: embedded:NAME, a registered name, or a file with its card beside it",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader worker processes")
    add_run_options(parser)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    if not keys or any(k not in METHOD_KEYS for k in keys):
        parser.error(f"--methods takes a subset of {','.join(METHOD_KEYS)} (found {args.methods!r})")
    args.method_labels = [label for label, *_ in METHODS if label in {METHOD_KEYS[k] for k in keys}]
    if args.quick:
        args.subjects, args.tasks, args.frames, args.every, args.steps, args.batch = 8, 2, 60, 3, 30, 16
        if args.seeds == "0,1,2":
            args.seeds = "0"
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options this script and method_comparison.py share: device and precision, recipe variants, partial runs."""
    parser.add_argument("--device", default="cpu", help="train.device: cpu (the check's definition), or cuda (runs kept apart)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="on a GPU: fp32 (the CPU check's numerics; TF32 matmuls) or bf16 autocast (runs kept apart)")  # fmt: skip
    parser.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe field for every method, e.g. optim.moke_up_lr_scale=0.25 (repeatable; runs kept apart)")  # fmt: skip
    parser.add_argument("--render-workers", type=int, default=1, help="processes rendering a corpus and detecting its faces")
    parser.add_argument("--store-only", action="store_true", help="make the corpus and its store, then stop")
    parser.add_argument("--report-only", action="store_true", help="train nothing: the tables of the finished runs (the others listed)")


def backbone(weights: str) -> tuple[str, dict[str, Any]]:
    """The weight file and its ``model_config`` (backbone, overrides, img_size) from the backbone card."""
    from aucli.model.weights import read_backbone_card, resolve_backbone_weights

    path = Path(resolve_backbone_weights(weights))
    card = (
        read_backbone_card(path.with_suffix(".json"))
        if path.with_suffix(".json").is_file()
        else read_backbone_card(path.parent / "encoder.json")
    )
    return str(path), card["model_config"]


def make_store(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The corpus (rendered once) and its store (every N-th frame, label set synth_clean), reused when present.

    A finished store has ``<store>.done.json`` beside it (this function's figures): then neither the
    corpus nor the store is opened, so any number of training processes can start at once and
    only read the store.
    """
    from aucli.engine.runs import read_json
    from aucli.faces.pipeline import FaceOptions
    from aucli.fileio import atomic_write_json
    from aucli.preprocess import run_preprocess
    from aucli.synth.corpus import CorpusConfig, make_corpus

    key = f"s{args.subjects}-t{args.tasks}-f{args.frames}"
    corpus = args.work / f"corpus-{key}"
    store = args.work / f"store-{key}-every{args.every}-{args.detector}.h5"
    done = store.with_name(store.stem + ".done.json")
    if done.is_file() and store.is_file():
        return store, {**read_json(done), "reused": True}
    config = CorpusConfig(out=corpus, subjects=args.subjects, seed=0, tasks=tuple(f"T{i + 1}" for i in range(args.tasks)), frames=args.frames,
                          workers=args.render_workers)  # fmt: skip
    started = time.perf_counter()
    manifest = make_corpus(config)
    info: dict[str, Any] = {"corpus": str(corpus), "store": str(store), "render_seconds": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    summary = run_preprocess(
        [str(p) for p in manifest.media_paths()], store, face_options=FaceOptions(detector=args.detector, every=args.every),
        labels=[str(p) for p in manifest.label_paths(clean=True)], label_format="bp4d", label_set_name="synth_clean",
        label_aus=manifest.aus, workers=args.render_workers, show_progress=True,
    )  # fmt: skip
    info.update(
        store_seconds=round(time.perf_counter() - started, 1), faces=int(summary.store_faces), problems=len(summary.problems)
    )
    info["failed_sources"] = summary.count("failed")
    if not info["failed_sources"]:  # (other problems are warnings, e.g. labelled frames that --every skips)
        atomic_write_json(done, info)
    return store, info


def recipe_for(
    args: argparse.Namespace, method: str, source: str, weights_path: str, model_config: dict[str, Any], faces: int, seed: int
):
    """recipes/synthetic.yaml with the backbone, the fixed budget and the seed of this run."""
    from aucli.config import Recipe, recipe_data

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
        **({} if getattr(args, "device", "cpu") == "cpu" else {"train.precision": getattr(args, "precision", "fp32")}),
        "train.eval_every": 100000,
        "train.select_by": "last",
    }
    data = recipe_data(recipe_data("synthetic", overrides), getattr(args, "override", None) or ())  # the user's -o last
    data["model"]["backbone_overrides"] = dict(model_config["backbone_overrides"])  # replaced whole, not merged key by key
    return Recipe.from_dict(data)


def weights_tag(weights_path: str) -> str:
    """``pretrained-<first 8 hex of the weight file's sha256>``: runs of another backbone file never resume these."""
    from aucli.fileio import file_sha256

    return f"pretrained-{file_sha256(weights_path)[:8]}"


def run_folder(args: argparse.Namespace, store: Path, method: str, source: str, seed: int) -> Path:
    """``runs/<store>/<budget_name>/<method>-<source>/seed<seed>``: GPU runs never mix with the CPU check's.

    ``source``: ``random``, or :func:`weights_tag` of the pretrained backbone.
    """
    return args.work / "runs" / store.stem / budget_name(args) / f"{method}-{source}" / f"seed{seed}"


def budget_name(args: argparse.Namespace) -> str:
    """``steps<S>-batch<B>``, then ``-cuda`` on a GPU, ``-bf16`` for bf16 autocast there, and ``-o<hash>``
    for ``--override`` fields (the first 8 hex of the sha256 of their sorted ``key=value`` texts)."""
    import hashlib

    device = getattr(args, "device", "cpu")
    name = f"steps{args.steps}-batch{args.batch}"
    if device != "cpu":
        name += f"-{device.split(':')[0]}" + ("-bf16" if getattr(args, "precision", "fp32") == "bf16" else "")
    overrides = sorted(o.strip() for o in getattr(args, "override", None) or [])
    if overrides:
        name += "-o" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return name


# ------------------------------------------------------------------------------------ one run
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>.lock`` (this process' id) while training ``folder``; a lock of a dead process is taken over."""
    from aucli.errors import UsageError

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.with_name(folder.name + ".lock")
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            text = lock.read_text(encoding="utf-8").strip()
            pid = int(text) if text.isdigit() else 0
            if pid and _pid_alive(pid):
                raise UsageError(f"process {pid} is training {folder} ({lock} exists); wait for it, or run other --methods/--seeds") from None
            lock.unlink(missing_ok=True)
    else:
        raise UsageError(f"could not take the lock {lock}; remove it if no process is training {folder}")
    try:
        os.write(handle, str(os.getpid()).encode())
    finally:
        os.close(handle)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


class RunOutcome(NamedTuple):
    """One run of all folds: ``done`` (``run`` holds its results), ``diverged`` or ``missing`` (``reason`` says why)."""

    status: str
    run: Any = None
    reason: str = ""


def finished_run(folder: Path, recipe: Any) -> RunOutcome:
    """The run in ``folder`` from its files alone (no store, no training): done when every fold has its result."""
    from aucli.engine.runs import read_json
    from aucli.engine.trainer import FoldResult, TrainResult, recipe_differences

    diverged = folder / DIVERGED_FILE
    if diverged.is_file():
        return RunOutcome("diverged", reason=read_json(diverged).get("error", "diverged"))
    differences = recipe_differences(folder, recipe)
    if differences is None or not (folder / "run.json").is_file():
        return RunOutcome("missing", reason="not started")
    if differences:
        return RunOutcome("missing", reason="made with another recipe: " + "; ".join(differences[:3]))
    folds = read_json(folder / "run.json")["folds"]
    unfinished = [f for f in folds if not (folder / f"fold{f}" / "result.json").is_file()]
    if unfinished:
        return RunOutcome("missing", reason=f"fold(s) {', '.join(map(str, unfinished))} unfinished")
    results = [FoldResult.from_dict(read_json(folder / f"fold{f}" / "result.json"), folder / f"fold{f}") for f in folds]
    return RunOutcome("done", TrainResult(folder, recipe, list(recipe.model.au_names), recipe.data.labels, results))


def train_or_report(
    store: Path,
    recipe: Any,
    folder: Path,
    *,
    report_only: bool = False,
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunOutcome:
    """Train (or resume) the run in ``folder`` under its lock, or only read it back with ``report_only``.

    A run that diverges (:class:`aucli.errors.TrainingDivergedError`) is recorded in
    ``diverged.json`` and not trained again.
    """
    from aucli.engine import train
    from aucli.errors import TrainingDivergedError
    from aucli.fileio import atomic_write_json

    known = finished_run(folder, recipe)
    if report_only or known.status != "missing":
        return known
    with run_lock(folder):
        try:
            run = train(store, recipe, out=folder, resume=True, show_progress=show_progress, on_step=on_step)
        except TrainingDivergedError as error:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / DIVERGED_FILE, {"error": str(error), "recipe_lr": recipe.optim.lr, "seed": recipe.train.seed})
            print(f"   diverged: {error}", file=sys.stderr, flush=True)
            return RunOutcome("diverged", reason=str(error))
    return RunOutcome("done", run)


def run_all(args: argparse.Namespace, store: Path, faces: int) -> dict[str, Any]:
    weights_path, model_config = backbone(args.weights)
    tag = weights_tag(weights_path)
    results: dict[str, Any] = {}
    for label, method, source in METHODS:
        if label not in args.method_labels:
            continue
        per_seed = []
        for seed in args.seed_list:
            folder = run_folder(args, store, method, "random" if source == "random" else tag, seed)
            recipe = recipe_for(args, method, source, weights_path, model_config, faces, seed)
            print(f"== {label}, seed {seed}: {folder}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            outcome = train_or_report(store, recipe, folder, report_only=args.report_only)
            entry: dict[str, Any] = {"seed": seed, "status": outcome.status, "reason": outcome.reason, "folder": str(folder)}
            if outcome.status == "done":
                run = outcome.run
                entry.update(f1=run.f1_matrix().tolist(), mean_f1=run.mean_f1(), seconds=round(time.perf_counter() - started, 1),
                             wall_s=float(sum(f.wall_time_s for f in run.folds)),
                             mean_auc=float(np.nanmean([f.test.mean_auc for f in run.folds])))  # fmt: skip
            per_seed.append(entry)
        results[label] = {"method": method, "backbone": source, "runs": per_seed}
    return {"au_names": list(recipe.model.au_names), "methods": results, "weights": weights_path, "weights_tag": tag,
            "model_config": model_config}  # fmt: skip


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    """Per method, over its finished runs: per-AU F1 (mean, std over seeds of the fold means) and mean F1 (mean, std over seeds).

    Diverged and missing runs are counted, never averaged in.
    """
    n_aus = len(figures["au_names"])
    out = {}
    for label, entry in figures["methods"].items():
        done = [r for r in entry["runs"] if r["status"] == "done"]
        counts = {status: sum(r["status"] == status for r in entry["runs"]) for status in ("done", "diverged", "missing")}
        if not done:
            out[label] = {"f1_mean": [float("nan")] * n_aus, "f1_std": [float("nan")] * n_aus, "mean_f1": float("nan"),
                          "mean_f1_std": float("nan"), "mean_auc": float("nan"), "wall_s": 0.0, **counts}  # fmt: skip
            continue
        per_au = np.stack([np.nanmean(np.asarray(r["f1"], dtype=float), axis=0) for r in done])  # (seeds, aus)
        means = np.asarray([r["mean_f1"] for r in done])
        out[label] = {"f1_mean": np.nanmean(per_au, axis=0).tolist(), "f1_std": np.nanstd(per_au, axis=0).tolist(),
                      "mean_f1": float(np.mean(means)), "mean_f1_std": float(np.std(means)),
                      "mean_auc": float(np.mean([r["mean_auc"] for r in done])), "wall_s": float(sum(r["wall_s"] for r in done)),
                      **counts}  # fmt: skip
    return out


def print_table(figures: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from rich.table import Table

    from aucli.console import console

    seeds = len(args.seed_list)
    title = "Learnability check (issue 4): test F1 % per AU, 3-fold subject-independent" + (
        " [QUICK: pipeline check only]" if args.quick else ""
    )
    device = args.device if args.device == "cpu" else f"{args.device} ({args.precision})"
    caption = (f"mean ± std over {seeds} seed(s) of the 3-fold mean; {args.steps} steps x {args.batch} faces per fold on {device}; "
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
    table.add_row("mean AUC", *[f"{100 * s['mean_auc']:.1f}" if np.isfinite(s["mean_auc"]) else "-" for s in summary.values()])
    table.add_row("seeds done", *[f"{s['done']}/{seeds}" for s in summary.values()])
    if any(s["diverged"] or s["missing"] for s in summary.values()):
        table.add_row("diverged / missing", *[f"{s['diverged']} / {s['missing']}" for s in summary.values()])
    table.add_row("train+eval time", *[f"{s['wall_s'] / 60:.1f} min" for s in summary.values()])
    console.print(table)
    for label, entry in figures["methods"].items():
        for r in entry["runs"]:
            if r["status"] != "done":
                console.print(f"{label}, seed {r['seed']}: {r['status']} ({r['reason']})", highlight=False)
    ours = summary.get("AUFormer, synthface", {}).get("mean_f1", float("nan"))
    others = [summary[k]["mean_f1"] for k in ("linear, synthface", "AUFormer, random") if k in summary]
    if np.isfinite(ours) and others and all(np.isfinite(others)):
        gap = ours - max(others)
        complete = all(s["done"] == seeds for s in summary.values()) and len(summary) == len(METHODS)
        verdict = ("no verdict: --quick checks the pipeline only" if args.quick else "no verdict: runs are missing or diverged" if not complete
                   else "met" if gap >= GOAL else "NOT met")  # fmt: skip
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
    if args.store_only:
        print(json.dumps(data), flush=True)
        return
    figures = run_all(args, store, data["faces"])
    summary = summarise(figures)
    print_table(figures, summary, args, command)
    payload = {"command": command, "quick": args.quick, "data": data, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")},
               "figures": figures, "summary": summary}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
