"""Another definition of a face's score on the same images (``data.score_definition``) and groups
by gender (``data.group_by``): what the new-scale and other-population protocols read."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from orderlearn.config import DataConfig, config_from_dict
from orderlearn.data import scut
from orderlearn.data.splits import load_run_data
from orderlearn.errors import ConfigError, DataError

from builders import synthetic_data


def _data(root: Path, **overrides) -> DataConfig:
    return config_from_dict({"output_dir": "unused", "data": synthetic_data(root, **overrides)}).data


def test_high_share_is_the_percentage_of_ratings_four_or_five(synthetic_root):
    counts = scut.read_ratings(scut.resolve_ratings(synthetic_root, "auto"))
    data = load_run_data(_data(synthetic_root, score_definition="high_share", score_low=0, score_high=100))
    samples = data.training.train + data.training.val + data.test
    assert samples
    for sample in samples:
        c = counts[sample.name]
        assert sample.score == pytest.approx(100.0 * (c[3] + c[4]) / sum(c))
        assert sample.std is None
    assert len({s.score for s in samples}) > 5  # a real scale, not a constant
    mean = load_run_data(_data(synthetic_root))
    assert [s.name for s in mean.test] == [s.name for s in data.test]  # the same faces, scored otherwise


def test_high_share_needs_a_percentage_range_and_ratings(synthetic_root):
    with pytest.raises(ConfigError, match=r"^data.score_definition: bad value 'high_share'"):
        _data(synthetic_root, score_definition="high_share")  # the 1..5 range cannot hold 0..100
    with pytest.raises(ConfigError, match=r"^data.score_definition: bad value 'high_share'"):
        _data(synthetic_root, score_definition="high_share", score_low=0, score_high=100, ratings=None)
    with pytest.raises(ConfigError, match=r"data.score_definition"):
        _data(synthetic_root, score_definition="median")


def test_high_share_names_an_image_without_ratings(synthetic_root, tmp_path):
    counts_file = tmp_path / "ratings.csv"
    rows = list(csv.reader((synthetic_root / "ratings" / "rating_distribution.csv").open()))
    dropped = rows.pop(5)[0]
    with counts_file.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    config = _data(synthetic_root, score_definition="high_share", score_low=0, score_high=100, ratings=str(counts_file))
    with pytest.raises(DataError, match=rf"score_definition: high_share needs .*for {dropped}"):
        load_run_data(config)


def test_groups_by_gender(synthetic_root):
    data = load_run_data(_data(synthetic_root, group_by="gender", train_groups=["female"], test_groups=["male"]))
    assert {s.gender for s in data.training.train + data.training.val} == {"female"}
    assert {s.gender for s in data.test} == {"male"}
    with pytest.raises(ConfigError, match=r"^data.test_groups: no image of gender \['other'\]"):
        load_run_data(_data(synthetic_root, group_by="gender", test_groups=["other"]))
    with pytest.raises(ConfigError, match=r"data.group_by"):
        _data(synthetic_root, group_by="ethnicity")
