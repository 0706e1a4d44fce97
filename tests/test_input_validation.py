"""Bad input never passes silently: every case is a one-line DataError naming the file and line
(or the config key), raised when the data are read, before any training.

Datasets are built by hand in ``tmp_path`` (a few 8×8 JPEGs in the SCUT-FBP5500 layout, or a
manifest); run folders for ``compare`` and ``evaluate`` are fabricated (config.yaml,
results.json, scores.csv), so nothing here trains.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import socket
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import yaml
from PIL import Image

from orderlearn.cli import main
from orderlearn.report.run_folders import read_run
from orderlearn.report.tables import compare_runs
from orderlearn.config import DataConfig
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.data.pairs import sample_pairs

# ---------------------------------------------------------------------------- dataset builders


def write_image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade % 256, (3 * shade) % 256, (7 * shade) % 256)).save(path, "JPEG")


def scut_layout(root: Path, train: list[str], test: list[str]) -> Path:
    """A SCUT-FBP5500 folder whose fold-1 list files hold the given "name score" lines."""
    folder = root / "train_test_files" / "5_folders_cross_validations_files" / "cross_validation_1"
    folder.mkdir(parents=True)
    names = {line.split()[0] for line in train + test}
    for i, name in enumerate(sorted(names)):
        write_image(root / "Images" / name, 10 * i + 5)
    (folder / "train_1.txt").write_text("\n".join(train) + "\n")
    (folder / "test_1.txt").write_text("\n".join(test) + "\n")
    return root


def good_train(n: int = 12) -> list[str]:
    return [f"AF{i}.jpg {1.0 + 4.0 * (i - 1) / (n - 1):.6f}" for i in range(1, n + 1)]


def good_test() -> list[str]:
    return ["CM1.jpg 2.5", "CM2.jpg 3.5", "CM3.jpg 4.0"]


def scut_config(root: Path, **kwargs) -> DataConfig:
    return DataConfig(kind="scut", root=str(root), split="fold1", ratings=None, val_fraction=0.25, **kwargs)


def write_manifest(path: Path, rows: list[dict], shade_offset: int = 0) -> Path:
    """A CSV manifest; each row's image is written beside it (unless it exists)."""
    for i, row in enumerate(rows):
        image = path.parent / row["path"]
        if not image.exists():
            write_image(image, 13 * i + shade_offset)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def manifest_config(path: Path, split: str = "split", **kwargs) -> DataConfig:
    return DataConfig(kind="manifest", root=str(path), split=split, val_fraction=0.25, **kwargs)


def split_rows(n_train: int = 10, n_val: int = 3, n_test: int = 3) -> list[dict]:
    rows = []
    for part, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows += [{"path": f"img/{part}{i}.jpg", "score": f"{1.0 + (i % 5) * 0.9:.2f}", "split": part} for i in range(n)]
    return rows


# ---------------------------------------------------------------------------- 4 and 11: non-finite scores


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_test_score_fails_when_training_data_are_read(tmp_path, bad):
    """Case 4: a NaN test score used to give exit 0 with every metric nan; now it stops the run
    at load_training, before any training, naming the test file and line."""
    root = scut_layout(tmp_path / "scut", good_train(), ["CM1.jpg 2.5", f"CM2.jpg {bad}", "CM3.jpg 4.0"])
    with pytest.raises(DataError, match=rf"test_1.txt:2: score '{bad}' is not a finite number"):
        load_training(scut_config(root))
    with pytest.raises(DataError, match=r"test_1.txt:2: score"):
        load_test(scut_config(root))


def test_non_finite_train_score_names_file_and_line(tmp_path):
    """Case 11: NaN in a train row was a bare AssertionError in pairs.py; inf failed after training."""
    train = good_train()
    train[2] = "AF3.jpg nan"
    root = scut_layout(tmp_path / "scut", train, good_test())
    with pytest.raises(DataError, match=r"train_1.txt:3: score 'nan' is not a finite number"):
        load_training(scut_config(root))


def test_non_finite_scores_in_synthetic_layout_copy(synthetic_root, tmp_path):
    """The generator writes the SCUT layout: its files go through the same reader and checks."""
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    train_file = root / "train_test_files" / "5_folders_cross_validations_files" / "cross_validation_1" / "train_1.txt"
    lines = train_file.read_text().splitlines()
    lines[4] = lines[4].split()[0] + " inf"
    train_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train_1.txt:5: score 'inf' is not a finite number"):
        load_training(DataConfig(kind="scut", root=str(root), split="fold1"))


def test_non_finite_manifest_scores_csv_and_jsonl(tmp_path):
    rows = split_rows()
    rows[4]["score"] = "inf"  # a train row
    path = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataError, match=r"manifest.csv:6: score 'inf' is not a finite number"):
        load_training(manifest_config(path))
    jsonl = tmp_path / "manifest.jsonl"
    records = [{"path": r["path"], "score": float(r["score"]), "split": r["split"]} for r in split_rows()]
    records[-1]["score"] = float("nan")  # a test row; json writes NaN, json.loads reads it back
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(DataError, match=rf"manifest.jsonl:{len(records)}: score nan is not a finite number"):
        load_training(manifest_config(jsonl))


def test_pairs_refuse_non_finite_scores_with_a_value_error():
    """Readers stop NaN first; the pair sampler still says what is wrong instead of asserting."""
    with pytest.raises(ValueError, match=r"1 of 4 scores are not finite \(first at index 2: nan\)"):
        sample_pairs([1.0, 2.0, float("nan"), 4.0], total=6)


def test_three_row_manifest_says_how_many_images_and_what_is_needed(tmp_path):
    """Case 11: a 3-row manifest said `need at least two images to make pairs, got 0`."""
    rows = [{"path": "a.jpg", "score": "1.5", "split": "train"}, {"path": "b.jpg", "score": "3.5", "split": "train"},
            {"path": "c.jpg", "score": "2.0", "split": "test"}]
    path = write_manifest(tmp_path / "manifest.csv", rows)
    message = (r"2 training images with data.val_fraction=0.1 leave 2 for training and 0 for validation; "
               r"need at least 2 in each")
    with pytest.raises(DataError, match=message):
        load_training(DataConfig(kind="manifest", root=str(path), split="split", val_fraction=0.1))


def test_given_validation_split_too_small(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", split_rows(n_val=1))
    with pytest.raises(DataError, match=r"manifest.csv: the val rows give 1 validation image; need at least 2"):
        load_training(manifest_config(path))


# ---------------------------------------------------------------------------- 5: given validation split, bad split/fold values


def test_manifest_val_rows_are_the_validation_split(tmp_path, capsys):
    """Case 5: `val` rows were silently dropped; they are the validation split now (and it says so)."""
    path = write_manifest(tmp_path / "manifest.csv", split_rows(n_train=10, n_val=3, n_test=3))
    splits = load_training(manifest_config(path))
    assert sorted(s.name for s in splits.val) == ["val0.jpg", "val1.jpg", "val2.jpg"]
    assert sorted(s.name for s in splits.train) == [f"train{i}.jpg" for i in range(10)]
    assert "validation: 3 images from the manifest's val rows" in capsys.readouterr().out
    assert sorted(s.name for s in load_test(manifest_config(path))) == ["test0.jpg", "test1.jpg", "test2.jpg"]


@pytest.mark.parametrize("value", ["valid", "tset", ""])
def test_unknown_split_value_names_the_line(tmp_path, value):
    rows = split_rows()
    rows[11]["split"] = value
    path = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataError, match=rf"manifest.csv:13: split '{value}' is not one of train, val, test"):
        load_training(manifest_config(path))


@pytest.mark.parametrize("value", ["x", "0", "-1", "2.5"])
def test_bad_fold_value_names_the_line(tmp_path, value):
    rows = [{"path": f"img/{i}.jpg", "score": f"{1 + i * 0.2:.1f}", "fold": str(1 + i % 3)} for i in range(12)]
    rows[7]["fold"] = value
    path = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataError, match=rf"manifest.csv:9: fold '{value}' is not a positive integer"):
        load_training(manifest_config(path, split="fold1"))


# ---------------------------------------------------------------------------- 6: duplicates, train/test overlap


def test_duplicate_name_in_a_split_file(tmp_path):
    train = good_train()
    train.append("AF2.jpg 4.9")  # the same face again with another score
    root = scut_layout(tmp_path / "scut", train, good_test())
    with pytest.raises(DataError, match=r"train_1.txt:13: image .*AF2.jpg is listed twice \(first at .*train_1.txt:2\)"):
        load_training(scut_config(root))


def test_train_test_overlap_in_scut_lists(tmp_path):
    """Case 6: a test image in the training list would enter the reference bank."""
    root = scut_layout(tmp_path / "scut", good_train(), ["CM1.jpg 2.5", "AF4.jpg 2.1"])
    with pytest.raises(DataError, match=r"test_1.txt:2: image .*AF4.jpg is listed twice \(first at .*train_1.txt:4\)"):
        load_training(scut_config(root))
    with pytest.raises(DataError, match=r"listed twice"):
        load_test(scut_config(root))


def test_duplicate_path_in_manifest_even_spelled_differently(tmp_path):
    rows = split_rows()
    path = write_manifest(tmp_path / "manifest.csv", rows)
    rows.append({"path": "img/../img/train3.jpg", "score": "2.0", "split": "test"})  # train3 again, as a test image
    write_manifest(path, rows)
    with pytest.raises(DataError, match=rf"manifest.csv:{len(rows) + 1}: image .*train3.jpg is listed twice \(first at .*manifest.csv:5\)"):
        load_training(manifest_config(path))


def test_same_content_under_two_names_in_train_and_test(tmp_path):
    root = scut_layout(tmp_path / "scut", good_train(), good_test())
    shutil.copyfile(root / "Images" / "AF5.jpg", root / "Images" / "CM2.jpg")  # the test face CM2 is train's AF5
    with pytest.raises(DataError, match=r"test image .*CM2.jpg has the same content as training image .*AF5.jpg"):
        load_training(scut_config(root))


def test_same_content_error_names_the_duplicates_option(tmp_path):
    root = scut_layout(tmp_path / "scut", good_train(), good_test())
    shutil.copyfile(root / "Images" / "AF5.jpg", root / "Images" / "CM2.jpg")
    shutil.copyfile(root / "Images" / "AF6.jpg", root / "Images" / "CM3.jpg")
    with pytest.raises(DataError, match=r"2 such groups in .*data.duplicates: drop-training-copies"):
        load_training(scut_config(root))


def test_drop_training_copies_keeps_the_test_split_and_says_what_it_dropped(tmp_path, capsys):
    """A real set (All-Age-Faces) has byte-identical faces under two serial numbers; the policy
    drops the training copy of a test face and all but the first of repeated training copies."""
    root = scut_layout(tmp_path / "scut", good_train(), good_test())
    images = root / "Images"
    shutil.copyfile(images / "CM2.jpg", images / "AF5.jpg")  # training AF5 is test face CM2
    shutil.copyfile(images / "AF7.jpg", images / "AF9.jpg")  # AF9 repeats AF7 inside training
    shutil.copyfile(images / "AF7.jpg", images / "AF10.jpg")  # and so does AF10
    config = scut_config(root, duplicates="drop-training-copies")
    splits = load_training(config)
    kept = sorted(s.path.name for s in splits.train + splits.val)
    assert kept == sorted({f"AF{i}.jpg" for i in range(1, 13)} - {"AF5.jpg", "AF9.jpg", "AF10.jpg"})
    assert [s.path.name for s in load_test(config)] == ["CM1.jpg", "CM2.jpg", "CM3.jpg"]
    said = capsys.readouterr().out
    assert "dropped 1 training/validation image(s) with a test image's content and 2 repeated training copies" in said
    assert "AF5.jpg = CM2.jpg" in said


def test_duplicates_option_is_checked_on_load(tmp_path):
    from orderlearn.config import load_config
    from orderlearn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.duplicates"):
        load_config(Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "demo.yaml", ["data.duplicates=drop"])


# ---------------------------------------------------------------------------- 7: scores outside the task's range


@pytest.mark.parametrize("part,line,bad", [("train", 3, "7.5"), ("test", 2, "-2")])
def test_score_outside_range_names_the_range_keys(tmp_path, part, line, bad):
    train, test = good_train(), good_test()
    rows = train if part == "train" else test
    rows[line - 1] = rows[line - 1].split()[0] + f" {bad}"
    root = scut_layout(tmp_path / "scut", train, test)
    with pytest.raises(DataError, match=rf"{part}_1.txt:{line}: score {float(bad)} is outside "
                                        r"data.score_low..data.score_high = 1.0..5.0"):
        load_training(scut_config(root))


def test_manifest_score_outside_range(tmp_path):
    rows = [{**row, "score": str(float(row["score"]) + 20)} for row in split_rows()]  # ages 21..24.6
    rows[0]["score"] = "80"
    path = write_manifest(tmp_path / "manifest.csv", rows)
    ages = manifest_config(path, score_low=16.0, score_high=77.0)
    with pytest.raises(DataError, match=r"manifest.csv:2: score 80.0 is outside data.score_low..data.score_high = 16.0..77.0"):
        load_training(ages)
    rows[0]["score"] = "77"  # the bounds themselves are in range
    write_manifest(path, rows)
    assert min(s.score for s in load_training(ages).train) > 16 and len(load_test(ages)) == 3


# ---------------------------------------------------------------------------- 3: compare pools only the same experiment


def fabricate_run(folder: Path, split: str, seed: int, data: Optional[dict] = None, model: Optional[dict] = None,
                  scorer: Optional[dict] = None, task: str = "comparator") -> Path:
    """A finished run folder (config.yaml, results.json, scores.csv) of method `m`."""
    rng = np.random.default_rng(seed)
    truth = np.round(rng.uniform(1.2, 4.8, 20), 6)
    score = np.round(truth + rng.normal(0, 0.3, 20), 6)
    folder.mkdir(parents=True)
    config = {"name": "m", "task": task,
              "data": {"kind": "scut", "root": "/data/scut", "split": split, "score_low": 1.0, "score_high": 5.0, **(data or {})},
              "model": model or {"name": "siamese", "args": {"backbone": "mobilenetv2_100"}},
              "scorer": scorer or {"name": "bt-grid", "args": {}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    pc = float(np.corrcoef(score, truth)[0, 1])
    mae, rmse = float(np.abs(score - truth).mean()), float(np.sqrt(((score - truth) ** 2).mean()))
    (folder / "results.json").write_text(json.dumps({"order_learned": {"pc": pc, "mae": mae, "rmse": rmse, "spearman": pc, "n": 20}}))
    with (folder / "scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_score", "score", "std", "lower95", "upper95", "direct_score"])
        for i in range(20):
            writer.writerow([f"img{i}.jpg", f"{truth[i]:.6f}", f"{score[i]:.6f}", "0.1", "", "", ""])
    return folder


@pytest.mark.parametrize("change,key", [
    ({"data": {"kind": "synthetic", "root": None}}, "data.kind"),
    ({"data": {"root": "/data/other"}}, "data.root"),
    ({"data": {"score_high": 10.0}}, "data.score_high"),
    ({"model": {"name": "siamese", "args": {"backbone": "resnet18"}}}, "model.args.backbone"),
    ({"model": {"name": "siamese", "args": {"backbone": "mobilenetv2_100", "image_size": 160}}}, "model.args.image_size"),
    ({"scorer": {"name": "bt-grid", "args": {"step": 0.002}}}, "scorer.args.step"),
    ({"scorer": {"name": "bt-exact", "args": {}}}, "scorer.name"),
    ({"task": "regressor"}, "task"),
])
def test_compare_refuses_to_pool_different_experiments(tmp_path, change, key):
    """Case 3: a SCUT run and a synthetic run (or two backbones) were averaged as two folds."""
    first = fabricate_run(tmp_path / "a", "fold1", 1)
    second = fabricate_run(tmp_path / "b", "fold2", 2, **change)
    with pytest.raises(DataError, match=rf"runs of method 'm' differ in {key}: .* in {re.escape(str(first))} but .* in {re.escape(str(second))}"):
        compare_runs([first, second], tmp_path / "out")


def test_compare_pools_folds_that_differ_only_in_the_fold(tmp_path):
    runs = [fabricate_run(tmp_path / f"r{k}", f"fold{k}", k) for k in (1, 2, 3)]
    result = compare_runs(runs, tmp_path / "out")
    assert [r["n_folds"] for r in result["rows"]] == [3]


# ---------------------------------------------------------------------------- 12: reading scores CSVs


def write_scores(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


SCORED_HEADER = ["path", "true_score", "score", "std", "lower95", "upper95"]


def test_evaluate_on_folder_scoring_output_says_truth_is_missing(tmp_path, capsys):
    """Case 12: `orderlearn score --images` leaves true_score empty; evaluate said
    `could not convert string to float: ''`."""
    scored = write_scores(tmp_path / "scored.csv", SCORED_HEADER,
                          [[f"x{i}.jpg", "", f"{2 + i * 0.1:.6f}", "0.2", "1.8", "2.9"] for i in range(4)])
    assert main(["evaluate", "--scores", str(scored)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {scored}: true_score is empty on every row") and "\n" not in err


def test_evaluate_names_row_and_column_of_a_bad_cell(tmp_path, capsys):
    rows = [[f"x{i}.jpg", f"{1 + i * 0.3:.6f}", f"{1.1 + i * 0.3:.6f}", "", "", "", f"{1.2 + i * 0.3:.6f}"] for i in range(5)]
    rows[2][2] = "abc"
    path = write_scores(tmp_path / "scores.csv", SCORED_HEADER + ["direct_score"], rows)
    assert main(["evaluate", "--scores", str(path)]) == 2
    assert f"error: {path}:4: score 'abc' is not a number" in capsys.readouterr().err
    rows[2][2] = "1.7"
    rows[3][6] = ""  # an empty direct_score in a later row
    write_scores(path, SCORED_HEADER + ["direct_score"], rows)
    assert main(["evaluate", "--scores", str(path)]) == 2
    assert f"error: {path}:5: direct_score is empty, but filled on line 2" in capsys.readouterr().err
    rows[3][6] = "2.0"
    write_scores(path, SCORED_HEADER + ["direct_score"], rows)
    assert main(["evaluate", "--scores", str(path), "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"order_learned", "direct"} and metrics["direct"]["n"] == 5


def test_read_scores_csv_without_truth(tmp_path):
    from orderlearn.report.scores_csv import read_scores_csv

    scored = write_scores(tmp_path / "scored.csv", SCORED_HEADER, [["x.jpg", "", "2.5", "", "", ""], ["y.jpg", "", "3.5", "", "", ""]])
    table = read_scores_csv(scored, require_truth=False)
    assert table.truth is None and table.scores.tolist() == [2.5, 3.5] and table.direct is None
    with pytest.raises(DataError, match="true_score is empty on every row"):
        read_scores_csv(scored)


def test_compare_names_row_of_a_bad_scores_cell(tmp_path):
    run = fabricate_run(tmp_path / "a", "fold1", 1)
    lines = (run / "scores.csv").read_text().splitlines()
    cells = lines[6].split(",")
    cells[1] = "n/a"
    lines[6] = ",".join(cells)
    (run / "scores.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"scores.csv:7: true_score 'n/a' is not a number"):
        read_run(run)


# ---------------------------------------------------------------------------- 14: no weights offline, fast


@pytest.fixture
def no_network(monkeypatch):
    """Every host lookup fails (as on a machine without network); the list counts the lookups."""
    lookups: list[str] = []

    def fail(host, *args, **kwargs):
        lookups.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    return lookups


def test_offline_env_fails_without_touching_the_network(monkeypatch, no_network):
    """HF_HUB_OFFLINE set after huggingface_hub was imported is still respected."""
    import huggingface_hub.constants

    from comparators.backbones import WeightsNotFoundError, create_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsNotFoundError, match=r"no ImageNet weights for backbone 'resnet18': .*weights: random.*HF_HUB_OFFLINE"):
        create_backbone("resnet18", "imagenet")
    assert no_network == []


def test_unreachable_hub_is_probed_once(monkeypatch, no_network):
    """Without HF_HUB_OFFLINE and without network: one short probe, then the message (no retries)."""
    import huggingface_hub.constants

    from comparators.backbones import WeightsNotFoundError, create_backbone

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsNotFoundError, match=r"no ImageNet weights for backbone 'resnet18': .*not reachable"):
        create_backbone("resnet18", "imagenet")
    assert len(no_network) == 1, no_network
    assert not huggingface_hub.constants.HF_HUB_OFFLINE  # the offline switch was put back
