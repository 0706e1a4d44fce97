"""Readers: SCUT-FBP5500 (real and synthetic), ratings files, manifests, HF bridge, errors."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from orderlearn.data import manifest

from orderlearn.data import scut
from orderlearn.config import DataConfig
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import ConfigError, DataError
from orderlearn.data.images import load_image


@pytest.mark.real_data
def test_real_scut_fold1_and_60_40(scut_root):
    train, test = scut.read_split(scut_root, "fold1")
    assert (len(train), len(test)) == (4400, 1100)
    assert not {s.name for s in train} & {s.name for s in test}
    train64, test64 = scut.read_split(scut_root, "60-40")
    assert (len(train64), len(test64)) == (3300, 2200)
    sample = next(s for s in train if s.rating_counts)
    counts = sample.rating_counts
    assert sum(counts) == 60
    mean = sum((i + 1) * c for i, c in enumerate(counts)) / sum(counts)
    assert mean == pytest.approx(sample.score, abs=1e-5)
    assert sample.group in scut.GROUPS and sample.gender in ("female", "male")


@pytest.mark.real_data
def test_real_rater_spreadsheet_matches_counts(scut_root):
    per_rater = scut.read_ratings(scut_root / "ratings" / "CM_Ratings.xlsx")
    counts = scut.read_ratings(scut_root / "ratings" / "rating_distribution.csv")
    assert len(per_rater) == 750 and all(name.startswith("CM") for name in per_rater)
    assert all(per_rater[name] == counts[name] for name in per_rater)
    train, _ = scut.read_split(scut_root, "fold1", ratings=scut_root / "ratings" / "CM_Ratings.xlsx")
    cm = [s for s in train if s.group == "CM"]
    assert all(s.rating_counts is not None for s in cm)
    assert all(s.rating_counts is None for s in train if s.group != "CM")


def test_synthetic_layout_reads_like_scut(synthetic_root):
    train, test = scut.read_split(synthetic_root, "fold2")
    assert len(train) + len(test) == 200 and len(test) == 40
    assert all(s.rating_counts and s.std is not None for s in train)
    assert {s.group for s in train} <= set(scut.GROUPS)


def copy_dataset(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(root, target)
    return target


def test_missing_image_names_split_file_and_line(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path)
    train_file, _ = scut.split_files(root, "fold1")
    victim = train_file.read_text().splitlines()[2].split()[0]
    (root / "Images" / victim).unlink()
    with pytest.raises(DataError, match=rf"train_1.txt:3: image .*{victim} is listed but does not exist"):
        scut.read_split(root, "fold1")


def test_unreadable_jpeg_names_file(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path)
    victim = root / "Images" / "AF1.jpg"
    victim.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"AF1.jpg cannot be decoded"):
        load_image(victim)


def test_ratings_row_without_positive_count(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path)
    ratings = root / "ratings" / "rating_distribution.csv"
    lines = ratings.read_text().splitlines()
    name = lines[5].split(",")[0]
    lines[5] = f"{name},0,0,0,0,0"
    ratings.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"rating_distribution.csv:6: counts .* of {name} do not sum to a positive count"):
        scut.read_split(root, "fold1")


def test_empty_split_is_an_error(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path)
    _, test_file = scut.split_files(root, "fold3")
    test_file.write_text("")
    with pytest.raises(DataError, match="test_3.txt lists no images"):
        scut.read_split(root, "fold3")


def test_unknown_split_name():
    with pytest.raises(ConfigError, match="data.split: 'fold9' is not a SCUT-FBP5500 split"):
        scut.split_files("/nowhere", "fold9")


def test_validation_carved_from_train_and_test_untouched(synthetic_root):
    config = DataConfig(kind="scut", root=str(synthetic_root), split="fold1", val_fraction=0.25, val_seed=3)
    splits = load_training(config)
    test = load_test(config)
    train_names, val_names = {s.name for s in splits.train}, {s.name for s in splits.val}
    assert len(val_names) == 40 and len(train_names) == 120
    assert not train_names & val_names
    assert not (train_names | val_names) & {s.name for s in test}
    again = load_training(config)
    assert [s.name for s in again.val] == [s.name for s in splits.val]


def write_manifest(tmp_path: Path, root: Path, rows: list[dict]) -> Path:
    import csv

    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_csv_jsonl_and_folds(synthetic_root, tmp_path):
    images = sorted((synthetic_root / "Images").glob("*.jpg"))[:10]
    rows = [{"path": str(p), "score": 20 + i, "gender": "f" if i % 2 else "m", "fold": 1 + i % 5, "camera": "x"} for i, p in enumerate(images)]
    samples = manifest.read_manifest(write_manifest(tmp_path, synthetic_root, rows))
    assert [s.score for s in samples] == [20.0 + i for i in range(10)]
    assert samples[1].gender == "female" and samples[0].gender == "male"
    assert samples[0].extras["camera"] == "x"
    parts = manifest.split_manifest(samples, test_fold=2)
    assert len(parts.test) == 2 and len(parts.train) == 8 and parts.val == []
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps({"path": str(p), "score": 3.5, "rating_counts": [0, 1, 2, 3, 4]}) for p in images))
    js = manifest.read_manifest(jsonl)
    assert js[0].rating_counts == (0, 1, 2, 3, 4)


def test_manifest_errors_name_the_row(synthetic_root, tmp_path):
    image = next((synthetic_root / "Images").glob("*.jpg"))
    bad = write_manifest(tmp_path, synthetic_root, [{"path": str(image), "score": "high"}])
    with pytest.raises(DataError, match=r"manifest.csv:2: score 'high' is not a number"):
        manifest.read_manifest(bad)
    missing = write_manifest(tmp_path, synthetic_root, [{"path": "nope.jpg", "score": 1}])
    with pytest.raises(DataError, match=r"manifest.csv:2: image .*nope.jpg is listed but does not exist"):
        manifest.read_manifest(missing)


def test_hf_datasets_bridge_round_trip(synthetic_root, tmp_path):
    train, _ = scut.read_split(synthetic_root, "fold1")
    dataset = manifest.to_hf_dataset(train[:5])
    back = manifest.from_hf_dataset(dataset, tmp_path / "hf")
    assert [s.score for s in back] == [s.score for s in train[:5]]
    assert all(s.path.is_file() for s in back)
    assert load_image(back[0].path).size == load_image(train[0].path).size


def test_rating_std_matches_definition():
    counts = (1, 0, 2, 0, 1)  # ratings 1, 3, 3, 5: mean 3, variance (4 + 0 + 0 + 4) / 4 = 2
    assert scut.rating_std(counts) == pytest.approx(math.sqrt(2))
