"""Typed configuration: dataclass sections, YAML recipes and command-line overrides.

A recipe is a YAML file with one mapping per section (``model:``, ``loss:``, ...). Every section is a
dataclass whose fields carry their default, a help text and, where it matters, a valid range. The
resolved configuration is built in one line of precedence, by :func:`recipe_data` for every
command (and :func:`load_recipe` on top of it)::

    defaults (dataclass fields) < recipe file < --override key.sub=value < dedicated flags

Unknown keys are refused with close-match suggestions, bad values with the valid range or choices.
Adding a section is two steps: write a dataclass of fields made with :func:`option`, and add it as a
field of :class:`Recipe`; loading, overrides, validation and ``to_dict`` then work for it unchanged.

Example::

    recipe = load_recipe("bp4d", ["model.moke.bottleneck=16", "loss.margin=0.1"])  # a packaged recipe, or a path
    recipe.model.moke.bottleneck  # 16
"""

from __future__ import annotations

import dataclasses
import re
import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aucli.aus import BP4D_AUS, au_name, parse_au_list
from aucli.errors import AucliError, UsageError

__all__ = [
    "HeadNorm",
    "HeadPool",
    "ExpertSupervision",
    "option",
    "Section",
    "MoKEConfig",
    "ModelConfig",
    "LossConfig",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "BaselineConfig",
    "parse_au_map",
    "recipe_data",
    "Recipe",
    "load_recipe",
    "parse_overrides",
    "merge_dicts",
    "build_section",
    "config_keys",
]

HeadPool = Literal["cls", "mean", "both"]
HeadNorm = Literal["none", "batch"]
ExpertSupervision = Literal["last", "all", "none"]

#: Keyword overrides that would put dropout or drop-path into the frozen backbone.
_STOCHASTIC_BACKBONE_KEYS = ("drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate", "patch_drop_rate")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """A dataclass field with a help text, an optional valid range and an optional parser.

    ``parse`` turns the raw YAML/override value into the field's type before validation (for
    example an AU list spec ``"bp4d"`` into canonical names); it may raise :class:`AucliError`.
    """
    metadata = {"help": help, "min": min, "max": max, "parse": parse}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _parse_au_names(value: Any) -> list[str]:
    return parse_au_list(value if isinstance(value, str) else [str(v) for v in value])


def _parse_dilations(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise UsageError(f"dilations must be a non-empty list of positive integers, e.g. [1, 3, 5] (found {value!r})")
    return tuple(value)


class Section:
    """Base of every config section: ``from_dict`` (validated, defaults fill gaps) and ``to_dict``."""

    def __post_init__(self) -> None:
        # Fields with a parser accept the same spellings in the constructor as in a recipe
        # (ModelConfig(au_names="bp4d")); parsers are idempotent on already parsed values.
        for spec in dataclasses.fields(self):
            parse = spec.metadata.get("parse")
            value = getattr(self, spec.name)
            if parse is not None and value is not None:
                setattr(self, spec.name, parse(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
        return build_section(cls, data, prefix or _SECTION_PREFIX.get(cls.__name__, ""))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe values (tuples become lists)."""
        return to_plain(self)


#: Dotted prefix of each section inside a recipe, so that errors name the full key.
_SECTION_PREFIX = {"MoKEConfig": "model.moke", "ModelConfig": "model", "LossConfig": "loss", "DataConfig": "data",
                   "OptimConfig": "optim", "TrainConfig": "train", "BaselineConfig": "baseline"}


def _string_keys(value: Any) -> Any:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else value


@dataclass
class MoKEConfig(Section):
    """One Mixture-of-Knowledge-Expert group: N experts of bottleneck width ``bottleneck``."""

    bottleneck: int = option(8, "expert width d (the 1x1 down-projection D -> d)", min=1, max=256)
    dilations: tuple[int, ...] = option(
        (1, 3, 5), "dilations of the multi-receptive-field operator's 3x3 convs", parse=_parse_dilations
    )
    scale: float = option(1.0, "scale s of the experts' mean output added to the residual stream", min=0.0, max=100.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dilations):
            raise UsageError(f"model.moke.dilations must be positive integers (found {list(self.dilations)})")


@dataclass
class ModelConfig(Section):
    """AUFormer: a frozen timm ViT with MoKE groups beside every attention and MLP sub-layer."""

    backbone: str = option("vit_base_patch16_224.augreg_in21k", "timm model name (a VisionTransformer of standard pre-norm Blocks)")
    backbone_overrides: dict[str, Any] = option(
        default_factory=dict, help="timm create_model keyword overrides, e.g. {depth: 2, embed_dim: 64, num_heads: 2, patch_size: 8}"
    )
    backbone_weights: str | None = option(
        None, "backbone weights: a local file (.safetensors, .pth, timm .npz), hub, or random; null: hub"
    )
    img_size: int | None = option(None, "input image size (square); null: the backbone's default", min=16, max=4096)
    au_names: list[str] = option(
        default_factory=lambda: [au_name(n) for n in BP4D_AUS],
        help="AUs to detect: a set name (bp4d, disfa, casme2) or a list like [1, 2, 4]",
        parse=_parse_au_names,
    )
    moke: MoKEConfig = option(default_factory=MoKEConfig, help="MoKE expert groups")
    head_pool: HeadPool = option("cls", "main head input: cls token, mean of patch tokens, or both concatenated")
    head_norm: HeadNorm = option(
        "none", "standardise the pooled main-head input per feature (batch: a BatchNorm without affine, MAE's linear-probe protocol)"
    )
    head_hidden: int = option(0, "hidden width of the main head's MLP; 0: a single linear layer", min=0, max=65536)
    expert_pool: HeadPool = option("mean", "pooling of an expert's output for its AU's expert head")
    expert_supervision: ExpertSupervision = option("last", "which blocks' MLP experts get an AU head: last, all, none")
    grad_checkpointing: bool = option(False, "recompute each block in the backward pass (saves memory, costs ~30% time)")

    def __post_init__(self) -> None:
        super().__post_init__()
        overrides = self.backbone_overrides
        if "img_size" in overrides:
            raise UsageError("set the image size with model.img_size, not model.backbone_overrides.img_size")
        stochastic = [key for key in _STOCHASTIC_BACKBONE_KEYS if overrides.get(key)]
        if stochastic:
            raise UsageError(
                f"the backbone is frozen and runs without dropout or drop-path; remove {', '.join(stochastic)} "
                "from model.backbone_overrides"
            )
        for key in ("pretrained", "pretrained_cfg_overlay", "num_classes"):
            if key in overrides:
                raise UsageError(f"model.backbone_overrides.{key} is set by aucli itself; remove it (weights: model.backbone_weights)")


@dataclass
class LossConfig(Section):
    """MDWA-Loss + WDI (DESIGN.md section 2) and the weight of the expert supervision."""

    margin: float = option(0.05, "MDWA margin m: negatives with p <= m get no loss", min=0.0, max=0.99)
    gamma_tiers: tuple[float, float, float] = option(
        (0.75, 1.0, 1.25), "focusing gamma for the rarest, middle and most frequent third of AUs (by occurrence rate)"
    )
    gammas: dict[str, float] | None = option(
        None, "explicit per-AU gamma, e.g. {AU1: 0.75, AU12: 1.25}; overrides gamma_tiers", parse=_string_keys
    )
    expert_weight: float = option(1.0, "lambda: weight of the expert-supervision MDWA term", min=0.0, max=1000.0)
    dice: bool = option(True, "add the weighted dice (WDI) term")

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(g < 0 for g in self.gamma_tiers):
            raise UsageError(f"loss.gamma_tiers must be >= 0 (found {list(self.gamma_tiers)})")
        if self.gammas is not None:
            from aucli.aus import parse_au

            normalised = {}
            for name, gamma in self.gammas.items():
                if gamma < 0:
                    raise UsageError(f"loss.gammas.{name} must be >= 0 (found {gamma})")
                normalised[parse_au(name)] = float(gamma)
            self.gammas = normalised


Method = Literal["auformer", "linear", "adaptformer", "lora", "full"]
ProtocolName = Literal["auto", "bp4d", "disfa", "balanced"]
Precision = Literal["auto", "bf16", "fp32"]
SelectBy = Literal["val_f1", "val_auc", "last"]
ThresholdPolicy = Literal["fitted", "fixed"]


def parse_au_map(value: Any) -> dict[str, str]:
    """``{AU12: AU12R}`` or ``"AU12=AU12R,AU1=AU1"`` -> canonical ``{model AU: label-set AU}``."""
    from aucli.aus import parse_au

    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.replace(" ", "").split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise UsageError(f"an AU map is written MODEL_AU=STORE_AU,... e.g. AU1=AU1,AU12=AU12R (found {value!r})")
        value = dict(pairs)
    if not isinstance(value, Mapping):
        raise UsageError(f"an AU map must be a mapping of model AU -> label-set AU, e.g. {{AU12: AU12R}} (found {value!r})")
    mapped = {parse_au(k): parse_au(v) for k, v in value.items()}
    targets = list(mapped.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise UsageError(f"the AU map sends several model AUs to {', '.join(repeated)}; each label-set AU may be used once")
    return mapped


@dataclass
class DataConfig(Section):
    """What training reads from the store and how it is augmented (resize, crop, flip, colour)."""

    labels: str | None = option(None, "label set to train on; null: the store's only label set")
    au_map: dict[str, str] = option(
        default_factory=dict,
        help="model AU -> label-set AU where the names differ, e.g. {AU12: AU12R}; other AUs match by name",
        parse=parse_au_map,
    )
    resize: int | None = option(
        None, "side the stored face crop is resized to before cropping; null: round(img_size * 256 / 224)", min=16, max=4096
    )
    random_crop: bool = option(True, "train on random img_size crops of the resized face (evaluation: the centre crop)")
    hflip: float = option(0.5, "probability of a horizontal flip in training; side-coded AUs (AU10L, AU10R) swap with it", min=0.0, max=1.0)
    color_jitter: float = option(0.2, "strength of random brightness, contrast and saturation changes in training (0: off)", min=0.0, max=1.0)
    batch_size: int = option(32, "global batch size (split evenly across DDP processes)", min=1, max=65536)
    eval_batch_size: int | None = option(None, "batch size for evaluation; null: 2 x batch_size", min=1, max=65536)
    num_workers: int = option(2, "DataLoader worker processes per training process (0: read in the main process)", min=0, max=256)


@dataclass
class OptimConfig(Section):
    """AdamW with a linear warm-up, then a cosine decay; the schedule advances per optimiser step."""

    lr: float = option(5e-4, "peak learning rate of AdamW", min=0.0, max=10.0)
    weight_decay: float = option(0.05, "AdamW weight decay (biases, norms and other 1-D tensors get none)", min=0.0, max=10.0)
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas")
    epochs: int = option(20, "passes over the training subjects' frames", min=1, max=100000)
    max_steps: int | None = option(
        None,
        "stop after this many optimiser steps or after optim.epochs, whichever comes first (the schedule spans the steps "
        "trained); null: epochs x batches per epoch",
        min=1,
    )
    warmup_epochs: float = option(1.0, "linear warm-up from 0 to lr over this many epochs", min=0.0, max=10000.0)
    min_lr_ratio: float = option(0.01, "the cosine decays from lr to lr x min_lr_ratio", min=0.0, max=1.0)
    grad_clip: float = option(1.0, "clip the global gradient norm to this (0: off)", min=0.0)
    backbone_lr_scale: float = option(0.1, "full fine-tuning: the backbone's learning rate is lr x this", min=0.0, max=100.0)
    moke_up_lr_scale: float = option(
        1.0,
        "AUFormer: the MoKE up-projections' learning rate is lr x this. Expert i of a group reads expert i of the previous "
        "group, so the gains of those links multiply along the model; below 1 they grow slower (a high lr diverges otherwise)",
        min=0.0,
        max=100.0,
    )

    def schedule(self, batches_per_epoch: int) -> tuple[int, str]:
        """``(optimiser steps to train, the limit that sets them)`` for ``batches_per_epoch`` batches an epoch.

        Training stops at whichever limit comes first: ``epochs`` (``epochs x batches_per_epoch``
        steps) or ``max_steps``. The limit is ``"optim.max_steps"`` when it is the smaller one,
        else ``"optim.epochs"`` (also when both give the same number of steps).
        """
        by_epochs = self.epochs * batches_per_epoch
        if self.max_steps is not None and self.max_steps < by_epochs:
            return self.max_steps, "optim.max_steps"
        return by_epochs, "optim.epochs"


@dataclass
class TrainConfig(Section):
    """The training run: method, subject-independent protocol, seed, device and evaluation."""

    method: Method = option(
        "auformer", "auformer, or a baseline on the same backbone: linear (probe), adaptformer, lora, full (fine-tuning)"
    )
    protocol: ProtocolName = option(
        "auto",
        "subject folds: bp4d / disfa (official 3-fold partitions), balanced (a seeded split into n_folds), "
        "auto (official when every subject belongs to one, else balanced)",
    )
    n_folds: int = option(3, "folds of the balanced protocol", min=2, max=10000)
    fold: int | Literal["all"] = option(1, "fold to train (1-based; fold f tests on partition n_folds + 1 - f) or all")
    validation_fraction: float = option(
        0.15, "fraction of the training subjects held out for thresholds and model selection (never the test fold)", min=0.0, max=0.9
    )
    train_fraction: float = option(
        1.0, "fraction of the remaining training subjects used, chosen by seed (data-efficiency curves)", min=0.001, max=1.0
    )
    seed: int = option(0, "seed of initialisation, subject sampling, data order and augmentation", min=0)
    device: str = option("auto", "auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")
    precision: Precision = option("auto", "auto: bf16 autocast on GPU and fp32 on CPU; or bf16, fp32")
    eval_every: int = option(1, "evaluate on the validation and test subjects every this many epochs (and after the last)", min=1)
    select_by: SelectBy = option(
        "val_f1", "best checkpoint by validation mean F1 (at thresholds fitted there), validation mean AUC, or the last epoch"
    )
    thresholds: ThresholdPolicy = option("fitted", "per-AU thresholds: fitted on the validation subjects (F1-optimal), or fixed at 0.5")
    save_every: int = option(0, "also save the resumable state every this many optimiser steps (0: at the end of each epoch)", min=0)
    log_every: int = option(10, "optimiser steps between metrics log lines", min=1)
    init_from: str | None = option(
        None,
        "start from this AUFormer checkpoint (a path or a registered name): its experts and heads initialise the model "
        "(the recipe's model section must build the same model); null: experts start at zero",
    )


@dataclass
class BaselineConfig(Section):
    """Settings of the comparison methods (train.method linear, adaptformer, lora, full)."""

    adapter_bottleneck: int = option(64, "AdaptFormer: bottleneck width of the adapter beside each MLP", min=1, max=65536)
    adapter_scale: float = option(0.1, "AdaptFormer: scale of the adapter's output", min=0.0, max=100.0)
    lora_r: int = option(8, "LoRA: rank of the update of each block's fused qkv projection", min=1, max=4096)
    lora_alpha: float = option(8.0, "LoRA: alpha (the update is scaled by alpha / r)", min=0.0, max=100000.0)
    lora_dropout: float = option(0.0, "LoRA: dropout on the LoRA branch's input", min=0.0, max=0.9)


@dataclass
class Recipe(Section):
    """A whole recipe: one field per section. Add a section by adding a field here."""

    model: ModelConfig = option(default_factory=ModelConfig, help="the model")
    loss: LossConfig = option(default_factory=LossConfig, help="the training loss")
    data: DataConfig = option(default_factory=DataConfig, help="training data: label set, augmentation, loading")
    optim: OptimConfig = option(default_factory=OptimConfig, help="optimiser and learning-rate schedule")
    train: TrainConfig = option(default_factory=TrainConfig, help="method, protocol, seed, device, evaluation")
    baseline: BaselineConfig = option(default_factory=BaselineConfig, help="settings of the baseline methods")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def to_plain(section: Any) -> Any:
    """Dataclass sections -> nested dicts of plain values (tuples become lists)."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        return {f.name: to_plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, (list, tuple)):
        return [to_plain(v) for v in section]
    if isinstance(section, Mapping):
        return {str(k): to_plain(v) for k, v in section.items()}
    return section


def load_recipe(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> Recipe:
    """Resolve a recipe (defaults < the file or packaged recipe ``path`` < ``overrides`` < ``flags``, see
    :func:`recipe_data`); :class:`UsageError` for unknown keys and bad values."""
    return Recipe.from_dict(recipe_data(path, overrides, flags))


def recipe_data(
    recipe: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one precedence every command resolves its settings with: ``recipe`` < ``overrides`` < ``flags``.

    ``recipe``: a YAML file or a packaged recipe's name (:func:`read_yaml`), or the content as a
    mapping; None or "": nothing. ``overrides``: ``"key.sub=value"`` strings (``--override``) or a
    mapping of dotted keys. ``flags``: dotted key -> a command's dedicated flag (``--epochs`` is
    ``optim.epochs``), None where it was not given. The result is not validated yet: building the
    sections (``Recipe.from_dict``) fills in the defaults and checks every key and value.
    """
    base = dict(recipe) if isinstance(recipe, Mapping) else read_yaml(recipe) if recipe else {}
    data = merge_dicts(base, parse_overrides(overrides))
    return merge_dicts(data, parse_overrides({k: v for k, v in (flags or {}).items() if v is not None}))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a dict (``yaml.safe_load``); a clear error for missing or malformed files.

    ``path`` is a file, or the name of a packaged recipe (``synthetic``, ``synthetic.yaml``,
    ``recipes/synthetic.yaml``) when no such file exists (:func:`aucli.resources.resolve_recipe`).
    """
    import yaml

    from aucli.resources import resolve_recipe

    path = resolve_recipe(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UsageError(f"recipe {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping of sections (model:, loss:, ...), found {type(data).__name__}")
    return data


def parse_overrides(overrides: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """``["model.moke.bottleneck=16"]`` or ``{"model.moke.bottleneck": 16}`` -> a nested dict."""
    import yaml

    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            key, sep, raw = str(text).partition("=")
            if not sep or not key.strip():
                raise UsageError(f"override {text!r} is not of the form key.sub=value (e.g. model.moke.bottleneck=16)")
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
            items.append((key.strip(), value))
    nested: dict[str, Any] = {}
    for key, value in items:
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"override {key!r} conflicts with another override of {part!r}")
            node = child
        node[parts[-1]] = value
    return nested


def merge_dicts(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, anything else in ``update`` replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_section(cls: type, data: Mapping[str, Any] | None, prefix: str) -> Any:
    """Build dataclass ``cls`` from a (partial) mapping: defaults fill gaps, every value is checked."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = prefix or "the recipe"
        raise UsageError(f"{where} must be a mapping of keys, found {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise UsageError(_unknown_key_message(prefix, str(key), list(known)))
    kwargs = {}
    for name, value in data.items():
        spec = known[name]
        dotted = f"{prefix}.{name}" if prefix else name
        parse = spec.metadata.get("parse")
        if parse is not None and value is not None:
            value = parse(value)
        value = _coerce(value, hints[name], dotted)
        _check_range(value, spec.metadata, dotted)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except AucliError:
        raise
    except (TypeError, ValueError) as error:
        raise UsageError(f"invalid {prefix or 'recipe'}: {error}") from None


def config_keys(cls: type = Recipe, prefix: str = "") -> dict[str, str]:
    """Every dotted key of a section (recursively) -> its help text; for docs and suggestions."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, str] = {}
    for spec in dataclasses.fields(cls):
        dotted = f"{prefix}.{spec.name}" if prefix else spec.name
        if dataclasses.is_dataclass(hints[spec.name]):
            keys.update(config_keys(hints[spec.name], dotted))
        else:
            keys[dotted] = spec.metadata.get("help", "")
    return keys


def _unknown_key_message(prefix: str, key: str, valid: list[str]) -> str:
    dotted = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
    else:
        # A key that belongs to another section (margin under model:) is suggested with its full path.
        leaves = {k: k.rsplit(".", 1)[-1] for k in config_keys()}
        same = [k for k, leaf in leaves.items() if leaf == key]
        similar = difflib.get_close_matches(key, sorted(set(leaves.values())), n=1, cutoff=0.75)
        matches = same or [k for k, leaf in leaves.items() if similar and leaf == similar[0]]
        suggestion = matches[0] if matches else ""
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    where = f"section {prefix!r}" if prefix else "a recipe"
    return f"unknown key {dotted!r}{hint} (valid keys in {where}: {', '.join(valid)})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce(value: Any, tp: Any, dotted: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where it is lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = UsageError(f"{dotted} must be {_type_name(tp)} (found {value!r})")
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, dotted)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted)
            except UsageError:
                continue
        raise bad
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"{dotted} must be one of {', '.join(str(a) for a in args)} (found {value!r}){hint}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            # YAML 1.1 reads "1e-3" (no dot) as a string; users mean a number.
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{dotted}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise UsageError(f"{dotted} must have {len(args)} values (found {len(value)}: {list(value)!r})")
        return tuple(_coerce(v, a, f"{dotted}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], f"{dotted}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        if not args:
            return dict(value)
        return {_coerce(k, args[0], dotted): _coerce(v, args[1], f"{dotted}.{k}") for k, v in value.items()}
    raise TypeError(f"config annotation {tp!r} of {dotted} is not supported")  # a programming error, not a user's


def _check_range(value: Any, metadata: Mapping[str, Any], dotted: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = metadata.get("min"), metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        valid = f"between {low} and {high}" if low is not None and high is not None else (f">= {low}" if low is not None else f"<= {high}")
        raise UsageError(f"{dotted} must be {valid} (found {value})")
