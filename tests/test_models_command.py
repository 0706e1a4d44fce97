"""``orderlearn models`` lists every registered model (kind, paper, backbone, options, an
example config that uses it), every scorer and this project's backbones; ``--json`` is the
same data for a program, and ``orderlearn.models()`` returns it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import comparators
import scorers

import orderlearn
from orderlearn.cli import main
from orderlearn.config_files import resolve_file
from orderlearn.config import canonical_sections
from orderlearn.report.catalog import example_configs, first_line

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = {"adashare-aff", "comboloss", "dual-label-distribution", "embedding-regressor", "llava", "plain",
            "relative-position", "siamese"}


@pytest.fixture(scope="module")
def listing() -> dict:
    return orderlearn.models()


def test_json_lists_every_registered_model_scorer_and_backbone(listing, capsys):
    assert main(["models", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"] == json.loads(json.dumps(listing["models"]))
    assert sorted(m["name"] for m in printed["models"]) == comparators.available()
    assert all(m["kind"] == comparators.kind_of(m["name"]) for m in printed["models"])
    assert [s["name"] for s in printed["scorers"]] == scorers.available()
    assert {"ir50", "ir50_poster", "mobilenetv2_100_lite0_fusion", "mobilenetv2_100"} <= {b["name"] for b in printed["backbones"]}


def test_each_built_in_model_has_its_paper_backbone_options_and_an_example_that_uses_it(listing):
    models = {m["name"]: m for m in listing["models"]}
    assert BUILT_IN <= set(models)
    for name in BUILT_IN - {"siamese", "embedding-regressor"}:  # those two are this project's
        assert models[name]["paper"], name
    assert models["siamese"]["backbone"] == "mobilenetv2_100 (any timm model)"
    assert "ResNet-18" in models["adashare-aff"]["backbone"]
    assert "projection" in models["siamese"]["options"] and "tiny" in models["llava"]["options"]
    for name in BUILT_IN - {"embedding-regressor"}:  # built by the pipeline, never named by a config
        example = REPO / models[name]["example"]
        raw = resolve_file(example, canonical_sections)
        assert raw.get("model", {}).get("name", "siamese") == name, example
    assert models["siamese"]["example"].startswith("configs/synthetic/")  # synthetic configs come first


def test_the_text_lists_every_model_and_scorer(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in comparators.available() + scorers.available():
        assert f"\n{name}" in text, name


def test_examples_prefer_a_synthetic_config_and_skip_files_that_are_not_experiments(tmp_path):
    configs = tmp_path / "configs"
    (configs / "b").mkdir(parents=True)
    (configs / "a").mkdir()
    (configs / "a" / "real.yaml").write_text("data: {kind: scut}\nmodel: {name: plain}\n")
    (configs / "b" / "synth.yaml").write_text("data: {kind: synthetic}\nmodel: {name: plain}\n")
    (configs / "a" / "launcher.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    (configs / "a" / "broken.yaml").write_text("base: missing.yaml\n")
    assert example_configs(configs) == {"plain": "configs/b/synth.yaml"}
    assert example_configs(tmp_path / "none") == {}


def test_a_summary_is_the_first_sentence():
    assert first_line("One thing (see a.b). More\nhere.\n\nOther paragraph.") == "One thing (see a.b)."
    assert first_line(None) == "" and first_line("No period") == "No period"
