"""Configs: YAML round trip, overrides, and errors that name the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from orderlearn.config import ConfigError, ExperimentConfig, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        config = load_config(path)
        assert config.name and config.output_dir


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
