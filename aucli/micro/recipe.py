"""A finetune-micro recipe: the training sections with finetune defaults, and the ``micro:`` section.

Precedence: :data:`MICRO_DEFAULTS` < the recipe file < ``-o`` overrides < the command's flags
(:func:`aucli.config.recipe_data` merges the last three; :func:`split_micro_recipe` adds the
defaults underneath). The model comes from the checkpoint, so a recipe has no ``model:`` section,
and finetune-micro decides the method and the folds itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aucli.aus import parse_au_list
from aucli.config import Recipe, Section, build_section, merge_dicts, option
from aucli.errors import UsageError

__all__ = ["MICRO_DEFAULTS", "MicroConfig", "split_micro_recipe"]


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


def split_micro_recipe(data: Mapping[str, Any]) -> tuple[Recipe, MicroConfig]:
    """A finetune-micro recipe dict (defaults not yet applied) -> the training recipe and the micro section.

    :data:`MICRO_DEFAULTS` fill what ``data`` does not set. The recipe's model section is a
    placeholder until the checkpoint's replaces it (:func:`aucli.micro.transfer.transfer_config`).
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
