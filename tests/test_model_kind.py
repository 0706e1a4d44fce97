"""A model's kind is declared once, when it registers; a config's ``task`` is checked against it
when the config loads (a one-line ConfigError the CLI prints), and a model must be its kind."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import comparators
from comparators.base import Comparator, Regressor
from comparators import registry
from comparators.registry import register_model
from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError
from orderlearn.types import Registry


@pytest.mark.parametrize("name, kind", [("siamese", "comparator"), ("llava", "comparator"), ("plain", "regressor"),
                                        ("comboloss", "regressor"), ("dual-label-distribution", "regressor"),
                                        ("relative-position", "regressor"), ("adashare-aff", "regressor"),
                                        ("embedding-regressor", "regressor")])
def test_kind_of_reads_the_registration(name, kind):
    assert comparators.kind_of(name) == kind
    assert name in comparators.available(kind)


def test_an_unknown_kind_cannot_register():
    with pytest.raises(ValueError, match="kind must be one of"):
        register_model("test-kindless", kind="scorer")


def test_a_task_that_is_not_the_models_kind_is_a_config_error_naming_both():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"task": "comparator", "model": {"name": "plain", "weights": "random"}})
    message = str(caught.value)
    assert message.startswith("task: ") and "'plain'" in message and "set task: regressor" in message
    assert "\n" not in message


def test_a_matching_task_loads():
    assert config_from_dict({"task": "regressor", "model": {"name": "plain", "weights": "random"}}).task == "regressor"
    assert config_from_dict({"task": "comparator", "model": {"name": "siamese", "weights": "random"}}).task == "comparator"


def test_the_cli_prints_the_mismatch_as_one_line(tmp_path: Path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: regressor\nmodel:\n  name: siamese\n  weights: random\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "task: 'regressor', but model 'siamese' is a comparator" in err
    assert len(err.splitlines()) == 1


class _NotAComparator(Regressor):
    def forward(self, images: torch.Tensor):  # pragma: no cover - never called
        raise NotImplementedError


def test_a_model_that_is_not_its_registered_kind_fails_when_built(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", Registry("model"))  # a scratch registry: the real one stays clean
    register_model("test-wrong-kind", kind="comparator")(_NotAComparator)
    register_model("test-right-kind", kind="regressor")(_NotAComparator)
    with pytest.raises(TypeError, match="registered as a comparator but built a _NotAComparator"):
        registry.create("test-wrong-kind")
    assert isinstance(registry.create("test-right-kind"), Regressor)
    assert not isinstance(registry.create("test-right-kind"), Comparator)
