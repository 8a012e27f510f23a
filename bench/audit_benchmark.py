"""How well does ``aucli audit`` find the label mistakes injected into synthetic corpora (issue 6)?

For each noise mix and seed: render a synthetic corpus (``aucli.synth``) into a store (label sets
``synth``, as a coder delivered it with the injected mistakes, and ``synth_clean``), get
out-of-fold probabilities for ``synth`` (k subject-fold models trained on the noisy labels with
:func:`aucli.engine.out_of_fold_predictions`, calibrated per fold on held-out training subjects),
then rank every known (frame, AU) label with:

- ``audit``: :func:`aucli.audit.flags.score_labels` with temporal and confusion evidence (the defaults);
- ``audit, no temporal``: the same thresholds, every frame judged alone (score = calibrated q, or
  with the partner's evidence on a swap of a confusion pair);
- ``audit, no confusion``: temporal evidence, no confusion pairs;
- ``cleanlab rank``: ``cleanlab.multilabel_classification.rank.get_label_quality_scores_per_class``
  (self-confidence per class; lower quality = more suspicious), the per-class form of
  ``get_label_quality_scores``;
- ``cleanlab filter``: ``cleanlab.multilabel_classification.filter.find_multilabel_issues_per_class``
  (``prune_by_noise_rate``), the per-class form of ``find_label_issues``: its issues first, ranked by
  self-confidence, then the rest by the same score;

all on the SAME calibrated out-of-fold probabilities. Ground truth: the (frame, AU) labels whose
occurrence the manifest records as changed (``groundtruth.npz``: ``noisy_levels`` against
``levels``, occurrence = level >= 1 as in BP4D); labels the noise left uncoded are not judged.

Measures: AUPRC (average precision) of the ranking, precision at k, and for methods with a queue
(audit: the labels its flags cover; cleanlab filter: its issues) the queue's size, precision and
recall; ``cleanlab rank`` and ``audit, no temporal`` are also read at the audit's queue length. As
``aucli audit`` does, the audit's queues leave out AUs whose out-of-fold AUC against the audited
labels is below 0.6 (the model cannot judge them), and such AUs lend no confusion evidence; its
ranking covers every label. A second table gives the recall at the audit's queue length per noise
type of the manifest (``noise_reason``: boundary, missed, confusion, flip), a third the AUPRC
gain of each audit variant over the better of the two cleanlab rankings, paired by corpus.

Run (``--work`` keeps corpora, stores and fold models for reruns):
    python bench/audit_benchmark.py --mixes light,realistic,heavy --seeds 0,1,2 --epochs 2 -o train.eval_every=2
        (fold models: about 6 minutes per corpus on 2 quiet cores)
    python bench/audit_benchmark.py --mixes light,realistic,heavy --seeds 0,1,2 --judge 1.5,2.5 --threads 1
        (no training: about 3 minutes on the shared 2-core machine, 45 s once the 9 corpora are rendered)
    python bench/audit_benchmark.py --oof oof.npz --store corpus.h5 --manifest corpus/   (given predictions)

``--judge SIGMA,...`` replaces the trained models by a *simulated judge*, to compare the rankers
when the model is informative (the CPU recipe, trained for minutes on six subjects, is not yet):
``logit = 3 tanh(I - 0.5) + slow + fast`` per (frame, AU), with ``I`` the exact rendered intensity
(max over sides; occurrence is I >~ 0.5), ``slow`` an AR(1) drift along the frames of a recording
(correlation 0.95 per frame: a model's errors persist over neighbouring frames) and ``fast`` white
noise, each of standard deviation ``SIGMA / sqrt(2)``. It never sees the noisy labels; its logits
are calibrated by cross-fitting over 3 subject groups, as a ``--checkpoint`` audit does.

``--oof FILE.npz`` (with ``--store`` and ``--manifest``) evaluates out-of-fold predictions made
elsewhere (a GPU machine): arrays ``rows`` (n,) store rows, ``au_names`` (K,) and ``calibrated``
(n, K), or ``logits`` (n, K) plus ``fold`` (n,) to cross-fit a calibration over folds. The
benchmark writes this same file for every corpus it trains (``WORK/<mix>-seed<k>/oof.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("audit", "audit, no temporal", "audit, no confusion", "cleanlab rank", "cleanlab filter")
AUDIT_VARIANTS = {"audit": {}, "audit, no temporal": {"temporal": False}, "audit, no confusion": {"confusion_pairs": []}}
#: noise types of the synth ledger reported one by one (aucli.synth.noise.REASONS)
NOISE_TYPES = ("boundary", "missed", "confusion", "flip")


# ------------------------------------------------------------------------------------ data
def make_store(work: Path, mix: str, seed: int, args) -> tuple[Path, Path]:
    """Corpus and store of one (mix, seed), made once and reused."""
    from aucli.synth.corpus import CorpusConfig, CorpusManifest, corpus_to_store, make_corpus

    folder = work / f"{mix}-seed{seed}"
    corpus, store = folder / "corpus", folder / "corpus.h5"
    if not store.exists():
        config = CorpusConfig(out=corpus, subjects=args.subjects, seed=seed, tasks=tuple(f"T{i + 1}" for i in range(args.tasks)),
                              frames=args.frames, size=args.size, noise=mix, workers=args.workers)
        manifest = make_corpus(config)
        partial = store.with_suffix(".partial.h5")
        partial.unlink(missing_ok=True)
        corpus_to_store(manifest, partial, detector="none", crop_size=args.crop, show_progress=False)
        partial.rename(store)
    CorpusManifest.load(corpus)
    return corpus, store


def train_oof(store: Path, folder: Path, args) -> Path:
    """Out-of-fold predictions of fold models trained on the noisy labels, cached as ``oof.npz``."""
    out = folder / "oof.npz"
    if out.exists():
        return out
    import torch

    from aucli.config import load_recipe
    from aucli.engine import out_of_fold_predictions

    torch.set_num_threads(args.threads)
    overrides = {"train.device": args.device, "data.num_workers": 0, "data.labels": "synth", "model.au_names": "bp4d",
                 "train.n_folds": args.folds}
    if args.img_size:
        overrides["model.img_size"] = args.img_size
    if args.epochs:
        overrides["optim.epochs"] = args.epochs
    recipe = load_recipe(args.recipe, [*(f"{k}={json.dumps(v)}" for k, v in overrides.items()), *args.override])
    started = time.perf_counter()
    result = out_of_fold_predictions(store, recipe, out=folder / "folds", label_set="synth", resume=True, show_progress=args.progress)
    np.savez(out, rows=result.rows, au_names=np.asarray(result.au_names), logits=result.logits, calibrated=result.calibrated,
             fold=result.fold, train_seconds=time.perf_counter() - started, mean_f1=result.run.mean_f1())
    return out


def simulated_judge(corpus: Path, store: Path, folder: Path, sigma: float, seed: int) -> Path:
    """Out-of-fold-like predictions of a simulated judge (module docstring), cached as ``judge-SIGMA.npz``."""
    from aucli.aus import parse_au_list
    from aucli.store import CorpusStore
    from aucli.synth.corpus import CorpusManifest

    out = folder / f"judge-{sigma:g}.npz"
    if out.exists():
        return out
    au_names = parse_au_list("bp4d")
    manifest = CorpusManifest.load(corpus)
    with CorpusStore.open(store) as opened:
        rows = opened.read_labels("synth", au_names=au_names).labelled_rows()
        subjects = opened.face_subjects()[rows]
        faces = opened.face_table(["source", "frame"])
        paths = opened.source_table(latest=False)["path"]
    start_of = {str((manifest.root / r["media"]).resolve()): r["rows"][0] for r in manifest.recordings}
    source = faces["source"][rows]
    manifest_rows = np.array([start_of[str(Path(paths[s]).resolve())] for s in source]) + faces["frame"][rows]
    columns = [manifest.aus.index(a) for a in au_names]
    intensity = manifest.arrays["intensity"][manifest_rows][:, columns].max(axis=2).astype(np.float64)
    rng = np.random.default_rng(1000 + seed)
    scale = sigma / np.sqrt(2.0)
    fast = rng.normal(0.0, scale, intensity.shape)
    slow = np.empty_like(intensity)
    innovation = rng.normal(0.0, scale * np.sqrt(1 - 0.95**2), intensity.shape)
    for i in range(rows.size):
        new_recording = i == 0 or source[i] != source[i - 1]
        slow[i] = rng.normal(0.0, scale, intensity.shape[1]) if new_recording else 0.95 * slow[i - 1] + innovation[i]
    logits = 3.0 * np.tanh(intensity - 0.5) + slow + fast
    from aucli.protocols import balanced_partitions

    groups = {s: g + 1 for g, part in enumerate(balanced_partitions(sorted(set(subjects.tolist())), 3, seed=seed)) for s in part}
    np.savez(out, rows=rows, au_names=np.asarray(au_names), logits=logits.astype(np.float32),
             fold=np.array([groups[s] for s in subjects], np.int32))
    return out


def load_oof(path: Path, store: Path):
    """``(rows, au_names, calibrated)`` from an ``oof.npz`` (cross-fitting a calibration when only logits are there)."""
    from aucli.audit.sources import cross_fit_calibration
    from aucli.store import CorpusStore

    data = np.load(path, allow_pickle=False)
    rows, au_names = data["rows"].astype(np.int64), [str(a) for a in data["au_names"]]
    if "calibrated" in data:
        return rows, au_names, data["calibrated"].astype(np.float64)
    with CorpusStore.open(store) as opened:
        labels = opened.read_labels("synth", au_names=au_names).occurrence[rows]
    calibrated, _ = cross_fit_calibration(data["logits"], labels, data["fold"], au_names=au_names)
    return rows, au_names, calibrated.astype(np.float64)


def ground_truth(corpus: Path, store: Path, rows: np.ndarray, au_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(noisy labels, clean labels, changed, reason)`` ``(n, K)`` for the store rows, from the manifest's ground truth.

    ``reason``: the ledger's noise type of each label (index into :data:`aucli.synth.noise.REASONS`, 0 = clean).
    """
    from aucli.store import CorpusStore
    from aucli.synth.corpus import CorpusManifest

    manifest = CorpusManifest.load(corpus)
    arrays = manifest.arrays
    columns = [manifest.aus.index(a) for a in au_names]
    start_of = {str((manifest.root / r["media"]).resolve()): r["rows"][0] for r in manifest.recordings}
    with CorpusStore.open(store) as opened:
        faces = opened.face_table(["source", "frame"])
        paths = opened.source_table(latest=False)["path"]
        noisy_set = opened.read_labels("synth", au_names=au_names).occurrence[rows]
        clean_set = opened.read_labels("synth_clean", au_names=au_names).occurrence[rows]
    manifest_rows = np.array([start_of[str(Path(paths[s]).resolve())] for s in faces["source"][rows]]) + faces["frame"][rows]
    levels = arrays["levels"][manifest_rows][:, columns]
    noisy_levels = arrays["noisy_levels"][manifest_rows][:, columns]
    known = noisy_levels >= 0
    changed = known & ((levels >= 1) != (noisy_levels >= 1))
    # the store's two label sets say the same (a check of the frame mapping)
    store_changed = (noisy_set >= 0) & (clean_set >= 0) & (noisy_set != clean_set)
    if not np.array_equal(changed, store_changed):
        raise SystemExit(f"{store}: the manifest's changed labels ({int(changed.sum())}) differ from synth vs synth_clean "
                         f"({int(store_changed.sum())}); the frame mapping is wrong")
    return noisy_set, clean_set, changed, arrays["noise_reason"][manifest_rows][:, columns]


# ------------------------------------------------------------------------------------ methods
def rank_methods(store: Path, rows: np.ndarray, au_names: list[str], probs: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    """Scores ``(n, K)`` (higher = more suspicious; NaN = not judged) and queues of every method."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    from aucli.audit.flags import ScoringConfig, score_labels
    from aucli.audit.run import DEFAULT_MIN_AUC
    from aucli.audit.temporal import expand_runs, segment_ids, sequence_order
    from aucli.audit.thresholds import derive_thresholds
    from aucli.metrics import auc_scores
    from aucli.store import CorpusStore

    with CorpusStore.open(store) as opened:
        faces = opened.face_table(["source", "track", "frame"])
    order = sequence_order(faces["source"][rows], faces["track"][rows], faces["frame"][rows])
    if not np.array_equal(order, np.arange(rows.size)):
        raise SystemExit("rows are expected in sequence order (store order of a synthetic corpus)")
    segments = segment_ids(faces["source"][rows], faces["track"][rows], faces["frame"][rows])
    known = (labels == 0) | (labels == 1)
    rates = np.where(known.sum(0) > 0, (labels == 1).sum(0) / np.maximum(known.sum(0), 1), np.nan)
    thresholds = derive_thresholds(au_names, rates=rates)
    judged_aus = auc_scores(probs, labels) >= DEFAULT_MIN_AUC  # as `aucli audit`: AUs the model cannot rank get no flag
    unjudged = [a for a, judged in zip(au_names, judged_aus) if not judged]
    results: dict[str, dict[str, Any]] = {}
    for name, options in AUDIT_VARIANTS.items():
        scored = score_labels(probs, labels, segments, thresholds, ScoringConfig(**options), skip=unjudged)
        queue = np.zeros(labels.shape, bool)
        flags = scored.flag_table()
        for k in np.flatnonzero(judged_aus):
            mine = flags.au == k
            queue[expand_runs(flags.start[mine], flags.stop[mine]), k] = True
        results[name] = {"scores": scored.frame_scores.astype(np.float64), "queue": queue, "flags": len(flags)}
    # cleanlab needs every label of a row: judge the rows where all AUs are known (uncoded noise blanks whole frames)
    full = known.all(axis=1)
    lists = [list(np.flatnonzero(row == 1)) for row in labels[full]]
    quality = np.asarray(get_label_quality_scores_per_class(lists, probs[full]))  # (n_full, K), 1 = label looks right
    scores = np.full(labels.shape, np.nan)
    scores[full] = 1.0 - quality
    results["cleanlab rank"] = {"scores": scores, "queue": None}
    issues = np.asarray(find_multilabel_issues_per_class(lists, probs[full], filter_by="prune_by_noise_rate"))  # (n_full, K) bool
    queue = np.zeros(labels.shape, bool)
    queue[full] = issues
    filter_scores = np.where(queue, 1.0 + scores, scores)  # its issues first, each ranked by self-confidence
    results["cleanlab filter"] = {"scores": filter_scores, "queue": queue}
    for name in AUDIT_VARIANTS:  # judge the same labels as cleanlab
        results[name]["scores"] = np.where(full[:, None], results[name]["scores"], np.nan)
        results[name]["queue"] &= full[:, None]
    return results


def measure(results: dict[str, dict[str, Any]], changed: np.ndarray, reason: np.ndarray, ks: list[int]) -> dict[str, dict[str, float]]:
    from aucli.audit.rank import average_precision, precision_at_k, ranking_order, recall_at_k
    from aucli.synth.noise import REASONS

    judged = np.isfinite(results["cleanlab rank"]["scores"])
    truth = changed & judged
    audit_queue = int(results["audit"]["queue"].sum())
    table: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        scores = result["scores"].reshape(-1)
        row = {"auprc": average_precision(scores, truth.reshape(-1))}
        row.update({f"p@{k}": precision_at_k(scores, truth.reshape(-1), k) for k in ks})
        queue = result["queue"]
        length = int(queue.sum()) if queue is not None else audit_queue
        row["queue"] = length if queue is not None else float("nan")
        row["queue precision"] = float(truth[queue].mean()) if queue is not None and queue.any() else float("nan")
        row["recall@queue"] = recall_at_k(scores, truth.reshape(-1), length) if length else float("nan")
        row["recall@audit queue"] = recall_at_k(scores, truth.reshape(-1), audit_queue) if audit_queue else float("nan")
        table[name] = row
    table["_corpus"] = {"labels": int(judged.sum()), "wrong": int(truth.sum()), "base rate": float(truth.sum() / max(judged.sum(), 1))}
    # recall at the audit's queue length, per noise type: which mistakes each method finds
    by_type: dict[str, dict[str, float]] = {}
    for noise in NOISE_TYPES:
        mine = (truth & (reason == REASONS.index(noise))).reshape(-1)
        entry = {"wrong": float(mine.sum())}
        for name, result in results.items():
            found = ranking_order(result["scores"].reshape(-1))[:audit_queue]
            entry[name] = float(mine[found].sum() / mine.sum()) if mine.any() and audit_queue else float("nan")
        by_type[noise] = entry
    table["_types"] = by_type
    return table


def model_quality(probs: np.ndarray, clean: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    from aucli.metrics import auc_scores, nanmean

    return {"auc vs clean": nanmean(auc_scores(probs, clean)), "auc vs noisy": nanmean(auc_scores(probs, noisy))}


# ------------------------------------------------------------------------------------ report
def summarise(records: list[dict[str, Any]], ks: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=190)

    columns = ["auprc", *[f"p@{k}" for k in ks], "queue", "queue precision", "recall@queue", "recall@audit queue"]
    table = Table(title="Finding injected label mistakes: (frame, AU) ranking, % (mean ± sd over seeds)")
    for column in ("mix", "method", *columns):
        table.add_column(column, justify="left" if column in ("mix", "method") else "right")
    for mix in dict.fromkeys(r["mix"] for r in records):
        mine = [r for r in records if r["mix"] == mix]
        wrong = np.mean([r["measures"]["_corpus"]["wrong"] for r in mine])
        judged = np.mean([r["measures"]["_corpus"]["labels"] for r in mine])
        quality = np.mean([r["quality"]["auc vs clean"] for r in mine])
        for n, method in enumerate(METHODS):
            cells = []
            for column in columns:
                values = np.array([r["measures"][method][column] for r in mine], dtype=float)
                if np.all(np.isnan(values)):
                    cells.append("-")
                elif column == "queue":
                    cells.append(f"{np.nanmean(values):,.0f}")
                else:
                    cells.append(f"{100 * np.nanmean(values):.1f} ± {100 * np.nanstd(values):.1f}")
            label = f"{mix} ({len(mine)} seeds, {wrong:,.0f} of {judged:,.0f} labels wrong, model AUC {quality:.2f})" if n == 0 else ""
            table.add_row(label, method, *cells)
        table.add_section()
    console.print(table)

    types = Table(title="Recall at the audit's queue length by noise type, % (mean ± sd over seeds; n: wrong labels per corpus)")
    for column in ("mix", "noise type", "n", *METHODS):
        types.add_column(column, justify="left" if column in ("mix", "noise type") else "right")
    for mix in dict.fromkeys(r["mix"] for r in records):
        mine = [r for r in records if r["mix"] == mix]
        for n, noise in enumerate(NOISE_TYPES):
            entries = [r["measures"]["_types"][noise] for r in mine]
            cells = []
            for method in METHODS:
                values = np.array([e[method] for e in entries], dtype=float)
                cells.append("-" if np.all(np.isnan(values)) else f"{100 * np.nanmean(values):.1f} ± {100 * np.nanstd(values):.1f}")
            types.add_row(mix if n == 0 else "", noise, f"{np.mean([e['wrong'] for e in entries]):,.0f}", *cells)
        types.add_section()
    console.print(types)

    gains = Table(title="AUPRC gain over cleanlab (the better of rank and filter on each corpus), points: mean ± sd over seeds [min, max]")
    variants = list(AUDIT_VARIANTS)
    for column in ("mix", *variants):
        gains.add_column(column, justify="left" if column == "mix" else "right")
    for mix in dict.fromkeys(r["mix"] for r in records):
        mine = [r for r in records if r["mix"] == mix]
        best = np.array([max(r["measures"]["cleanlab rank"]["auprc"], r["measures"]["cleanlab filter"]["auprc"]) for r in mine])
        cells = []
        for method in variants:
            gain = 100 * (np.array([r["measures"][method]["auprc"] for r in mine]) - best)
            cells.append(f"{gain.mean():+.1f} ± {gain.std():.1f} [{gain.min():+.1f}, {gain.max():+.1f}]")
        gains.add_row(mix, *cells)
    console.print(gains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixes", default="light,realistic,heavy", help="noise mixes (aucli synth --noise), comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="corpus seeds")
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=2, help="BP4D tasks per subject")
    parser.add_argument("--frames", type=int, default=120, help="frames per task")
    parser.add_argument("--size", type=int, default=128, help="rendered frame size")
    parser.add_argument("--crop", type=int, default=128, help="stored face crop size")
    parser.add_argument("--recipe", default="synthetic", help="recipe YAML or packaged recipe name [default: synthetic]")
    parser.add_argument("--override", "-o", action="append", default=[], help="recipe KEY=VALUE (repeatable)")
    parser.add_argument("--img-size", type=int, help="model input size  [default: the recipe's]")
    parser.add_argument("--epochs", type=int, help="training epochs  [default: the recipe's]")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering a corpus")
    parser.add_argument("--work", type=Path, default=Path("bench/out/audit_benchmark"), help="corpora, stores, fold models, oof.npz")
    parser.add_argument("--k", default="100,500", help="precision at k")
    parser.add_argument("--judge", help="simulated judge noise levels (SIGMA,...) instead of trained fold models")
    parser.add_argument("--oof", type=Path, help="evaluate these out-of-fold predictions (with --store and --manifest)")
    parser.add_argument("--store", type=Path, help="store of --oof")
    parser.add_argument("--manifest", type=Path, help="synthetic corpus folder (manifest.json) of --store")
    parser.add_argument("--progress", action="store_true", help="show training progress")
    parser.add_argument("--json", type=Path, help="also write the per-corpus measures as JSON")
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    jobs: list[tuple[str, int, Path, Path, Path]] = []
    if args.oof:
        if not (args.store and args.manifest):
            parser.error("--oof needs --store STORE.h5 and --manifest CORPUS_DIR")
        jobs.append(("given", 0, args.manifest, args.store, args.oof))
    else:
        for mix in args.mixes.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                corpus, store = make_store(args.work, mix, seed, args)
                if args.judge:
                    for sigma in (float(x) for x in args.judge.split(",")):
                        jobs.append((f"{mix}, judge sigma {sigma:g}", seed, corpus, store,
                                     simulated_judge(corpus, store, store.parent, sigma, seed)))
                    continue
                started = time.perf_counter()
                oof = train_oof(store, store.parent, args)
                print(f"{mix} seed {seed}: out-of-fold predictions ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
                jobs.append((mix, seed, corpus, store, oof))
    records = []
    for mix, seed, corpus, store, oof_path in jobs:
        rows, au_names, probs = load_oof(oof_path, store)
        noisy, clean, changed, reason = ground_truth(corpus, store, rows, au_names)
        results = rank_methods(store, rows, au_names, probs, noisy)
        records.append({"mix": mix, "seed": seed, "measures": measure(results, changed, reason, ks),
                        "quality": model_quality(probs, clean, noisy), "flags": results["audit"]["flags"]})
    summarise(records, ks)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=float))


if __name__ == "__main__":
    main()
