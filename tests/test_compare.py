"""``orderlearn compare`` on fabricated run folders: fold grouping, mean ± std against numpy,
the files written, and the errors for runs that must not be averaged together."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import yaml
from scipy import stats

from orderlearn.cli import main
from orderlearn.report.run_folders import read_run
from orderlearn.report.tables import compare_runs
from orderlearn.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """What a run records, computed here with numpy/scipy (independently of orderlearn)."""
    return {
        "pc": float(np.corrcoef(predicted, truth)[0, 1]),
        "mae": float(np.abs(predicted - truth).mean()),
        "rmse": float(np.sqrt(((predicted - truth) ** 2).mean())),
        "spearman": float(stats.spearmanr(predicted, truth)[0]),
        "n": int(truth.size),
    }


def fabricate(folder: Path, name: str, split: str, model: str, task: str, seed: int,
              noise: float, direct_noise: Optional[float]) -> Path:
    """A run folder as `orderlearn run` leaves it: config.yaml, results.json, scores.csv."""
    rng = np.random.default_rng(seed)
    n = 30 + seed % 7  # folds of different sizes
    truth = np.round(rng.uniform(1.2, 4.8, n), 6)
    score = np.round(truth + rng.normal(0, noise, n), 6)
    direct = None if direct_noise is None else np.round(truth + 0.3 + rng.normal(0, direct_noise, n), 6)
    folder.mkdir(parents=True)
    config = {"name": name, "task": task, "output_dir": str(folder), "data": {"kind": "scut", "split": split},
              "model": {"name": model, "args": {}}, "scorer": {"name": "bt-grid", "args": {}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    results = {"name": name, "order_learned": metrics(score, truth)}
    if direct is not None:
        results["direct"] = metrics(direct, truth)
    (folder / "results.json").write_text(json.dumps(results))
    with (folder / "scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_score", "score", "std", "lower95", "upper95", "direct_score"])
        for i in range(n):
            writer.writerow([f"img{i}.jpg", f"{truth[i]:.6f}", f"{score[i]:.6f}", "0.1", "", "",
                             "" if direct is None else f"{direct[i]:.6f}"])
    return folder


@pytest.fixture()
def runs(tmp_path) -> dict[str, list[Path]]:
    """dld: a regressor on all five folds (names without a fold suffix, as -o data.split=foldK);
    siamese: a comparator on folds 1-3 (names with -foldK); bare: a comparator without direct route."""
    dld = [fabricate(tmp_path / f"dld{k}", "dld-scut", f"fold{k}", "dual-label-distribution", "regressor", k, 0.25 + 0.05 * k, 0.4)
           for k in (3, 1, 5, 2, 4)]
    siamese = [fabricate(tmp_path / f"siam{k}", f"siamese-scut-fold{k}", f"fold{k}", "siamese", "comparator", 10 + k, 0.2, 0.35)
               for k in (1, 2, 3)]
    bare = [fabricate(tmp_path / "bare", "bare_fold2", "fold2", "siamese", "comparator", 20, 0.3, None)]
    return {"dld": dld, "siamese": siamese, "bare": bare}


def recorded(paths: list[Path], route: str, metric: str) -> np.ndarray:
    return np.array([json.loads((p / "results.json").read_text())[route][metric] for p in paths])


def test_mean_and_std_over_folds_match_numpy(runs, tmp_path):
    out = tmp_path / "cmp"
    result = compare_runs(runs["dld"] + runs["siamese"] + runs["bare"], out)
    rows = {(r["method"], r["route"]): r for r in result["rows"]}
    assert list(rows) == [("dld-scut", "direct"), ("dld-scut", "order-learned"), ("siamese-scut", "direct"),
                          ("siamese-scut", "order-learned"), ("bare", "order-learned")]
    for method, key in (("dld-scut", "dld"), ("siamese-scut", "siamese")):
        for route, label in (("direct", "direct"), ("order_learned", "order-learned")):
            row = rows[(method, label)]
            for m in ("pc", "mae", "rmse", "spearman"):
                values = recorded(runs[key], route, m)
                assert row[f"{m}_mean"] == pytest.approx(np.mean(values), abs=1e-12)
                assert row[f"{m}_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert rows[("dld-scut", "direct")]["folds"] == "5 (all)" and rows[("dld-scut", "direct")]["n_folds"] == 5
    assert rows[("siamese-scut", "order-learned")]["folds"] == "3 of 5 (fold1, fold2, fold3)"
    assert rows[("dld-scut", "direct")]["how"] == "regressor output"
    assert rows[("siamese-scut", "direct")]["how"] == "embedding head"
    assert rows[("dld-scut", "order-learned")]["n_images"] == sum(30 + k % 7 for k in range(1, 6))
    bare = rows[("bare", "order-learned")]
    assert bare["n_folds"] == 1 and math.isnan(bare["pc_std"])
    assert bare["pc_mean"] == pytest.approx(recorded(runs["bare"], "order_learned", "pc")[0])


def test_files_written(runs, tmp_path):
    out = tmp_path / "cmp"
    compare_runs(runs["dld"] + runs["siamese"] + runs["bare"], out)
    md = (out / "compare.md").read_text()
    pc = recorded(runs["dld"], "order_learned", "pc")
    assert f"{pc.mean():.4f} ± {pc.std(ddof=1):.4f}" in md
    bare_pc = recorded(runs["bare"], "order_learned", "pc")[0]
    assert f"| {bare_pc:.4f} |" in md  # a single fold: its value, no ± nan
    with (out / "compare.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 5 and table[1]["method"] == "dld-scut" and table[1]["route"] == "order-learned"
    assert float(table[1]["pc_mean"]) == pytest.approx(pc.mean()) and float(table[1]["pc_std"]) == pytest.approx(pc.std(ddof=1))
    payload = json.loads((out / "compare.json").read_text())
    dld = payload["methods"][0]
    assert dld["complete"] and dld["folds"] == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    by_fold = sorted(runs["dld"], key=lambda p: p.name)  # dld1..dld5 hold fold1..fold5
    assert dld["routes"]["order_learned"]["pc"]["values"] == pytest.approx(list(recorded(by_fold, "order_learned", "pc")))
    assert not payload["methods"][1]["complete"]
    for name in ("pc.png", "scatter_dld-scut.png", "scatter_siamese-scut.png", "scatter_bare.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name


def test_cli_compare(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compare", *map(str, runs["dld"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dld-scut" in printed and "5 (all)" in printed and (out / "compare.md").is_file()
    assert main(["compare", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "missing config.yaml, results.json, scores.csv" in capsys.readouterr().err


def test_runs_that_must_not_be_averaged_are_errors(runs, tmp_path):
    clash = fabricate(tmp_path / "again", "dld-scut-fold3", "fold3", "dual-label-distribution", "regressor", 40, 0.3, 0.4)
    with pytest.raises(DataError, match="two runs on fold3"):
        compare_runs(runs["dld"] + [clash], tmp_path / "x")
    lying = fabricate(tmp_path / "lying", "dld-scut-fold2", "fold4", "dual-label-distribution", "regressor", 41, 0.3, 0.4)
    with pytest.raises(DataError, match="says fold2 but data.split is 'fold4'"):
        read_run(lying)
    other_model = fabricate(tmp_path / "other", "dld-scut", "fold6", "plain", "regressor", 42, 0.3, 0.4)
    with pytest.raises(DataError, match="differ in model.name"):
        compare_runs(runs["dld"] + [other_model], tmp_path / "x")
    stale = runs["siamese"][0]
    results = json.loads((stale / "results.json").read_text())
    results["order_learned"]["mae"] += 0.01  # a results.json that does not describe its scores.csv
    (stale / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="order_learned mae"):
        read_run(stale)


def test_a_scorer_option_newer_than_a_run_counts_as_its_default(runs, tmp_path):
    """A run saved before a scorer option existed ran as its default: folds saved before and after
    the option was added still average; a fold that set it otherwise does not."""
    def with_scorer(path: Path, **options) -> Path:
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["scorer"].update(options)
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        return path

    old, new = runs["dld"][0], with_scorer(runs["dld"][1], calibrate_references=False)
    assert compare_runs([old, new], tmp_path / "mixed")  # absent == default
    with_scorer(new, calibrate_references=True)
    with pytest.raises(DataError, match="differ in scorer.calibrate_references"):
        compare_runs([old, new], tmp_path / "differs")


def test_a_row_over_folds_names_their_common_command_not_one_folds():
    from orderlearn.report.tables import shared_command
    one = "orderlearn run --config c.yaml"
    assert shared_command([one, one]) == one
    per_fold = [f"orderlearn run --config c.yaml -o data.split=fold{k} -o output_dir=runs/m/fold{k}" for k in (1, 2)]
    assert shared_command(per_fold) == "orderlearn run --config c.yaml -o data.split=foldK -o output_dir=runs/m/foldK"
    assert shared_command([one, "orderlearn run --config d.yaml"]) == ""  # different runs: no command
    assert shared_command([one, ""]) == ""  # a fold that recorded none


def test_a_table_grows_method_by_method_with_the_earlier_rows_kept(runs, tmp_path):
    """--with-table: the earlier table's other methods are kept verbatim and in place; a method
    with runs here replaces its old rows; the markdown says which rows were kept and from where."""
    first = tmp_path / "first"
    compare_runs(runs["dld"] + runs["bare"], first)
    earlier = list(csv.DictReader((first / "compare.csv").open(newline="")))
    grown = tmp_path / "grown"
    result = compare_runs(runs["siamese"] + runs["bare"], grown, with_table=first / "compare.csv")
    table = list(csv.DictReader((grown / "compare.csv").open(newline="")))
    assert [(r["method"], r["route"]) for r in table] == [
        ("dld-scut", "direct"), ("dld-scut", "order-learned"), ("bare", "order-learned"),
        ("siamese-scut", "direct"), ("siamese-scut", "order-learned")]
    assert table[:2] == earlier[:2]  # kept as written, cell for cell
    assert result["kept"]["methods"] == ["dld-scut"]
    md = (grown / "compare.md").read_text()
    assert "Kept from" in md and "dld-scut" in md.split("Kept from")[1] and "bare" not in md.split("Kept from")[1]
    pc = recorded(runs["dld"], "order_learned", "pc")
    assert f"{pc.mean():.4f} ± {pc.std(ddof=1):.4f}" in md
    assert not (grown / "scatter_dld-scut.png").exists() and (grown / "scatter_siamese-scut.png").is_file()
    assert main(["compare", *map(str, runs["bare"]), "--out", str(tmp_path / "cli"),
                 "--with-table", str(grown / "compare.csv")]) == 0


def test_a_table_that_compare_did_not_write_is_refused_before_any_run_is_read(runs, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("method,route,pc\nx,direct,0.9\n")
    with pytest.raises(DataError, match=r"bad.csv: not a compare.csv: missing column\(s\) model"):
        compare_runs([tmp_path / "nowhere"], tmp_path / "x", with_table=bad)
    first = tmp_path / "first"
    compare_runs(runs["dld"], first)
    lines = (first / "compare.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("pc_mean")] = "high"
    bad.write_text("\n".join([lines[0], lines[1], ",".join(cells)]) + "\n")
    with pytest.raises(DataError, match=r"bad.csv:3: column pc_mean: 'high' is not a number"):
        compare_runs(runs["bare"], tmp_path / "x", with_table=bad)
    with pytest.raises(DataError, match=r"table .*absent.csv does not exist \(--with-table takes a compare.csv\)"):
        compare_runs(runs["bare"], tmp_path / "x", with_table=tmp_path / "absent.csv")
