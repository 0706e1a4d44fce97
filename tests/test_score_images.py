"""`orderlearn score --images`: files and folders, the good images scored, the bad ones listed
with their reasons, and a non-zero exit when any could not be scored."""
from __future__ import annotations

import csv
import shutil

import pytest

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment

from builders import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "run"
    raw = tiny_config(synthetic_root, out, epochs=1)
    raw["direct_baseline"] = False
    run_experiment(config_from_dict(raw))
    return out


def faces(synthetic_root, n: int):
    return sorted((synthetic_root / "Images").glob("*.jpg"))[:n]


def test_good_images_are_scored_and_bad_ones_listed(run_dir, synthetic_root, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for face in faces(synthetic_root, 3):
        shutil.copy(face, folder / face.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: not collected from a folder
    single = faces(synthetic_root, 4)[3]
    out = tmp_path / "scored.csv"
    code = main(["score", "--run", str(run_dir), "--images", str(folder), str(single), str(tmp_path / "missing.jpg"), "--out", str(out)])
    assert code == 1  # some inputs could not be scored
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == sorted([f.name for f in faces(synthetic_root, 3)] + [single.name])
    assert all(r["true_score"] == "" and 1.0 <= float(r["score"]) <= 5.0 for r in rows)
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "cannot be decoded" in err
    assert "missing.jpg: no such file or folder" in err


def test_a_single_good_file_is_enough(run_dir, synthetic_root, tmp_path):
    out = tmp_path / "one.csv"
    assert main(["score", "--run", str(run_dir), "--images", str(faces(synthetic_root, 1)[0]), "--out", str(out)]) == 0
    assert len(out.read_text().strip().splitlines()) == 2


def test_nothing_scorable_is_an_error(run_dir, tmp_path, capsys):
    assert main(["score", "--run", str(run_dir), "--images", str(tmp_path / "nowhere")]) == 2
    assert "no image could be scored" in capsys.readouterr().err
