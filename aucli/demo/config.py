"""What the demo makes (:class:`DemoConfig`) and what it found (:class:`DemoResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aucli.errors import UsageError
from aucli.resources import recipe_path

__all__ = ["DEFAULT_BASE", "RECIPE_PATH", "DemoConfig", "DemoResult"]

#: The packaged recipe the demo trains with.
RECIPE_PATH = recipe_path("synthetic")
#: The registered checkpoint the demo fine-tunes ("none": train the experts from zero instead).
DEFAULT_BASE = "synthface-auformer"


@dataclass
class DemoConfig:
    """What the demo makes; the defaults run in about 7 minutes on a 2-core CPU."""

    out: Path
    subjects: int = 12
    tasks: tuple[str, ...] = ("T1", "T2")
    frames: int = 100
    size: int = 224
    noise: str = "light"
    epochs: int | None = None
    seed: int = 0
    device: str = "auto"
    recipe: Path = RECIPE_PATH
    overrides: tuple[str, ...] = ()
    base: str = DEFAULT_BASE
    linear: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.subjects < 3:
            raise UsageError(f"the demo needs at least 3 subjects for 3 subject-independent folds (got {self.subjects})")
        if not Path(self.recipe).is_file():
            raise UsageError(f"recipe not found: {self.recipe}")

    @property
    def fine_tunes(self) -> bool:
        return self.base.lower() != "none"


@dataclass
class DemoResult:
    """Paths and figures of a finished demo (F1 and AUC as fractions)."""

    out: Path
    store: Path
    run: Path
    checkpoint: Path
    predictions: Path
    report: Path
    mean_f1: float
    mean_auc: float
    all_present_f1: float
    linear_f1: float | None
    base_f1: float | None
    base_auc: float | None
    audit: dict[str, Any] | None
    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    faces: int = 0
    predicted_videos: int = 0
    test_subjects: tuple[str, ...] = ()

    @property
    def gain_over_all_present(self) -> float:
        return self.mean_f1 - self.all_present_f1

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "store": str(self.store), "run": str(self.run), "checkpoint": str(self.checkpoint),
            "predictions": str(self.predictions), "report": str(self.report), "test_mean_f1": self.mean_f1,
            "test_mean_auc": self.mean_auc, "all_present_f1": self.all_present_f1, "linear_f1": self.linear_f1,
            "base_f1": self.base_f1, "base_auc": self.base_auc, "audit": self.audit, "seconds": self.seconds,
            "frames": self.frames, "faces": self.faces, "predicted_videos": self.predicted_videos,
            "test_subjects": list(self.test_subjects),
        }
