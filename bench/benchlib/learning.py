"""The learning checks' shared machinery: the synthetic corpus and its store, the fixed-budget recipe, runs.

``bench/learnability.py`` (the check of issue 4), ``bench/method_comparison.py`` (its methods and
data-efficiency tables), ``bench/collaboration_gain.py`` and ``bench/token_probe.py`` train on the
same store with the same recipe, and share run folders: a run one script made, another reads back
instead of training it again (each run is locked while it trains, so processes never train one
twice). Corpora, stores and runs are kept under ``--work`` (default ``bench/out/learnability``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

DESCRIPTION = "Learnability check of the synthetic world (issue 4): are AUs learnable on the synthetic-world backbone?"
ROOT = Path(__file__).resolve().parents[2]
# The fixed budget of every learning check (bench/learnability.py, bench/method_comparison.py's tables):
# optimiser steps of 32 faces per fold, about two passes over a fold's training subjects. 300 until 2026-11-27.
BUDGET_STEPS = 600
METHODS = (
    ("AUFormer, synthface", "auformer", "pretrained"),
    ("linear, synthface", "linear", "pretrained"),
    ("AUFormer, random", "auformer", "random"),
)
METHOD_KEYS = {"auformer": "AUFormer, synthface", "linear": "linear, synthface", "random": "AUFormer, random"}
DIVERGED_FILE = "diverged.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The learnability check's options (``python bench/learnability.py --help``); other scripts parse them to share its runs."""
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    from aucli.engine.results import FoldResult, TrainResult
    from aucli.engine.trainer import recipe_differences

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
