"""Config errors found at load that used to surface deep in a run as a bare ValueError, and the
public names of ``orderlearn.config`` after its split into sections, typing and checks."""
from __future__ import annotations

import pytest

import orderlearn.config
from orderlearn.config import ConfigError, config_from_dict


def comparator(**sections) -> dict:
    return {"model": {"name": "siamese", "backbone": "mobilenetv2_035", "weights": "random"}, **sections}


@pytest.mark.parametrize("raw,key,words", [
    (comparator(loss={"name": "wce"}), "loss.class_weights", "needs one weight per class"),
    (comparator(loss={"name": "wce", "class_weights": [1.0, 2.0]}), "loss.class_weights", "2 weights for a model of 3 classes"),
    (comparator(model={"name": "siamese", "backbone": "mobilenetv2_035", "weights": "random", "num_classes": 2},
                loss={"name": "wce", "class_weights": [1.0, 1.0, 2.0]}), "loss.class_weights", "3 weights for a model of 2"),
    (comparator(loss={"name": "wce", "class_weights": [1.0, 0.0, 2.0]}), "loss.class_weights", "positive"),
    (comparator(data={"synthetic_images": 3}), "data.synthetic_images", "bad value 3"),
    (comparator(data={"synthetic_image_size": 8}), "data.synthetic_image_size", "bad value 8"),
    (comparator(data={"kind": "scut", "root": "x", "second": {"synthetic_images": 4}}), "data.second.synthetic_images",
     "bad value 4"),
])
def test_errors_the_run_met_late_are_config_errors_naming_the_key(raw, key, words):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    message = str(caught.value)
    assert message.startswith(f"{key}: ") and words in message and "\n" not in message


def test_weighted_loss_with_its_weights_loads():
    config = config_from_dict(comparator(loss={"name": "wce", "class_weights": [1.0, 1.0, 2.0]}))
    assert config.loss.class_weights == [1.0, 1.0, 2.0]
    two = comparator(loss={"name": "wce", "class_weights": [1.0, 2.0]})
    two["model"]["num_classes"] = 2
    assert config_from_dict(two).loss.class_weights == [1.0, 2.0]


def test_the_public_names_still_come_from_orderlearn_config():
    from orderlearn import config_checks, config_sections, config_typing

    for name in orderlearn.config.__all__:
        assert hasattr(orderlearn.config, name), name
    assert orderlearn.config.ExperimentConfig is config_sections.ExperimentConfig
    assert orderlearn.config.DataConfig is config_sections.DataConfig
    assert orderlearn.config.ConfigError is ConfigError
    assert callable(config_typing.build_section) and callable(config_checks.check_config)
