"""The new-scale protocols of ``orderlearn compare --new-scale`` (issue 28) on tiny runs: the rows per
route, N and draw, seeded draws that do not depend on what else is asked, the paired verdict, the
files and the picture, and the one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.report.new_scale_table import verdicts
from orderlearn.runs.new_scale import draw_references
from orderlearn.runs.new_scale_study import study_run
from orderlearn.runs.recipe import run_experiment

from builders import tiny_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _run(root: Path, out: Path, **data) -> Path:
    raw = tiny_config(root, out, epochs=1)
    raw["direct_baseline"] = True
    raw["data"].update(data)
    run_experiment(config_from_dict(raw))
    return out


@pytest.fixture(scope="module")
def same_groups(synthetic_root, tmp_path_factory) -> Path:
    return _run(synthetic_root, tmp_path_factory.mktemp("new-scale") / "run")


@pytest.fixture(scope="module")
def cross_group(synthetic_root, tmp_path_factory) -> Path:
    return _run(synthetic_root, tmp_path_factory.mktemp("new-scale-cross") / "run",
                train_groups=["CF", "CM"], test_groups=["AF", "AM"])


def test_share_protocol_writes_both_routes_per_size_and_draw_and_repeats_exactly(same_groups, tmp_path, capsys):
    argv = ["compare", str(same_groups), "--new-scale", "share", "--sizes", "12", "6", "--draws", "2"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "# New scale (share)" in capsys.readouterr().out
    for name in ("new_scale.md", "new_scale.csv", "new_scale_draws.csv", "new_scale.json", "new_scale.png"):
        assert (tmp_path / "a" / name).is_file(), name
    payload = json.loads((tmp_path / "a" / "new_scale.json").read_text())
    rows = payload["rows"]
    assert sorted({(r["route"], r["references"], r["draw"]) for r in rows}) == sorted(
        [(route, n, d) for route in ("order-learned", "direct mapped") for n in (6, 12) for d in (0, 1)]
        + [("fused", 12, d) for d in (0, 1)])  # fused: from 10 references on, as the fitted link
    assert all(0.0 <= r["mae"] <= 100.0 for r in rows)  # on the share scale (percent), not 1..5
    assert {(v["references"], v["route"]) for v in payload["verdicts"]} == {(6, "order-learned"), (12, "order-learned"),
                                                                            (12, "fused")}
    assert payload["command"].startswith("orderlearn compare")
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0  # same seed, same numbers
    assert (tmp_path / "a" / "new_scale_draws.csv").read_text() == (tmp_path / "b" / "new_scale_draws.csv").read_text()


def test_a_draw_depends_on_seed_size_and_draw_only(same_groups):
    from orderlearn.data.splits import load_training
    from orderlearn.runs.loaded import LoadedRun

    pool = load_training(LoadedRun.from_run(same_groups).config.data).train
    first = draw_references(pool, 10, seed=0, draw=1)
    assert [s.path for s in first.samples] == [s.path for s in draw_references(pool, 10, seed=0, draw=1).samples]
    assert [s.path for s in first.samples] != [s.path for s in draw_references(pool, 10, seed=0, draw=2).samples]
    assert [s.path for s in first.samples] != [s.path for s in draw_references(pool, 10, seed=1, draw=1).samples]
    validation = {s.path for s in load_training(LoadedRun.from_run(same_groups).config.data).val}
    assert not validation & {s.path for s in first.samples}  # references never come from validation


def test_target_groups_draws_from_the_test_groups_and_reports_the_run_bank(cross_group):
    rows = study_run(cross_group, "target-groups", sizes=[8], draws=2)
    routes = {r["route"]: r for r in rows}
    assert set(routes) == {"order-learned (training bank)", "direct", "order-learned", "direct mapped"}
    assert routes["direct"]["references"] is None and routes["order-learned"]["references"] == 8
    results = json.loads((cross_group / "results.json").read_text())
    assert routes["order-learned (training bank)"]["pc"] == pytest.approx(results["order_learned"]["pc"], abs=1e-9)
    assert routes["direct"]["pc"] == pytest.approx(results["direct"]["pc"], abs=1e-9)


def test_target_groups_needs_a_cross_group_run(same_groups, tmp_path, capsys):
    code = main(["compare", str(same_groups), "--new-scale", "target-groups", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "data.test_groups is not set" in err


def test_sizes_beyond_the_pool_and_with_table_are_refused(same_groups, tmp_path, capsys):
    assert main(["compare", str(same_groups), "--new-scale", "share", "--sizes", "100000", "--out", str(tmp_path)]) == 2
    assert "--sizes: 100000 references asked" in capsys.readouterr().err
    table = tmp_path / "t.csv"
    table.write_text("method\n")
    assert main(["compare", str(same_groups), "--new-scale", "share", "--with-table", str(table), "--out", str(tmp_path)]) == 2
    assert "--with-table" in capsys.readouterr().err


def test_the_verdict_is_paired_and_needs_more_than_the_spread():
    def row(route, fold, draw, pc, mae):
        return {"method": "m", "protocol": "share", "route": route, "references": 10, "fold": fold, "draw": draw,
                "pc": pc, "mae": mae, "rmse": mae, "n": 5}

    # order-learned better by 0.02 PC in every pair (spread 0): it wins; MAE differences +-1 around 0: level
    rows = [row("order-learned", f, d, 0.80 + 0.01 * d + 0.02, 10.0 + (1 if d else -1))
            for f in ("fold1", "fold2") for d in (0, 1)]
    rows += [row("direct mapped", f, d, 0.80 + 0.01 * d, 10.0) for f in ("fold1", "fold2") for d in (0, 1)]
    (verdict,) = verdicts(rows)
    assert verdict["pairs"] == 4 and verdict["pc_verdict"] == "order-learned"
    assert verdict["pc_diff_mean"] == pytest.approx(0.02)
    assert verdict["mae_verdict"] == "level"
    # direct mapped lower MAE by 2 in every pair: it wins on MAE
    for r in rows:
        if r["route"] == "order-learned":
            r["mae"] = 12.0
    assert verdicts(rows)[0]["mae_verdict"] == "direct mapped"
