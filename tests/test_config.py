"""Typed configuration: defaults, recipes, overrides, validation messages, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aucli.aus import BP4D_AUS, DISFA_AUS, au_name
from aucli.config import LossConfig, ModelConfig, MoKEConfig, Recipe, config_keys, load_recipe, parse_overrides, recipe_data
from aucli.errors import UnknownAUError, UsageError
from aucli.resources import recipes_dir

RECIPES = recipes_dir()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    recipe = load_recipe()
    assert recipe.model.backbone == "vit_base_patch16_224.augreg_in21k"
    assert recipe.model.au_names == [au_name(n) for n in BP4D_AUS]
    assert recipe.model.moke == MoKEConfig(bottleneck=8, dilations=(1, 3, 5), scale=1.0)
    assert (recipe.model.head_pool, recipe.model.expert_pool, recipe.model.expert_supervision) == ("cls", "mean", "last")
    assert recipe.loss == LossConfig(margin=0.05, gamma_tiers=(0.75, 1.0, 1.25), gammas=None, expert_weight=1.0, dice=True)


def test_precedence_defaults_recipe_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  moke: {bottleneck: 16, scale: 0.5}\n  au_names: disfa\nloss:\n  margin: 0.1\n")
    recipe = load_recipe(path, ["model.moke.bottleneck=4", "loss.dice=false"])
    assert recipe.model.moke.bottleneck == 4  # override beats recipe
    assert recipe.model.moke.scale == 0.5  # recipe beats default
    assert recipe.model.moke.dilations == (1, 3, 5)  # default
    assert recipe.model.au_names == [au_name(n) for n in DISFA_AUS]
    assert recipe.loss.margin == 0.1 and recipe.loss.dice is False


def test_dedicated_flags_beat_overrides_and_a_flag_not_given_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "optim: {lr: 0.01, epochs: 7}\ntrain: {seed: 3}\n")
    flags = {"optim.lr": 0.5, "optim.epochs": None, "train.device": "cpu"}
    recipe = load_recipe(path, ["optim.lr=0.2", "optim.epochs=9", "train.seed=4"], flags)
    assert recipe.optim.lr == 0.5  # flag beats override beats recipe
    assert recipe.optim.epochs == 9  # a flag that was not given (None) leaves the override
    assert recipe.train.seed == 4 and recipe.train.device == "cpu"
    # the same precedence on plain data (finetune-micro's recipe has a micro: section the Recipe lacks)
    data = recipe_data({"micro": {"aus": "casme2"}, "optim": {"lr": 1.0}}, {"micro.protocol": "kfold"}, {"optim.lr": 2.0, "micro.aus": None})
    assert data == {"micro": {"aus": "casme2", "protocol": "kfold"}, "optim": {"lr": 2.0}}
    assert recipe_data(None) == recipe_data("") == {}


def test_overrides_as_mapping_and_nested_dicts() -> None:
    recipe = load_recipe(None, {"model.backbone_overrides.depth": 2, "model.backbone_overrides.embed_dim": 64, "model.au_names": [1, "AU2"]})
    assert recipe.model.backbone_overrides == {"depth": 2, "embed_dim": 64}
    assert recipe.model.au_names == ["AU1", "AU2"]
    assert parse_overrides(["a.b=[1, 2]", "a.c=null", "a.d=text"]) == {"a": {"b": [1, 2], "c": None, "d": "text"}}


def test_int_becomes_float_and_list_becomes_tuple() -> None:
    recipe = load_recipe(None, ["model.moke.scale=2", "loss.gamma_tiers=[1, 1, 2]", "model.moke.dilations=[1, 2]"])
    assert recipe.model.moke.scale == 2.0 and isinstance(recipe.model.moke.scale, float)
    assert recipe.loss.gamma_tiers == (1.0, 1.0, 2.0)
    assert recipe.model.moke.dilations == (1, 2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.moke.botleneck=3",
            "unknown key 'model.moke.botleneck'; did you mean 'model.moke.bottleneck'? (valid keys in section 'model.moke': bottleneck, dilations, scale)",
        ),
        ("model.margin=0.1", "unknown key 'model.margin'; did you mean 'loss.margin'?"),
        ("model.head_pool=clss", "model.head_pool must be one of cls, mean, both (found 'clss'); did you mean 'cls'?"),
        ("model.moke.bottleneck=0", "model.moke.bottleneck must be between 1 and 256 (found 0)"),
        ("model.moke.bottleneck=1.5", "model.moke.bottleneck must be int (found 1.5)"),
        ("loss.margin=-0.1", "loss.margin must be between 0.0 and 0.99 (found -0.1)"),
        ("loss.gamma_tiers=[1, 2]", "loss.gamma_tiers must have 3 values (found 2: [1, 2])"),
        ("loss.dice=maybe", "loss.dice must be bool (found 'maybe')"),
        ("model.moke.dilations=[0, 3]", "model.moke.dilations must be positive integers (found [0, 3])"),
        ("model.expert_supervision=first", "model.expert_supervision must be one of last, all, none (found 'first')"),
        ("model.backbone_overrides.drop_path_rate=0.1", "the backbone is frozen and runs without dropout or drop-path; remove drop_path_rate"),
        ("model.backbone_overrides.img_size=112", "set the image size with model.img_size, not model.backbone_overrides.img_size"),
        ("model=3", "model must be a mapping of keys, found 3"),
        ("nothing", "override 'nothing' is not of the form key.sub=value"),
    ],
)
def test_bad_values_say_what_is_valid(override: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        load_recipe(None, [override])
    assert str(error.value).startswith(message)


def test_unknown_top_level_section_lists_the_sections(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown key 'modle'; did you mean 'model'\?"):
        load_recipe(write(tmp_path, "modle: {}\n"))


def test_au_names_and_gammas_are_canonical() -> None:
    recipe = load_recipe(None, ["model.au_names=au01,12", "loss.gammas={1: 0.5, au12: 2}"])
    assert recipe.model.au_names == ["AU1", "AU12"]
    assert recipe.loss.gammas == {"AU1": 0.5, "AU12": 2.0}
    with pytest.raises(UnknownAUError):
        load_recipe(None, ["model.au_names=AU1,AU1"])


def test_recipe_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="is not valid YAML"):
        load_recipe(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(UsageError, match="must be a mapping of sections"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    assert load_recipe(write(tmp_path, "")) == Recipe()


def test_dict_and_yaml_round_trips() -> None:
    recipe = load_recipe(None, ["model.au_names=disfa", "model.moke.bottleneck=4", "loss.gammas={AU1: 0.5}", "model.backbone_overrides.depth=2"])
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    assert ModelConfig.from_dict(recipe.model.to_dict()) == recipe.model
    plain = recipe.to_dict()
    assert plain["model"]["moke"]["dilations"] == [1, 3, 5]  # JSON-safe lists, not tuples


def test_section_errors_name_the_full_key() -> None:
    with pytest.raises(UsageError, match=r"unknown key 'model\.moke\.width'"):
        ModelConfig.from_dict({"moke": {"width": 3}})


def test_config_keys_documents_every_field() -> None:
    keys = config_keys()
    assert "model.moke.bottleneck" in keys and "loss.expert_weight" in keys
    assert all(help_text for key, help_text in keys.items() if key.startswith(("model.", "loss."))), "a field without help"


@pytest.mark.parametrize(("name", "aus"), [("bp4d", BP4D_AUS), ("disfa", DISFA_AUS)])
def test_shipped_recipes(name: str, aus: tuple[int, ...]) -> None:
    path = RECIPES / f"{name}.yaml"
    recipe = load_recipe(path)
    assert recipe.model.backbone == "vit_base_patch16_224.augreg_in21k"
    assert recipe.model.img_size == 224
    assert recipe.model.au_names == [au_name(n) for n in aus]
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert {"model", "loss"} <= set(raw)  # the training sections come from the train engine
    # Every setting line documents itself, like Ultralytics' default.yaml.
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            assert "#" in line, f"{name}.yaml line without a comment: {line!r}"


def test_float_overrides_accept_exponents_without_a_dot() -> None:
    from aucli.config import load_recipe

    assert load_recipe(None, ["optim.lr=1e-3"]).optim.lr == 1e-3
    assert load_recipe(None, ["loss.margin=5e-2"]).loss.margin == 0.05
