"""Configs: YAML round trip, overrides, and errors that name the key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orderlearn.config import ConfigError, ExperimentConfig, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def shipped_configs() -> list[Path]:
    """Every run config under configs/ (configs/accelerate/ holds accelerate's launcher files)."""
    return sorted(p for p in (REPO / "configs").rglob("*.yaml") if "accelerate" not in p.relative_to(REPO / "configs").parts)


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_loads_and_validates(path):
    config = load_config(path)
    assert config.name and config.output_dir
    assert "base" not in config.to_dict()


def test_the_shipped_configs_are_in_folders():
    assert len(shipped_configs()) >= 40
    assert not list((REPO / "configs").glob("*.yaml")), "configs/ keeps its configs in folders by dataset or family"


def test_yaml_round_trip_and_overrides(tmp_path):
    config = load_config(REPO / "configs" / "synthetic" / "demo.yaml", ["train.epochs=2", "model.image_size=96", "optim.lr=1e-4"])
    assert config.train.epochs == 2 and config.model.args["image_size"] == 96 and config.optim.lr == 1e-4
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"train": {"epoch": 3}}, "unknown key 'train.epoch'; did you mean 'train.epochs'"),
        ({"trian": {}}, "unknown key 'trian'; did you mean 'train'"),
        ({"train": {"epochs": "many"}}, "train.epochs: expected int"),
        ({"loss": {"name": "focal"}}, "loss.name: 'focal' is not one of"),
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction: bad value 1.5"),
        ({"pairs": "lots"}, "pairs: expected a mapping"),
    ],
)
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config_from_dict(raw)


def test_unknown_key_in_file_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.batchsize'; did you mean 'train.batch_size'"):
        load_config(path)


def test_model_section_keeps_its_own_arguments():
    config = config_from_dict({"model": {"name": "siamese", "backbone": "resnet18", "weights": "random"}})
    assert config.model.name == "siamese" and config.model.args == {"backbone": "resnet18", "weights": "random"}
    assert ExperimentConfig().model.name == "siamese"


@pytest.mark.parametrize("value", ["[1", "\t1", "!!python/object:os.system {}", "{a: 1", '"abc'])
def test_invalid_yaml_in_an_override_names_the_override_key(value):
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "configs" / "synthetic" / "demo.yaml", [f"train.epochs={value}"])
    message = str(err.value)
    assert message.startswith("-o train.epochs: value ") and "not valid YAML" in message
    assert "\n" not in message


def test_invalid_yaml_in_a_file_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: not valid YAML: line ") and "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["model.args.image_size", "model.image_size"])
def test_an_args_override_reaches_a_flat_model_section(key):
    """A file writes its model's options flat; `-o model.args.X` must set the same option, not make
    the flat keys (model.backbone, which the user did not touch) look unknown."""
    config = load_config(REPO / "configs" / "synthetic" / "demo.yaml", [f"{key}=32"])
    assert config.model.args["image_size"] == 32
    assert config.model.args["backbone"] == load_config(REPO / "configs" / "synthetic" / "demo.yaml").model.args["backbone"]


# --- configs that inherit ------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BASE = """\
name: base-run
output_dir: runs/base
train:
  epochs: 4
  batch_size: 16
  feature_views: [identity]
model:
  name: siamese
  backbone: resnet18
  weights: random
  image_size: 64
"""


def test_a_variant_deep_merges_into_its_base(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\nname: variant\ntrain:\n  epochs: 2\nmodel:\n  image_size: 32\n")
    config = load_config(variant)
    assert config.name == "variant" and config.output_dir == "runs/base"
    assert (config.train.epochs, config.train.batch_size) == (2, 16)  # a mapping merges key by key
    assert config.model.name == "siamese"
    assert config.model.args == {"backbone": "resnet18", "weights": "random", "image_size": 32}


def test_lists_and_scalars_replace_the_base_value(tmp_path):
    write(tmp_path / "base.yaml", BASE.replace("[identity]", "[identity, hflip]") + "cs_thresholds: [1, 2]\n")
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\ncs_thresholds: [5]\ntrain:\n  feature_views: [identity]\n")
    config = load_config(variant)
    assert config.cs_thresholds == [5.0] and config.train.feature_views == ["identity"]


def test_a_chain_of_bases_each_relative_to_the_file_that_names_it(tmp_path):
    write(tmp_path / "a" / "root.yaml", BASE)
    write(tmp_path / "b" / "middle.yaml", "base: ../a/root.yaml\ntrain:\n  epochs: 3\n")
    leaf = write(tmp_path / "c" / "d" / "leaf.yaml", "base: ../../b/middle.yaml\nname: leaf\nmodel:\n  args:\n    image_size: 48\n")
    config = load_config(leaf)
    assert (config.name, config.train.epochs, config.train.batch_size) == ("leaf", 3, 16)
    assert config.model.args == {"backbone": "resnet18", "weights": "random", "image_size": 48}


def test_unset_removes_an_inherited_key(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\nunset: [model.image_size, train.batch_size]\n")
    config = load_config(variant)
    assert "image_size" not in config.model.args and config.train.batch_size == 64  # the default again


def test_unset_of_a_key_the_base_does_not_set_names_the_file_and_key(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\nunset: [model.imagesize]\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml: unset: model\.imagesize is not set by the base config"):
        load_config(variant)


def test_a_cycle_is_a_one_line_error_naming_the_file_and_base(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: ./a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yaml")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'b.yaml'}: base: inheritance cycle") and "\n" not in message
    write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match=r"self\.yaml: base: inheritance cycle"):
        load_config(tmp_path / "self.yaml")


def test_a_missing_base_is_a_one_line_error_naming_the_file_and_base(tmp_path):
    variant = write(tmp_path / "variant.yaml", "base: nowhere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(variant)
    assert str(err.value).startswith(f"{variant}: base: nowhere.yaml does not exist") and "\n" not in str(err.value)
    write(tmp_path / "bad_base.yaml", "base: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad_base\.yaml: base: expected a file name"):
        load_config(tmp_path / "bad_base.yaml")


def test_an_error_in_the_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", "train:\n  epochs: [1\n")
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: not valid YAML: line 3"):
        load_config(variant)


def test_overrides_apply_after_resolution(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\ntrain:\n  epochs: 2\n")
    config = load_config(variant, ["train.epochs=7", "model.args.image_size=96", "model.backbone=resnet34"])
    assert config.train.epochs == 7 and config.train.batch_size == 16
    assert config.model.args == {"backbone": "resnet34", "weights": "random", "image_size": 96}
    with pytest.raises(ConfigError, match=r"^-o base: base belongs in a config file"):
        load_config(variant, ["base=other.yaml"])


def test_validation_runs_on_the_resolved_config_naming_the_key(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    variant = write(tmp_path / "variant.yaml", "base: base.yaml\ntrain:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml: unknown key 'train\.epoch'; did you mean 'train\.epochs'"):
        load_config(variant)


def test_a_run_saves_the_resolved_config_which_loads_alone(tmp_path):
    write(tmp_path / "configs" / "base.yaml", BASE)
    variant = write(tmp_path / "configs" / "variant.yaml", "base: base.yaml\nname: variant\ntrain:\n  epochs: 2\n")
    config = load_config(variant, ["seed=3"])
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    config.save(saved)
    assert "base" not in yaml.safe_load(saved.read_text())
    (tmp_path / "configs" / "base.yaml").unlink()  # the run folder needs no other file
    assert load_config(saved) == config


def test_a_shipped_variant_resolves_to_its_base_plus_its_differences():
    base = load_config(REPO / "configs" / "lmol" / "balanced3_ce.yaml").to_dict()
    variant = load_config(REPO / "configs" / "lmol" / "balanced2_ce.yaml").to_dict()
    changed = {k for k in base if base[k] != variant[k]}
    assert changed == {"name", "output_dir", "model", "pairs"}
    assert variant["pairs"] == base["pairs"] | {"recipe": "balanced-2"}
    assert variant["model"]["args"] == base["model"]["args"] | {"two_class": True}


def test_config_from_dict_refuses_base():
    with pytest.raises(ConfigError, match="^base: only a config file can inherit"):
        config_from_dict({"base": "other.yaml"})


@pytest.mark.parametrize("override,key", [
    ("scorer.step=-1", "scorer.step"),
    ("scorer.mass=2", "scorer.mass"),
    ("scorer.link={slope: -2}", "scorer.link.slope"),
    ("model.image_size=-3", "model.image_size"),
    ("train.feature_views=[identity, blur]", "train.feature_views"),
])
def test_a_component_s_own_check_names_the_dotted_key(override, key):
    """The scorer's and the model's own range checks speak of their arguments; the error names the
    config key (scorer.step), not only the section."""
    demo = REPO / "configs" / "synthetic" / "demo.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(demo, [override])
    assert str(err.value).startswith(f"{demo}: {key}: ") and "\n" not in str(err.value)


def test_an_option_given_flat_and_under_args_in_one_file_names_the_key(tmp_path):
    path = write(tmp_path / "c.yaml", "model:\n  name: siamese\n  image_size: 32\n  args:\n    image_size: 64\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: model\.image_size: given twice, as model\.image_size and model\.args\.image_size"):
        load_config(path)


def test_an_error_about_an_inherited_key_names_the_base_file_that_sets_it(tmp_path):
    base = write(tmp_path / "base.yaml", BASE.replace("  epochs: 4", "  epochs: 0") + "optim:\n  lrr: 0.1\n")
    variant = write(tmp_path / "sub" / "variant.yaml", "base: ../base.yaml\nname: v\n")
    with pytest.raises(ConfigError) as err:
        load_config(variant)
    assert str(err.value) == (f"{variant}: unknown key 'optim.lrr'; did you mean 'optim.lr'? "
                              f"(set in {variant.parent / '../base.yaml'})")
    with pytest.raises(ConfigError) as err:
        load_config(variant, ["optim.lr=0.1", "optim.lrr=0.2"])  # set by -o: no file to point at
    assert str(err.value) == f"{variant}: unknown key 'optim.lrr'; did you mean 'optim.lr'?"
    base.write_text(BASE.replace("  epochs: 4", "  epochs: 0"))
    with pytest.raises(ConfigError, match=r"variant\.yaml: train\.epochs: bad value 0 \(set in .*base\.yaml\)$"):
        load_config(variant)
    with pytest.raises(ConfigError, match=r"variant\.yaml: model\.image_size: must be positive, got -1$"):
        load_config(variant, ["train.epochs=1", "model.args.image_size=-1"])
