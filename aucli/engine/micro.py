"""Fine-tuning a trained AUFormer on micro-expression data (``aucli finetune-micro``).

A checkpoint trained on macro-expressions (BP4D, DISFA, the synthetic corpus) is adapted to a
CASME II-style store:

- **AUs.** The fine-tuned model detects the AUs that the checkpoint and the micro label set share
  (by name, or through ``data.au_map``), or those of ``micro.aus``. In AUFormer an AU is not a
  head but an expert in every MoKE group, so an AU the checkpoint lacks cannot be fine-tuned from
  it: such AUs are listed and left out (``micro.aus`` naming one is refused); train them with
  ``aucli train``. Shared AUs without a single present label in the data are left out too.
- **Model.** The frozen backbone is the checkpoint's. The experts and head rows of the kept AUs are
  the checkpoint's (sliced on the AU axis); the other AUs' experts are dropped, and the experts'
  scale becomes ``s * N_kept / N`` so each kept expert injects what it injected before. Training
  updates the MoKE experts and the heads (``micro.tune: experts``) or the heads only (``heads``).
- **Protocol.** Leave-one-subject-out (``loso``, the field's CASME II protocol; fold f tests on
  the f-th subject in sorted order) or subject k-fold (``kfold``). Validation subjects, drawn from
  each fold's training subjects, fit the per-AU thresholds and select the epoch; the test subject
  never does. F1 is computed per fold and, as the field reports it, pooled: TP/FP/FN summed over
  every fold's test predictions (each at its fold's thresholds).
- **Before and after.** The checkpoint itself is scored on every fold's test subjects (zero-shot
  transfer) at its own thresholds and at thresholds fitted on the fold's validation subjects, then
  the fine-tuned model at its fitted thresholds.
- **The written model.** After the folds, one more model is trained on every subject except a
  seeded ``train.validation_fraction`` of them, which fit its thresholds and select its epoch
  exactly as in a fold: ``OUT/finetuned.safetensors`` + ``.json``, which ``aucli predict`` loads.
  The fold models estimate how well this procedure transfers; picking the best fold instead would
  select on test subjects.

Training reuses :func:`aucli.engine.fold.train_fold` unchanged: the data and labels come in as a
:class:`~aucli.engine.corpus.Corpus` (:mod:`aucli.engine.micro_data`), the starting weights
through its ``init_model`` hook.

Run folder (``--out``)::

    recipe.yaml                   the resolved recipe (model: the fine-tuned model's)
    micro.json                    micro settings, source checkpoint (sha256), AU pairs, fold subjects
    zero_shot.safetensors         the checkpoint's logits on every face (rows, logits): "before"
    fold1/ ... foldK/             one trainer folder per fold (metrics, best checkpoint, predictions)
    final/                        the model trained on every subject (validation subjects held out)
    finetuned.safetensors, .json  that model, with the fine-tuning summary in its JSON
    metrics.jsonl, metrics.csv    per-AU F1 before / after, per fold and pooled
    summary.json                  everything the command prints (also --json)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from aucli.aus import parse_au_list
from aucli.config import ModelConfig, Recipe, Section, build_section, merge_dicts, option
from aucli.errors import ModelError, StoreError, UsageError
from aucli.metrics import MetricReport, confusion_counts, evaluate, fit_thresholds
from aucli.protocols import FoldSplit, balanced_partitions, fold_split

__all__ = [
    "MICRO_DEFAULTS",
    "MicroConfig",
    "MicroFold",
    "MicroResult",
    "au_axis",
    "finetune_micro",
    "map_micro_aus",
    "micro_fold_splits",
    "split_micro_recipe",
    "transfer_config",
    "transfer_state",
]

#: What finetune-micro changes in the field defaults (a lower learning rate, a short schedule);
#: a recipe file and overrides come on top. aucli/recipes/casme2.yaml spells the same values out.
MICRO_DEFAULTS: dict[str, Any] = {"optim": {"lr": 1.0e-4, "epochs": 5, "warmup_epochs": 0.5}}

#: Recipe keys finetune-micro decides itself.
_FORBIDDEN_TRAIN_KEYS = ("method", "protocol", "n_folds", "fold")


def _parse_aus(value: Any) -> list[str]:
    return parse_au_list(value if isinstance(value, str) else [str(v) for v in value])


@dataclass
class MicroConfig(Section):
    """The ``micro:`` section of a finetune-micro recipe."""

    aus: list[str] | None = option(
        None, "AUs to fine-tune: a set (casme2) or a list; null: every AU the checkpoint and the label set share", parse=_parse_aus
    )
    protocol: Literal["loso", "kfold"] = option("loso", "leave-one-subject-out, or subject k-fold (micro.n_folds)")
    n_folds: int = option(5, "folds of the kfold protocol", min=2, max=10000)
    tune: Literal["experts", "heads"] = option("experts", "train the MoKE experts and the heads, or the heads only (experts frozen)")
    outside: Literal["negative", "unknown"] = option(
        "negative", "faces of a coded clip outside its onset..offset window: neutral (negative for every AU), or unknown (unused)"
    )
    event_repeat: int = option(3, "times per training epoch each face in the central part of an event window appears", min=1, max=1000)
    apex_fraction: float = option(
        0.5, "central share of each event window repeated event_repeat times (its centre stands in for the apex)", min=0.0, max=1.0
    )
    neutral_fraction: float = option(1.0, "share of training faces without a present AU that training keeps (seeded)", min=0.0, max=1.0)
    final: bool = option(True, "after the folds, train the model written as OUT/finetuned on every subject")


# ------------------------------------------------------------------------------------ recipe
def split_micro_recipe(data: Mapping[str, Any]) -> tuple[Recipe, MicroConfig]:
    """A finetune-micro recipe dict (defaults not yet applied) -> the training recipe and the micro section.

    :data:`MICRO_DEFAULTS` fill what ``data`` does not set. The recipe's model section is a
    placeholder until the checkpoint's replaces it (:func:`transfer_config`).
    """
    data = dict(data)
    if "model" in data:
        raise UsageError("finetune-micro takes the model from --checkpoint; remove the model: section (choose AUs with micro.aus or --aus)")
    train = data.get("train") or {}
    if isinstance(train, Mapping):
        for key in _FORBIDDEN_TRAIN_KEYS:
            if key in train and not (key == "method" and train[key] == "auformer"):
                raise UsageError(
                    f"train.{key} does not apply to finetune-micro: it fine-tunes an AUFormer checkpoint, on folds of "
                    "micro.protocol (loso or kfold) and micro.n_folds"
                )
    micro = build_section(MicroConfig, data.pop("micro", None), "micro")
    recipe = Recipe.from_dict(merge_dicts(MICRO_DEFAULTS, data))
    return recipe, micro


# ------------------------------------------------------------------------------------ AUs
def map_micro_aus(
    source_aus: Sequence[str],
    label_aus: Sequence[str],
    *,
    label_set: str,
    au_map: Mapping[str, str] | None = None,
    requested: Sequence[str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Checkpoint AU -> label-set AU of the AUs to fine-tune (checkpoint order), and the label-set
    AUs the checkpoint has no expert for.

    Raises:
        StoreError: no AU in common, or a requested AU the label set does not code.
        UsageError: a requested AU the checkpoint does not detect.
    """
    from aucli.engine.data import label_columns

    try:
        pairs = label_columns(list(source_aus), list(label_aus), au_map, require_all=False)
    except StoreError:
        raise StoreError(
            f"no AU in common between the checkpoint ({', '.join(source_aus)}) and label set {label_set!r} "
            f"({', '.join(label_aus)}); map differently named AUs with -o data.au_map=\"{{AU12: AU12R}}\""
        ) from None
    if requested:
        lacking = [a for a in requested if a not in source_aus]
        if lacking:
            raise UsageError(
                f"the checkpoint does not detect {', '.join(lacking)} (it detects {', '.join(source_aus)}); an AU is an expert "
                "in every AUFormer block, so finetune-micro adapts the checkpoint's own AUs and adds none: drop them from "
                "--aus, or train a model for them with `aucli train`"
            )
        uncoded = [a for a in requested if a not in pairs]
        if uncoded:
            raise StoreError(f"label set {label_set!r} codes no {', '.join(uncoded)} (its AUs: {', '.join(label_aus)})")
        pairs = {a: pairs[a] for a in source_aus if a in requested}
    mapped = set(pairs.values())
    missing = [a for a in label_aus if a not in mapped]
    return pairs, missing


# ------------------------------------------------------------------------------------ model
def transfer_config(cfg: ModelConfig, keep: Sequence[str]) -> ModelConfig:
    """The checkpoint's model configuration restricted to the AUs ``keep`` (in the checkpoint's order).

    The experts' scale becomes ``s * len(keep) / N``: the injected mean over experts then adds up
    the kept experts' knowledge exactly as the checkpoint's mean did.
    """
    unknown = [a for a in keep if a not in cfg.au_names]
    if unknown or not keep:
        raise ModelError(f"cannot keep AUs {list(keep)} of a model that detects {cfg.au_names}")
    ordered = [a for a in cfg.au_names if a in keep]
    moke = dataclasses.replace(cfg.moke, scale=cfg.moke.scale * len(ordered) / len(cfg.au_names))
    return dataclasses.replace(cfg, au_names=ordered, moke=moke)


def au_axis(name: str, *, head_hidden: int) -> int | None:
    """The axis of an AUFormer parameter (or buffer) that indexes AUs; None when every AU shares it.

    MoKE group tensors are expert-major (axis 0) except the multi-receptive-field convs, which are
    dilation-major (axis 1); expert heads are AU-major; in the main head only the output layer is.
    """
    if name.startswith(("attn_experts.", "mlp_experts.")):
        return 1 if name.rsplit(".", 1)[-1] in ("mrf_weight", "mrf_bias") else 0
    if name.startswith("expert_heads."):
        return 0
    if name.startswith("head."):
        output_layer = f"head.mlp.{2 if head_hidden > 0 else 0}."
        return 0 if name.startswith(output_layer) else None
    return None


def transfer_state(
    state: Mapping[str, Tensor], source_aus: Sequence[str], keep: Sequence[str], *, head_hidden: int
) -> dict[str, Tensor]:
    """A full AUFormer state dict (backbone included) cut down to the AUs ``keep``, in source order."""
    index = [list(source_aus).index(a) for a in source_aus if a in keep]
    result: dict[str, Tensor] = {}
    for name, tensor in state.items():
        axis = au_axis(name, head_hidden=head_hidden)
        if axis is None:
            result[name] = tensor
        else:
            result[name] = tensor.index_select(axis, torch.as_tensor(index, dtype=torch.long, device=tensor.device))
    return result


def _initializer(state: Mapping[str, Tensor], tune: str):
    """The ``init_model`` hook of :func:`train_fold`: load the transferred weights; freeze the experts for ``heads``."""

    def init(model: nn.Module) -> None:
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as error:
            raise ModelError(f"the checkpoint's weights do not fit the fine-tuned model: {str(error).splitlines()[0]}") from None
        if tune == "heads":
            model.attn_experts.requires_grad_(False)
            model.mlp_experts.requires_grad_(False)

    return init


# ------------------------------------------------------------------------------------ folds
def micro_fold_splits(
    subjects: Sequence[str], *, protocol: str, n_folds: int, validation_fraction: float, seed: int
) -> list[FoldSplit]:
    """The folds' subjects: fold f tests on the f-th subject (loso) or the f-th balanced group (kfold).

    Validation subjects are drawn from each fold's training subjects (:func:`aucli.protocols.fold_split`).
    """
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise UsageError(f"a subject-independent protocol needs at least 2 subjects; the micro data has {len(unique)}")
    if protocol == "loso":
        groups: tuple[tuple[str, ...], ...] = tuple((s,) for s in unique)
    elif protocol == "kfold":
        groups = balanced_partitions(unique, n_folds, seed=seed)
    else:
        raise UsageError(f"micro.protocol must be loso or kfold (found {protocol!r})")
    partitions = tuple(reversed(groups))  # fold_split: fold f tests on partition k - f
    return [fold_split(partitions, f, validation_fraction=validation_fraction, seed=seed) for f in range(1, len(groups) + 1)]


def final_split(subjects: Sequence[str], *, fold: int, validation_fraction: float, seed: int) -> FoldSplit:
    """Every subject but a seeded ``validation_fraction`` of them (at least one), which are both the
    validation and the nominal test subjects of the final model."""
    unique = sorted(set(subjects))
    if validation_fraction <= 0:
        raise UsageError("the final model needs validation subjects for its thresholds: set train.validation_fraction > 0, or add --no-final")
    n_validation = min(max(round(len(unique) * validation_fraction), 1), len(unique) - 1)
    validation = tuple(sorted(random.Random(seed * 1000 + 999).sample(unique, n_validation)))
    train = tuple(s for s in unique if s not in validation)
    return FoldSplit(fold=fold, train=train, validation=validation, test=validation)


# ------------------------------------------------------------------------------------ results
def pooled_report(decisions: np.ndarray, labels: np.ndarray, au_names: Sequence[str], title: str) -> MetricReport:
    """F1 per AU from binary ``decisions (n, K)`` against ``labels (n, K)``, counts summed over all rows.

    Decisions pooled from models with different thresholds have no common score: AUC is NaN.
    """
    counts = confusion_counts(decisions.astype(np.float64), labels, 0.5)
    valid = (labels == 0) | (labels == 1)
    n_valid, n_positive = valid.sum(0), (labels == 1).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_valid > 0, n_positive / np.maximum(n_valid, 1), np.nan)
    nan = np.full(len(au_names), np.nan)
    return MetricReport(list(au_names), counts.f1, nan, rate, nan.copy(), n_valid, n_positive, title)


@dataclass
class MicroFold:
    """One fold: its subjects and test reports before (checkpoint) and after fine-tuning."""

    fold: int
    split: FoldSplit
    n_test: int
    before: MetricReport
    before_refit: MetricReport
    after: MetricReport
    best_epoch: int
    checkpoint: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "subjects": self.split.subjects(),
            "test_faces": self.n_test,
            "best_epoch": self.best_epoch,
            "checkpoint": str(self.checkpoint),
            "before": self.before.to_dict(),
            "before_refit": self.before_refit.to_dict(),
            "after": self.after.to_dict(),
        }


@dataclass
class MicroResult:
    """What :func:`finetune_micro` did: the AU pairs, per-fold and pooled reports, the written model."""

    folder: Path
    source: Path
    store: Path
    label_set: str
    au_pairs: dict[str, str]
    micro: MicroConfig
    recipe: Recipe
    folds: list[MicroFold]
    pooled: dict[str, MetricReport]
    n_faces: int
    n_windows: int
    notes: list[str] = field(default_factory=list)
    finetuned: Path | None = None
    final_subjects: dict[str, list[str]] | None = None

    @property
    def au_names(self) -> list[str]:
        return list(self.au_pairs)

    def summary(self) -> dict[str, Any]:
        pooled = {stage: report.to_dict() for stage, report in self.pooled.items()}
        before, after = self.pooled["before_refit"].mean_f1, self.pooled["after"].mean_f1
        return {
            "run": str(self.folder),
            "checkpoint": str(self.source),
            "store": str(self.store),
            "label_set": self.label_set,
            "au_pairs": dict(self.au_pairs),
            "protocol": self.micro.protocol,
            "tune": self.micro.tune,
            "n_folds": len(self.folds),
            "faces": self.n_faces,
            "event_windows": self.n_windows,
            "pooled": pooled,
            "mean_f1": {stage: report.mean_f1 for stage, report in self.pooled.items()},
            "mean_f1_gain": after - before if np.isfinite(after) and np.isfinite(before) else None,
            "finetuned": str(self.finetuned) if self.finetuned else None,
            "final_subjects": self.final_subjects,
            "notes": list(self.notes),
            "folds": [f.to_dict() for f in self.folds],
        }

    def table(self):
        """Pooled per-AU F1 (%) before and after fine-tuning, with the gain."""
        from rich.table import Table

        protocol = "LOSO" if self.micro.protocol == "loso" else "k-fold"
        tuned = "experts and heads" if self.micro.tune == "experts" else "heads only"
        table = Table(
            title=f"AU F1 (%), test predictions of {len(self.folds)} {protocol} folds pooled",
            caption=f"before: the checkpoint at its thresholds / at thresholds fitted on validation subjects; "
            f"after: fine-tuned ({tuned}) on {self.label_set}",
        )
        for column in ("AU", "positives", "before", "before (val thr)", "after", "gain"):
            table.add_column(column, justify="left" if column == "AU" else "right")
        before, refit, after = self.pooled["before"], self.pooled["before_refit"], self.pooled["after"]
        for i, name in enumerate(self.au_names):
            label = name if self.au_pairs[name] == name else f"{name} ({self.au_pairs[name]})"
            table.add_row(label, f"{int(after.n_positive[i]):,}", _pct(before.f1[i]), _pct(refit.f1[i]), _pct(after.f1[i]),
                          _gain(after.f1[i] - refit.f1[i]))
        table.add_section()
        table.add_row("mean", "", _pct(before.mean_f1), _pct(refit.mean_f1), _pct(after.mean_f1),
                      _gain(after.mean_f1 - refit.mean_f1), style="bold")
        return table

    def folds_table(self):
        """Mean F1 (%) of each fold's test subjects before and after."""
        from rich.table import Table

        table = Table(title="Mean F1 (%) per fold", caption="AUs never present nor predicted in a fold's test faces have no F1 there")
        for column in ("fold", "test", "faces", "before", "before (val thr)", "after", "epoch"):
            table.add_column(column, justify="left" if column in ("fold", "test") else "right")
        for fold in self.folds:
            table.add_row(str(fold.fold), ", ".join(fold.split.test), f"{fold.n_test:,}", _pct(fold.before.mean_f1),
                          _pct(fold.before_refit.mean_f1), _pct(fold.after.mean_f1), str(fold.best_epoch))
        return table


def _pct(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _gain(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:+.1f}"


# ------------------------------------------------------------------------------------ the run
def finetune_micro(
    store: str | Path,
    checkpoint: str | Path,
    recipe_data: Mapping[str, Any],
    *,
    out: str | Path,
    resume: bool = False,
    backbone_weights: str | None = None,
    show_progress: bool = True,
) -> MicroResult:
    """Fine-tune ``checkpoint`` on ``store``'s micro-expression labels (see the module docstring).

    Args:
        store: a corpus store with a CASME II-style label set.
        checkpoint: an AUFormer checkpoint (``NAME.safetensors`` / ``NAME.json`` / registry name).
        recipe_data: the finetune-micro recipe as a dict (recipe file merged with overrides):
            ``loss``, ``data``, ``optim``, ``train`` sections and the ``micro`` section
            (:class:`MicroConfig`); :data:`MICRO_DEFAULTS` fill the rest. No ``model`` section.
        out: the run folder (see the module docstring).
        resume: continue the run in ``out`` (finished folds are kept).
        backbone_weights: the backbone weight file, when the one the checkpoint records has moved.
        show_progress: progress bars and per-epoch lines on stderr.
    """
    import yaml

    from aucli import __version__
    from aucli.console import err_console
    from aucli.engine.data import AugmentedFaces, FaceTransform
    from aucli.engine.distributed import setup
    from aucli.engine.evaluate import predict_logits, sigmoid
    from aucli.engine.micro_data import MicroFaces, micro_labels, resolve_micro_label_set, training_repeats
    from aucli.engine.runs import atomic_write_json, atomic_write_text, json_safe, load_tensors, read_json, save_tensors
    from aucli.engine.corpus import Corpus
    from aucli.engine.fold import train_fold
    from aucli.engine.results import FoldResult
    from aucli.engine.trainer import prepare_run_folder
    from aucli.fileio import file_sha256
    from aucli.model.checkpoint import (
        checkpoint_model_config, checkpoint_paths, load_checkpoint, load_model_checkpoint, read_checkpoint_metadata, save_checkpoint,
    )
    from aucli.model.registry import resolve_checkpoint
    from aucli.store import CorpusStore

    recipe, micro = split_micro_recipe(recipe_data)
    out, store = Path(out), Path(store)
    meta_path = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_metadata(meta_path)
    if meta["method"] != "auformer":
        raise ModelError(f"{meta_path} is a {meta['method']!r} checkpoint; finetune-micro adapts AUFormer checkpoints (their MoKE experts and heads)")
    ctx = setup(recipe.train.device)
    try:
        if ctx.distributed:
            raise UsageError("finetune-micro runs in one process (micro-expression corpora are small); run it without torchrun")
        device = ctx.device
        source_model, meta = load_checkpoint(meta_path, device=device, backbone_weights=backbone_weights)
        source_aus = list(meta["au_names"])
        source_thresholds = np.asarray(meta["thresholds"], dtype=np.float64)

        # --- the micro data and the AUs to fine-tune
        with CorpusStore.open(store) as opened:
            label_set = resolve_micro_label_set(opened, recipe.data.labels, outside=micro.outside)
            label_aus = opened.read_labels(label_set).au_names
            pairs, not_in_checkpoint = map_micro_aus(source_aus, label_aus, label_set=label_set, au_map=recipe.data.au_map,
                                                     requested=micro.aus)
            data = micro_labels(opened, label_set, list(pairs.values()), outside=micro.outside, apex_fraction=micro.apex_fraction)
            if len(data) == 0:
                raise StoreError(f"label set {label_set!r} of {store} labels no subject face for {', '.join(pairs.values())}")
            present = (data.labels == 1).any(axis=0)
            without_positive = [a for a, p in zip(pairs, present) if not p]
            if without_positive and micro.aus:
                raise StoreError(f"label set {label_set!r} has no face on which {', '.join(without_positive)} is present; drop it from --aus")
            if not present.any():
                raise StoreError(f"label set {label_set!r} has no face on which any of {', '.join(pairs)} is present")
            if without_positive:
                pairs = {a: b for a, b in pairs.items() if a not in without_positive}
                data = micro_labels(opened, label_set, list(pairs.values()), outside=micro.outside, apex_fraction=micro.apex_fraction)
        notes = []
        if not_in_checkpoint:
            notes.append(f"not fine-tuned, the checkpoint has no expert for them: {', '.join(not_in_checkpoint)}")
        if without_positive:
            notes.append(f"not fine-tuned, never present in label set {label_set!r}: {', '.join(without_positive)}")
        keep = list(pairs)
        model_cfg = transfer_config(checkpoint_model_config(meta), keep)
        recipe = dataclasses.replace(recipe, model=model_cfg, data=dataclasses.replace(recipe.data, labels=label_set))
        state = transfer_state(source_model.state_dict(), source_aus, keep, head_hidden=model_cfg.head_hidden)
        backbone_source = "random" if meta.get("backbone_in_checkpoint") else str(source_model.backbone_source)

        faces = MicroFaces(store, data, label_set=label_set, label_aus=list(pairs.values()))
        repeats = training_repeats(data, event_repeat=micro.event_repeat, neutral_fraction=micro.neutral_fraction,
                                   seed=recipe.train.seed)
        splits = micro_fold_splits(data.subjects.tolist(), protocol=micro.protocol, n_folds=micro.n_folds,
                                   validation_fraction=recipe.train.validation_fraction, seed=recipe.train.seed)
        final = (final_split(data.subjects.tolist(), fold=len(splits) + 1, validation_fraction=recipe.train.validation_fraction,
                             seed=recipe.train.seed) if micro.final else None)
        corpus = Corpus(store, label_set, dict(pairs), faces, np.asarray(data.subjects, dtype=object),
                        tuple(s.test for s in splits), splits={s.fold: s for s in splits + ([final] if final else [])},
                        train_repeats=repeats)

        # --- the run folder
        weights_path = checkpoint_paths(meta_path)[0]
        settings = {
            "micro": micro.to_dict(), "checkpoint": str(meta_path.resolve()), "checkpoint_sha256": file_sha256(weights_path),
            "store": str(store.resolve()), "label_set": label_set, "au_pairs": pairs,
        }
        resuming = prepare_run_folder(out, recipe, resume)
        if resuming:
            saved = read_json(out / "micro.json")
            changed = [k for k in settings if k not in ("checkpoint", "store") and saved.get(k) != json_safe(settings[k])]
            if changed:
                raise UsageError(f"cannot resume {out} with other finetune-micro settings ({', '.join(changed)}); see {out / 'micro.json'}")
        else:
            atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        atomic_write_json(out / "micro.json", {
            **settings, "source_au_names": source_aus, "not_in_checkpoint": not_in_checkpoint, "without_positive": without_positive,
            "folds": [{"fold": s.fold, "train": s.train, "validation": s.validation, "test": s.test} for s in splits],
            "final": {"train": final.train, "validation": final.validation} if final else None,
            "faces": len(data), "event_faces": int(data.event.sum()), "event_windows": data.n_windows,
            "neutral_faces": int((~data.coded).sum()), "training_faces_per_epoch": int(repeats.sum()),
            "device": str(device), "aucli": __version__, "torch": torch.__version__,
        })

        # --- before: the checkpoint on every face, once
        img_size = int(source_model.data_config["input_size"][-1])
        mean, std = source_model.data_config["mean"], source_model.data_config["std"]
        zero_shot_file = out / "zero_shot.safetensors"
        if resuming and zero_shot_file.exists():
            tensors = load_tensors(zero_shot_file)
            zero_rows, zero_logits = tensors["rows"].numpy(), tensors["logits"].numpy()
        else:
            if show_progress:
                err_console.print(f"Scoring the checkpoint on {len(data):,} faces (before fine-tuning)", highlight=False)
            eval_faces = AugmentedFaces(faces, FaceTransform.from_config(recipe.data, img_size, train=False))
            zero_rows, zero_logits = predict_logits(
                source_model, eval_faces, device=device, mean=mean, std=std, precision=recipe.train.precision,
                batch_size=recipe.data.eval_batch_size or 2 * recipe.data.batch_size, num_workers=recipe.data.num_workers,
            )
            save_tensors(zero_shot_file, {"rows": torch.from_numpy(zero_rows), "logits": torch.from_numpy(zero_logits)})
        if not np.array_equal(zero_rows, data.rows):
            raise StoreError(f"{zero_shot_file} scores other faces than the store now holds; start a new run (--out)")
        source_index = [source_aus.index(a) for a in keep]
        zero_probs = sigmoid(zero_logits[:, source_index])
        checkpoint_thresholds = source_thresholds[source_index]
        del source_model
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.cuda.empty_cache()

        # --- the folds
        init = _initializer(state, micro.tune)
        labels = data.labels
        folds: list[MicroFold] = []
        stages: dict[str, list[np.ndarray]] = {"before": [], "before_refit": [], "after": []}
        pooled_labels: list[np.ndarray] = []
        for split in splits:
            folder = out / f"fold{split.fold}"
            if resume and (folder / "result.json").exists():
                result = FoldResult.from_dict(read_json(folder / "result.json"), folder)
            else:
                if show_progress:
                    err_console.print(f"[bold]Fold {split.fold}/{len(splits)}[/bold]: test {', '.join(split.test)}", highlight=False)
                result = train_fold(corpus, split.fold, recipe, folder=folder, ctx=ctx, resume=resume, weights=backbone_source,
                                    show_progress=show_progress, init_model=init)
            test = np.flatnonzero(np.isin(data.subjects, list(split.test)))
            validation = np.flatnonzero(np.isin(data.subjects, list(split.validation)))
            predictions = load_tensors(folder / "best_predictions.safetensors")
            after_probs = sigmoid(predictions["test_logits"].numpy())
            # the trainer scores the fold's test faces in dataset order, as ``test`` lists them
            if not np.array_equal(predictions["test_rows"].numpy(), data.rows[test]):
                raise StoreError(f"{folder / 'best_predictions.safetensors'} scores other faces than fold {split.fold}'s; start a new run (--out)")
            truth = labels[test]
            if recipe.train.thresholds == "fitted" and validation.size:
                refit = fit_thresholds(zero_probs[validation], labels[validation])
            else:
                refit = np.full(len(keep), 0.5)
            name = f"fold {split.fold}"
            before = evaluate(zero_probs[test], labels[test], au_names=keep, thresholds=checkpoint_thresholds, title=f"{name}: before")
            before_refit = evaluate(zero_probs[test], labels[test], au_names=keep, thresholds=refit, title=f"{name}: before (val thr)")
            after = evaluate(after_probs, truth, au_names=keep, thresholds=result.thresholds, title=f"{name}: after")
            folds.append(MicroFold(split.fold, split, int(test.size), before, before_refit, after, result.best_epoch, result.checkpoint))
            stages["before"].append(zero_probs[test] >= checkpoint_thresholds)
            stages["before_refit"].append(zero_probs[test] >= refit)
            stages["after"].append(after_probs >= result.thresholds)
            pooled_labels.append(truth)
        titles = {"before": "pooled: before (checkpoint thresholds)", "before_refit": "pooled: before (validation thresholds)",
                  "after": "pooled: after fine-tuning"}
        pooled = {stage: pooled_report(np.concatenate(parts), np.concatenate(pooled_labels), keep, titles[stage])
                  for stage, parts in stages.items()}

        # --- the model written for use
        finetuned = None
        final_subjects = None
        if final is not None:
            folder = out / "final"
            if resume and (folder / "result.json").exists():
                final_result = FoldResult.from_dict(read_json(folder / "result.json"), folder)
            else:
                if show_progress:
                    err_console.print(f"[bold]Final model[/bold]: {len(final.train)} training subjects; thresholds and epoch from "
                                      f"{', '.join(final.validation)}", highlight=False)
                final_result = train_fold(corpus, final.fold, recipe, folder=folder, ctx=ctx, resume=resume, weights=backbone_source,
                                          show_progress=show_progress, init_model=init)
            loaded = load_model_checkpoint(final_result.checkpoint, device="cpu", backbone_weights=backbone_weights)
            final_subjects = {"train": list(final.train), "validation": list(final.validation)}
            summary_means = {stage: report.mean_f1 for stage, report in pooled.items()}
            training = {
                "epoch": final_result.best_epoch, "step": final_result.best_step, "store": str(store), "label_set": label_set,
                "au_columns": dict(pairs), "subjects": final_subjects,
                "validation_mean_f1": final_result.validation.mean_f1 if final_result.validation else None,
                "finetune_micro": {
                    "source_checkpoint": str(meta_path.resolve()), "source_sha256": settings["checkpoint_sha256"],
                    "source_au_names": source_aus, "au_pairs": dict(pairs), "micro": micro.to_dict(), "run": str(out),
                    "cross_validation": {"protocol": micro.protocol, "folds": len(splits), "pooled_mean_f1": summary_means},
                },
            }
            finetuned, _ = save_checkpoint(
                out / "finetuned", loaded.model, recipe=loaded.recipe, thresholds=loaded.thresholds, training=json_safe(training),
            )

        result = MicroResult(
            folder=out, source=meta_path, store=store, label_set=label_set, au_pairs=dict(pairs), micro=micro, recipe=recipe,
            folds=folds, pooled=pooled, n_faces=len(data), n_windows=data.n_windows, notes=notes, finetuned=finetuned,
            final_subjects=final_subjects,
        )
        _write_metrics(result)
        return result
    finally:
        ctx.close()


def _write_metrics(result: MicroResult) -> None:
    """``metrics.jsonl`` (one line per fold and stage, then the pooled ones), ``metrics.csv``, ``summary.json``."""
    import json

    from aucli.engine.runs import atomic_write_json, atomic_write_text, json_safe

    records = []
    for fold in result.folds:
        for stage in ("before", "before_refit", "after"):
            report: MetricReport = getattr(fold, stage)
            records.append({"scope": "fold", "fold": fold.fold, "test": list(fold.split.test), "stage": stage, "faces": fold.n_test,
                            "mean_f1": report.mean_f1, **report.to_dict()})
    for stage, report in result.pooled.items():
        records.append({"scope": "pooled", "fold": None, "test": None, "stage": stage, "faces": int(sum(f.n_test for f in result.folds)),
                        "mean_f1": report.mean_f1, **report.to_dict()})
    atomic_write_text(result.folder / "metrics.jsonl", "".join(json.dumps(json_safe(r)) + "\n" for r in records))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scope", "fold", "test", "stage", "faces", "mean_f1", *[f"f1_{au}" for au in result.au_names]])
    for record in records:
        f1 = record["per_au"]["f1"]
        values = [record["mean_f1"], *f1]
        writer.writerow([record["scope"], "" if record["fold"] is None else record["fold"], " ".join(record["test"] or []),
                         record["stage"], record["faces"], *["" if v is None or not np.isfinite(v) else f"{v:.6f}" for v in values]])
    atomic_write_text(result.folder / "metrics.csv", buffer.getvalue())
    atomic_write_json(result.folder / "summary.json", result.summary())
