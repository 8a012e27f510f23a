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
:class:`~aucli.engine.corpus.Corpus` (:mod:`aucli.micro.data`), the starting weights
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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from aucli import __version__
from aucli.config import Recipe
from aucli.console import err_console
from aucli.engine.corpus import Corpus
from aucli.engine.data import AugmentedFaces, FaceTransform
from aucli.engine.distributed import DistContext, setup
from aucli.engine.evaluate import predict_logits, sigmoid
from aucli.engine.fold import train_fold
from aucli.engine.results import FoldResult
from aucli.engine.runs import read_json
from aucli.engine.trainer import prepare_run_folder
from aucli.errors import ModelError, StoreError, UsageError
from aucli.fileio import atomic_write_json, atomic_write_text, file_sha256, json_safe, load_tensors, save_tensors
from aucli.metrics import evaluate, fit_thresholds
from aucli.micro.data import MicroFaces, MicroLabels, final_split, micro_fold_splits, micro_labels, resolve_micro_label_set, training_repeats
from aucli.micro.recipe import MicroConfig, split_micro_recipe
from aucli.micro.report import MicroFold, MicroResult, pooled_report, write_metrics
from aucli.micro.transfer import initializer, map_micro_aus, transfer_config, transfer_state
from aucli.model.checkpoint import checkpoint_model_config, checkpoint_paths, load_checkpoint, load_model_checkpoint, read_checkpoint_metadata, save_checkpoint
from aucli.model.registry import resolve_checkpoint
from aucli.protocols import FoldSplit
from aucli.store import CorpusStore

__all__ = ["finetune_micro"]

_STAGE_TITLES = {"before": "pooled: before (checkpoint thresholds)", "before_refit": "pooled: before (validation thresholds)",
                 "after": "pooled: after fine-tuning"}  # fmt: skip


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
            (:class:`aucli.micro.recipe.MicroConfig`); :data:`aucli.micro.recipe.MICRO_DEFAULTS`
            fill the rest. No ``model`` section.
        out: the run folder (see the module docstring).
        resume: continue the run in ``out`` (finished folds are kept).
        backbone_weights: the backbone weight file, when the one the checkpoint records has moved.
        show_progress: progress bars and per-epoch lines on stderr.
    """
    recipe, micro = split_micro_recipe(recipe_data)
    meta_path = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_metadata(meta_path)
    if meta["method"] != "auformer":
        raise ModelError(f"{meta_path} is a {meta['method']!r} checkpoint; finetune-micro adapts AUFormer checkpoints (their MoKE experts and heads)")
    ctx = setup(recipe.train.device)
    try:
        if ctx.distributed:
            raise UsageError("finetune-micro runs in one process (micro-expression corpora are small); run it without torchrun")
        run = _MicroRun(Path(store), Path(out), recipe, micro, ctx, resume=resume, show_progress=show_progress)
        run.load_source(meta_path, backbone_weights)
        run.choose_aus()
        run.plan()
        run.prepare_folder()
        run.score_zero_shot()
        folds, pooled = run.cross_validate()
        finetuned, final_subjects = run.train_final(run.final, pooled, backbone_weights) if run.final is not None else (None, None)
        result = MicroResult(
            folder=run.out, source=meta_path, store=run.store, label_set=run.label_set, au_pairs=dict(run.pairs), micro=micro,
            recipe=run.recipe, folds=folds, pooled=pooled, n_faces=len(run.data), n_windows=run.data.n_windows, notes=run.notes,
            finetuned=finetuned, final_subjects=final_subjects,
        )  # fmt: skip
        write_metrics(result)
        return result
    finally:
        ctx.close()


@dataclass
class _MicroRun:
    """One finetune-micro run, stage by stage; what each stage finds, the next ones read."""

    store: Path
    out: Path
    recipe: Recipe
    micro: MicroConfig
    ctx: DistContext
    resume: bool
    show_progress: bool

    def say(self, text: str) -> None:
        if self.show_progress:
            err_console.print(text, highlight=False)

    def load_source(self, meta_path: Path, backbone_weights: str | None) -> None:
        """The checkpoint to adapt, on this run's device."""
        self.meta_path = meta_path
        self.source_model, self.meta = load_checkpoint(meta_path, device=self.ctx.device, backbone_weights=backbone_weights)
        self.source_aus = list(self.meta["au_names"])
        self.source_thresholds = np.asarray(self.meta["thresholds"], dtype=np.float64)

    def choose_aus(self) -> None:
        """The micro label set, and the AUs to fine-tune: shared with the checkpoint and present at least once."""
        recipe, micro = self.recipe, self.micro
        with CorpusStore.open(self.store) as opened:
            self.label_set = resolve_micro_label_set(opened, recipe.data.labels, outside=micro.outside)
            label_aus = opened.read_labels(self.label_set).au_names
            pairs, self.not_in_checkpoint = map_micro_aus(self.source_aus, label_aus, label_set=self.label_set,
                                                          au_map=recipe.data.au_map, requested=micro.aus)  # fmt: skip
            data = self._labels(opened, pairs)
            present = (data.labels == 1).any(axis=0)
            self.without_positive = [a for a, p in zip(pairs, present) if not p]
            if self.without_positive and micro.aus:
                raise StoreError(f"label set {self.label_set!r} has no face on which {', '.join(self.without_positive)} is present; drop it from --aus")
            if not present.any():
                raise StoreError(f"label set {self.label_set!r} has no face on which any of {', '.join(pairs)} is present")
            if self.without_positive:
                pairs = {a: b for a, b in pairs.items() if a not in self.without_positive}
                data = self._labels(opened, pairs)
        self.pairs, self.data, self.keep = pairs, data, list(pairs)
        self.notes = []
        if self.not_in_checkpoint:
            self.notes.append(f"not fine-tuned, the checkpoint has no expert for them: {', '.join(self.not_in_checkpoint)}")
        if self.without_positive:
            self.notes.append(f"not fine-tuned, never present in label set {self.label_set!r}: {', '.join(self.without_positive)}")

    def _labels(self, opened: CorpusStore, pairs: dict[str, str]) -> MicroLabels:
        micro = self.micro
        data = micro_labels(opened, self.label_set, list(pairs.values()), outside=micro.outside, apex_fraction=micro.apex_fraction)
        if len(data) == 0:
            raise StoreError(f"label set {self.label_set!r} of {self.store} labels no subject face for {', '.join(pairs.values())}")
        return data

    def plan(self) -> None:
        """The fine-tuned model's recipe and starting weights, the training data and the folds."""
        model_cfg = transfer_config(checkpoint_model_config(self.meta), self.keep)
        recipe = self.recipe = dataclasses.replace(self.recipe, model=model_cfg, data=dataclasses.replace(self.recipe.data, labels=self.label_set))
        state = transfer_state(self.source_model.state_dict(), self.source_aus, self.keep, head_hidden=model_cfg.head_hidden)
        self.init = initializer(state, self.micro.tune)
        self.backbone_source = "random" if self.meta.get("backbone_in_checkpoint") else str(self.source_model.backbone_source)
        data, micro, seed, fraction = self.data, self.micro, recipe.train.seed, recipe.train.validation_fraction
        self.faces = MicroFaces(self.store, data, label_set=self.label_set, label_aus=list(self.pairs.values()))
        self.repeats = training_repeats(data, event_repeat=micro.event_repeat, neutral_fraction=micro.neutral_fraction, seed=seed)
        subjects = data.subjects.tolist()
        self.splits = micro_fold_splits(subjects, protocol=micro.protocol, n_folds=micro.n_folds, validation_fraction=fraction, seed=seed)
        self.final: FoldSplit | None = (
            final_split(subjects, fold=len(self.splits) + 1, validation_fraction=fraction, seed=seed) if micro.final else None
        )
        every = {s.fold: s for s in self.splits + ([self.final] if self.final else [])}
        self.corpus = Corpus(self.store, self.label_set, dict(self.pairs), self.faces, np.asarray(data.subjects, dtype=object),
                             tuple(s.test for s in self.splits), splits=every, train_repeats=self.repeats)  # fmt: skip

    def prepare_folder(self) -> None:
        """Create or check the run folder; ``micro.json`` records the settings, the AUs and the folds."""
        out, data = self.out, self.data
        self.settings = {
            "micro": self.micro.to_dict(), "checkpoint": str(self.meta_path.resolve()),
            "checkpoint_sha256": file_sha256(checkpoint_paths(self.meta_path)[0]), "store": str(self.store.resolve()),
            "label_set": self.label_set, "au_pairs": self.pairs,
        }  # fmt: skip
        self.resuming = prepare_run_folder(out, self.recipe, self.resume)
        if self.resuming:
            saved = read_json(out / "micro.json")
            changed = [k for k in self.settings if k not in ("checkpoint", "store") and saved.get(k) != json_safe(self.settings[k])]
            if changed:
                raise UsageError(f"cannot resume {out} with other finetune-micro settings ({', '.join(changed)}); see {out / 'micro.json'}")
        else:
            atomic_write_text(out / "recipe.yaml", yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        final = self.final
        atomic_write_json(out / "micro.json", {
            **self.settings, "source_au_names": self.source_aus, "not_in_checkpoint": self.not_in_checkpoint,
            "without_positive": self.without_positive,
            "folds": [{"fold": s.fold, "train": s.train, "validation": s.validation, "test": s.test} for s in self.splits],
            "final": {"train": final.train, "validation": final.validation} if final else None,
            "faces": len(data), "event_faces": int(data.event.sum()), "event_windows": data.n_windows,
            "neutral_faces": int((~data.coded).sum()), "training_faces_per_epoch": int(self.repeats.sum()),
            "device": str(self.ctx.device), "aucli": __version__, "torch": torch.__version__,
        })  # fmt: skip

    def score_zero_shot(self) -> None:
        """"Before": the checkpoint's probabilities of the kept AUs on every face (kept in the run folder)."""
        model, recipe, device = self.source_model, self.recipe, self.ctx.device
        zero_shot_file = self.out / "zero_shot.safetensors"
        if self.resuming and zero_shot_file.exists():
            tensors = load_tensors(zero_shot_file)
            rows, logits = tensors["rows"].numpy(), tensors["logits"].numpy()
        else:
            self.say(f"Scoring the checkpoint on {len(self.data):,} faces (before fine-tuning)")
            img_size = int(model.data_config["input_size"][-1])
            eval_faces = AugmentedFaces(self.faces, FaceTransform.from_config(recipe.data, img_size, train=False))
            rows, logits = predict_logits(
                model, eval_faces, device=device, mean=model.data_config["mean"], std=model.data_config["std"],
                precision=recipe.train.precision, batch_size=recipe.data.eval_batch_size or 2 * recipe.data.batch_size,
                num_workers=recipe.data.num_workers,
            )  # fmt: skip
            save_tensors(zero_shot_file, {"rows": torch.from_numpy(rows), "logits": torch.from_numpy(logits)})
        if not np.array_equal(rows, self.data.rows):
            raise StoreError(f"{zero_shot_file} scores other faces than the store now holds; start a new run (--out)")
        source_index = [self.source_aus.index(a) for a in self.keep]
        self.zero_probs = sigmoid(logits[:, source_index])
        self.checkpoint_thresholds = self.source_thresholds[source_index]
        del self.source_model
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.cuda.empty_cache()

    def _train(self, split: FoldSplit, folder: Path, announce: str) -> FoldResult:
        """A fold's model (``announce`` said first), or its result when a resumed run already finished it."""
        if self.resume and (folder / "result.json").exists():
            return FoldResult.from_dict(read_json(folder / "result.json"), folder)
        self.say(announce)
        return train_fold(self.corpus, split.fold, self.recipe, folder=folder, ctx=self.ctx, resume=self.resume, weights=self.backbone_source,
                          show_progress=self.show_progress, init_model=self.init)  # fmt: skip

    def cross_validate(self) -> tuple[list[MicroFold], dict[str, Any]]:
        """Every fold fine-tuned and scored before and after; the pooled reports."""
        folds: list[MicroFold] = []
        stages: dict[str, list[np.ndarray]] = {"before": [], "before_refit": [], "after": []}
        pooled_labels: list[np.ndarray] = []
        for split in self.splits:
            result = self._train(split, self.out / f"fold{split.fold}", f"[bold]Fold {split.fold}/{len(self.splits)}[/bold]: test {', '.join(split.test)}")
            fold, decisions, truth = self._score_fold(split, result)
            folds.append(fold)
            for stage, made in decisions.items():
                stages[stage].append(made)
            pooled_labels.append(truth)
        labels = np.concatenate(pooled_labels)
        pooled = {stage: pooled_report(np.concatenate(parts), labels, self.keep, _STAGE_TITLES[stage]) for stage, parts in stages.items()}
        return folds, pooled

    def _score_fold(self, split: FoldSplit, result: FoldResult) -> tuple[MicroFold, dict[str, np.ndarray], np.ndarray]:
        """A fold's test reports (before, before at validation thresholds, after), its decisions and labels."""
        data, labels, keep, folder = self.data, self.data.labels, self.keep, result.folder
        test = np.flatnonzero(np.isin(data.subjects, list(split.test)))
        validation = np.flatnonzero(np.isin(data.subjects, list(split.validation)))
        predictions = load_tensors(folder / "best_predictions.safetensors")
        after_probs = sigmoid(predictions["test_logits"].numpy())
        # the trainer scores the fold's test faces in dataset order, as ``test`` lists them
        if not np.array_equal(predictions["test_rows"].numpy(), data.rows[test]):
            raise StoreError(f"{folder / 'best_predictions.safetensors'} scores other faces than fold {split.fold}'s; start a new run (--out)")
        if self.recipe.train.thresholds == "fitted" and validation.size:
            refit = fit_thresholds(self.zero_probs[validation], labels[validation])
        else:
            refit = np.full(len(keep), 0.5)
        name, zero, truth = f"fold {split.fold}", self.zero_probs[test], labels[test]
        before = evaluate(zero, truth, au_names=keep, thresholds=self.checkpoint_thresholds, title=f"{name}: before")
        before_refit = evaluate(zero, truth, au_names=keep, thresholds=refit, title=f"{name}: before (val thr)")
        after = evaluate(after_probs, truth, au_names=keep, thresholds=result.thresholds, title=f"{name}: after")
        fold = MicroFold(split.fold, split, int(test.size), before, before_refit, after, result.best_epoch, result.checkpoint)
        decisions = {"before": zero >= self.checkpoint_thresholds, "before_refit": zero >= refit, "after": after_probs >= result.thresholds}
        return fold, decisions, truth

    def train_final(self, final: FoldSplit, pooled: dict[str, Any], backbone_weights: str | None) -> tuple[Path, dict[str, list[str]]]:
        """The model written for use, trained on the subjects of ``final`` (its validation subjects fit
        the thresholds and pick the epoch): ``OUT/finetuned``."""
        result = self._train(final, self.out / "final", f"[bold]Final model[/bold]: {len(final.train)} training subjects; "
                             f"thresholds and epoch from {', '.join(final.validation)}")  # fmt: skip
        loaded = load_model_checkpoint(result.checkpoint, device="cpu", backbone_weights=backbone_weights)
        subjects = {"train": list(final.train), "validation": list(final.validation)}
        micro = self.micro
        training = {
            "epoch": result.best_epoch, "step": result.best_step, "store": str(self.store), "label_set": self.label_set,
            "au_columns": dict(self.pairs), "subjects": subjects,
            "validation_mean_f1": result.validation.mean_f1 if result.validation else None,
            "finetune_micro": {
                "source_checkpoint": str(self.meta_path.resolve()), "source_sha256": self.settings["checkpoint_sha256"],
                "source_au_names": self.source_aus, "au_pairs": dict(self.pairs), "micro": micro.to_dict(), "run": str(self.out),
                "cross_validation": {"protocol": micro.protocol, "folds": len(self.splits),
                                     "pooled_mean_f1": {stage: report.mean_f1 for stage, report in pooled.items()}},
            },
        }  # fmt: skip
        finetuned, _ = save_checkpoint(self.out / "finetuned", loaded.model, recipe=loaded.recipe, thresholds=loaded.thresholds,
                                       training=json_safe(training))  # fmt: skip
        return finetuned, subjects
