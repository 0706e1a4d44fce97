"""A bank drawn from another dataset section (``bank.from``, ``bank.size``, ``bank.draws``; issue 28):
the config's keys checked at load, before any data is read, each error naming its key; the section
inheriting the run's ``data`` keys it leaves out and saved whole; too small a pool refused when the
data are read, before training; then a tiny run on the synthetic data whose references and test
faces are on the share scale (``score_definition: high_share``): K draws in results.json and a
section in report.md, nothing else of the run changed, the same numbers from the finished run
folder, and the run's own routes with CS(t) beside the draws when the section shares its scale."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from orderlearn.config import config_from_dict, load_config
from orderlearn.data.splits import load_run_data
from orderlearn.errors import ConfigError
from orderlearn.report.config_reference import config_reference
from orderlearn.report.foreign_bank_table import foreign_bank_markdown, summarise_draws
from orderlearn.runs.foreign_bank import foreign_bank_results, load_foreign_data
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.recipe import run_experiment

from builders import TINY_IMAGE, small_run, tiny_config

SHARE = {"score_definition": "high_share", "score_low": 0, "score_high": 100}  # the new scale, in percent
SIZE, DRAWS = 25, 3


def loads(raw: dict) -> None:
    config_from_dict(raw)


# ---------------------------------------------------------------------------- the config, at load
@pytest.mark.parametrize("bank, key", [
    ({"size": 10}, "bank.size"),
    ({"draws": 3}, "bank.draws"),
    ({"from": {"kind": "imagenet"}, "size": 10}, "bank.from.kind"),
    ({"from": {"qqqq": 1}, "size": 10}, "bank.from.qqqq"),
    ({"from": {"val_fraction": 1.5}, "size": 10}, "bank.from.val_fraction"),
    ({"from": {"score_definition": "high_share"}, "size": 10}, "bank.from.score_definition"),  # 1..5 holds no percentage
    ({"from": {"second": {"kind": "synthetic"}}, "size": 10}, "bank.from.second"),
    ({"from": SHARE}, "bank.size"),  # required with bank.from
    ({"from": SHARE, "size": 1}, "bank.size"),
    ({"from": SHARE, "size": 10, "draws": 0}, "bank.draws"),
    ({"from": SHARE, "size": "ten"}, "bank.size"),
    ({"from": 3, "size": 10}, "bank.from"),
])
def test_a_bad_bank_from_is_a_config_error_naming_its_key(bank, key):
    with pytest.raises(ConfigError) as caught:
        loads({"data": {"kind": "scut", "root": "/nowhere"}, "bank": bank})  # nothing is read: the root does not exist
    message = str(caught.value)
    assert message.startswith(f"{key}:") or message.startswith(f"unknown key '{key}'"), message
    assert "\n" not in message


def test_bank_from_takes_the_run_data_keys_it_leaves_out_and_is_saved_whole(tmp_path):
    data = {"kind": "scut", "root": "/faces", "split": "fold2", "train_groups": ["CF"], "test_groups": ["CF"],
            "second": {"kind": "synthetic"}}
    config = config_from_dict({"data": data, "bank": {"from": {"test_groups": ["AF"], **SHARE}, "size": 12, "draws": 2}})
    source = config.bank.from_
    assert (source.kind, source.root, source.split, source.train_groups, source.test_groups) == (
        "scut", "/faces", "fold2", ["CF"], ["AF"])
    assert (source.score_definition, source.score_low, source.score_high, source.second) == ("high_share", 0, 100, None)
    saved = config.to_dict()["bank"]
    assert "from" in saved and "from_" not in saved and saved["from"]["test_groups"] == ["AF"]
    config.save(tmp_path / "config.yaml")
    assert "  from:\n" in (tmp_path / "config.yaml").read_text()
    assert load_config(tmp_path / "config.yaml") == config  # a run folder's config loads on its own
    assert load_config(tmp_path / "config.yaml", ["bank.size=20"]).bank.size == 20


def test_without_bank_from_nothing_changes_in_the_config():
    config = config_from_dict({})
    assert (config.bank.from_, config.bank.size, config.bank.draws) == (None, None, None)
    assert config.to_dict()["bank"] == {"bin_width": 0.1, "per_bin": 10, "seed": 0, "from": None, "size": None,
                                        "draws": None}


def test_the_config_reference_lists_bank_from_size_and_draws():
    rows = {r.key: r for r in config_reference()}
    assert {"bank.from", "bank.size", "bank.draws"} <= set(rows)
    assert "bank.from_" not in rows
    assert all(rows[k].help for k in ("bank.from", "bank.size", "bank.draws"))


def test_the_draws_summarise_as_mean_and_std_and_a_regressor_section_has_the_direct_route_only():
    draws = [{"draw": d, "direct_mapped": {"pc": 0.5 + 0.1 * d, "mae": 10.0, "rmse": 12.0, "spearman": 0.5, "n": 4}}
             for d in range(3)]
    summary = summarise_draws(draws)
    assert set(summary) == {"direct_mapped"}
    assert summary["direct_mapped"]["pc"]["mean"] == pytest.approx(0.6)
    assert summary["direct_mapped"]["pc"]["std"] == pytest.approx(0.1)
    assert math.isnan(summarise_draws(draws[:1])["direct_mapped"]["mae"]["std"])  # one draw: no spread
    section = {"dataset": {"kind": "synthetic", "root": None, "split": "fold1", "score_definition": "high_share"},
               "references": 4, "draws": 3, "seed": 0, "pool": 40, "test_images": 4, "test_faces_seen_in_training": 2,
               "summary": summary}
    text = foreign_bank_markdown(section)
    assert "## Bank from another dataset (bank.from)" in text
    assert "direct mapped" in text and "order-learned (N" not in text
    assert "0.6000 ± 0.1000" in text
    assert "2 of these test faces are among the run's training" in text


# ---------------------------------------------------------------------------- when the data are read
def test_too_few_faces_for_a_draw_stop_the_run_before_it_trains(synthetic_root, tmp_path):
    raw = tiny_config(synthetic_root, tmp_path / "run", epochs=1)
    raw["bank"] = {"from": SHARE, "size": 10_000}
    with pytest.raises(ConfigError, match=r"^bank\.size: 10000 references per draw; bank\.from gives \d+ training faces"):
        run_experiment(config_from_dict(raw))
    assert not (tmp_path / "run" / "comparator").exists()  # nothing trained


# ---------------------------------------------------------------------------- a run with bank.from
def tiny_run(root: Path, out: Path, bank: dict) -> dict:
    raw = tiny_config(root, out, epochs=1)
    raw["direct_baseline"] = True
    raw["bank"] = bank
    run_experiment(config_from_dict(raw))
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(synthetic_root, tmp_path_factory) -> dict[str, Path]:
    """The tiny comparator run with its direct head, with a share-scale bank.from and without one."""
    base = tmp_path_factory.mktemp("foreign-bank")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests run (one_thread): sums in the same order, the same last bits
    try:
        tiny_run(synthetic_root, base / "with", {"from": SHARE, "size": SIZE, "draws": DRAWS, "seed": 4})
        tiny_run(synthetic_root, base / "without", {"seed": 4})
    finally:
        torch.set_num_threads(threads)
    return {"with": base / "with", "without": base / "without"}


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_run_with_bank_from_reports_each_draw_on_the_new_scale(runs):
    section = results(runs["with"])["foreign_bank"]
    assert (section["references"], section["draws"], section["seed"]) == (SIZE, DRAWS, 4)
    assert section["dataset"]["score_definition"] == "high_share" and not section["on_run_scale"]
    assert "run_routes" not in section and section["cs_thresholds"] == []  # another scale: no CS(t), no own routes
    assert [d["draw"] for d in section["per_draw"]] == list(range(DRAWS))
    for draw in section["per_draw"]:
        for route in ("order_learned", "direct_mapped"):
            assert draw[route]["n"] == section["test_images"]
            assert 0 <= draw[route]["mae"] <= 100  # percent, not the run's 1..5
        assert draw["calibration"]["references"] == SIZE and "link" in draw["calibration"]["fitted"]
    for route in ("order_learned", "direct_mapped"):
        mean = section["summary"][route]["mae"]["mean"]
        assert mean == pytest.approx(sum(d[route]["mae"] for d in section["per_draw"]) / DRAWS)
    report = (runs["with"] / "report.md").read_text()
    assert "## Bank from another dataset (bank.from)" in report and f"of {SIZE} references" in report


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_bank_from_changes_nothing_else_of_the_run(runs):
    with_, without = results(runs["with"]), results(runs["without"])
    assert "foreign_bank" not in without
    assert "Bank from another dataset" not in (runs["without"] / "report.md").read_text()
    for key in ("order_learned", "direct", "comparator_metrics", "bank_size", "scorer", "interval_coverage"):
        assert with_[key] == without[key], key
    assert (runs["with"] / "scores.csv").read_text() == (runs["without"] / "scores.csv").read_text()
    assert (runs["with"] / "scorer.json").read_text() == (runs["without"] / "scorer.json").read_text()


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_finished_run_gives_the_same_numbers_for_the_same_seed_and_others_for_another(runs):
    """The phase scored the run as it was made; loaded from its folder, the same draws give the
    same numbers (the in-run loaded run is the run), and another bank.seed other draws."""
    loaded = LoadedRun.from_run(runs["with"])
    config = loaded.config
    data = load_foreign_data(config, load_run_data(config.data))
    again = json.loads(json.dumps(foreign_bank_results(loaded, data, lambda line: None), default=float))
    same = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731 (NaN == NaN as text)
    assert same(again["per_draw"]) == same(results(runs["with"])["foreign_bank"]["per_draw"])
    other = dataclasses.replace(loaded, config=dataclasses.replace(config, bank=dataclasses.replace(config.bank, seed=5)))
    moved = foreign_bank_results(other, data, lambda line: None)
    assert [d["order_learned"]["mae"] for d in moved["per_draw"]] != [d["order_learned"]["mae"] for d in again["per_draw"]]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_on_the_run_scale_the_run_routes_and_cs_are_reported_beside_the_draws(runs):
    """Other groups on the run's own scale: CS(t) of the run's thresholds, and its own bank and
    unmapped direct score on the same test faces."""
    loaded = LoadedRun.from_run(runs["with"])
    config = loaded.config
    groups = dataclasses.replace(config.data, train_groups=["AF", "AM"], test_groups=["AF", "AM"])
    bank = dataclasses.replace(config.bank, from_=groups, size=8, draws=2)
    config = dataclasses.replace(config, cs_thresholds=[0.5], bank=bank)
    data = load_foreign_data(config, load_run_data(config.data))
    section = foreign_bank_results(dataclasses.replace(loaded, config=config), data, lambda line: None)
    assert section["on_run_scale"] and section["cs_thresholds"] == [0.5]
    assert section["test_faces_seen_in_training"] == 0  # the run's test split: never trained on
    assert set(section["run_routes"]) == {"order_learned", "direct"}
    assert all("cs0.5" in d["order_learned"] and "cs0.5" in d["direct_mapped"] for d in section["per_draw"])
    assert "cs0.5" in foreign_bank_markdown(section)


@pytest.mark.usefixtures("one_thread")  # one run of a tiny regressor, one epoch: ~1.5 s
def test_a_regressor_run_reports_its_mapped_direct_route_on_the_new_scale(synthetic_root, tmp_path):
    """A regressor has no comparator to re-anchor: each draw has the direct route mapped alone."""
    raw = small_run(synthetic_root, tmp_path / "run", {"name": "plain", **TINY_IMAGE}, name="plain",
                    train={"epochs": 1}, bank={"from": SHARE, "size": 12, "draws": 2})
    section = run_experiment(config_from_dict(raw))["foreign_bank"]
    assert [sorted(k for k in d if k not in ("draw", "calibration")) for d in section["per_draw"]] == [["direct_mapped"]] * 2
    assert set(section["summary"]) == {"direct_mapped"}
    assert "direct mapped" in (tmp_path / "run" / "report.md").read_text()
