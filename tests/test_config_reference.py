"""The configuration reference lists every key the config loader accepts, and only those: the
rows are compared with the loader's own list of known keys (what it answers to a key it does not
know), section by section, model by model, scorer by scorer; every key has a type, a default
and one line of meaning, and the defaults are the loaded defaults."""
from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Optional

import pytest

import comparators
import scorers

from orderlearn.config import config_from_dict
from orderlearn.config_sections import ExperimentConfig, field_name
from orderlearn.errors import ConfigError
from orderlearn.report.config_reference import REQUIRED, ConfigKey, config_reference, field_help, plain

NONSENSE = "qqqq"  # close to no key, so the loader lists all it knows instead of a did-you-mean


def known_keys(raw: dict[str, Any], key: str) -> set[str]:
    """The keys the loader accepts where ``key`` (holding NONSENSE) is written, from its error."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    match = re.search(rf"unknown key '{re.escape(key)}'; known keys: (\[.*\])$", str(caught.value))
    assert match, str(caught.value)
    return set(ast.literal_eval(match.group(1)))


def listed(rows: list[ConfigKey], prefix: str, component: str = "") -> set[str]:
    """The keys one level below ``prefix`` that the reference lists (for ``component``)."""
    return {r.key[len(prefix):].split(".")[0] for r in rows if r.key.startswith(prefix) and r.component == component}


def project_models() -> list[str]:
    """The models this project registers (tests register their own toy models beside them)."""
    return [n for n in comparators.available() if comparators.factory_of(n).__module__.startswith("comparators.")]


def project_rows(rows: list[ConfigKey]) -> list[ConfigKey]:
    return [r for r in rows if not r.component.startswith("model: ") or r.component[7:] in project_models()]


@pytest.fixture(scope="module")
def rows() -> list[ConfigKey]:
    return config_reference()


def test_the_config_sections_list_exactly_the_keys_the_loader_accepts(rows):
    assert listed(rows, "") | {"model", "scorer"} == known_keys({NONSENSE: 1}, NONSENSE) | {"model", "scorer"}
    for section in ("data", "pairs", "loss", "optim", "schedule", "train", "bank"):
        assert listed(rows, f"{section}.") == known_keys({section: {NONSENSE: 1}}, f"{section}.{NONSENSE}"), section
    # a second database takes data's keys (listed once, under data)
    assert listed(rows, "data.") == known_keys({"data": {"second": {NONSENSE: 1}}}, f"data.second.{NONSENSE}")
    # so does a bank from another dataset (bank.from, the field from_)
    assert listed(rows, "data.") == known_keys({"bank": {"from": {NONSENSE: 1}}}, f"bank.from.{NONSENSE}")


def test_each_models_options_are_the_keys_the_loader_accepts(rows):
    open_models = []
    for name in project_models():
        raw = {"task": comparators.kind_of(name), "model": {"name": name, NONSENSE: 1}}
        try:
            config_from_dict(raw)
        except ConfigError as exc:
            if f"unknown key 'model.{NONSENSE}'" in str(exc):
                assert listed(rows, "model.", f"model: {name}") == known_keys(raw, f"model.{NONSENSE}"), name
                continue
            raise
        open_models.append(name)  # accepted: the model takes any keyword
    assert open_models == ["embedding-regressor"]  # the direct baseline's head, built by the pipeline itself
    assert listed(rows, "model.", "model: embedding-regressor") == set()
    assert {r.key for r in rows if r.key.startswith("model.") and not r.component} == {"model.name"}


def test_each_scorers_options_are_the_keys_the_loader_accepts(rows):
    for name in scorers.available():
        raw = {"scorer": {"name": name, NONSENSE: 1}}
        assert listed(rows, "scorer.", f"scorer: {name}") == known_keys(raw, f"scorer.{NONSENSE}"), name
        link = {"scorer": {"name": name, "link": {NONSENSE: 1}}}
        assert listed(rows, "scorer.link.", f"scorer: {name}") == known_keys(link, f"scorer.link.{NONSENSE}")


def test_every_key_has_a_type_a_default_and_one_line_of_meaning(rows):
    assert len({(r.key, r.component) for r in rows}) == len(rows)
    for row in project_rows(rows):
        assert row.type and row.help and "\n" not in row.help, row


def test_the_defaults_are_the_loaded_defaults(rows):
    loaded = ExperimentConfig()
    assert config_from_dict({}) == loaded
    for row in (r for r in rows if not r.component):
        value = loaded
        for part in row.key.split("."):
            value = getattr(value, field_name(part))  # bank.from is held in the field from_
        assert plain(value) == row.default, row.key
    siamese = comparators.options_of("siamese")()
    for row in (r for r in rows if r.component == "model: siamese"):
        assert plain(getattr(siamese, row.key.removeprefix("model."))) == row.default, row.key


def test_the_meaning_is_read_from_comments_docstrings_and_base_classes():
    @dataclass
    class Base:
        """Options.

        ``documented``: from the docstring
        that goes on
        """

        inherited: int = 1  # from the base
        documented: str = "x"

    @dataclass
    class Child(Base):
        inherited: int = 2
        # a block above
        # of two lines
        above: Optional[float] = None
        trailing: list[str] = dataclasses.field(default_factory=list)  # on the line
        bare: bool = False

    assert field_help(Child) == {"inherited": "from the base", "documented": "from the docstring that goes on",
                                 "above": "a block above of two lines", "trailing": "on the line"}
    assert REQUIRED == "required"
