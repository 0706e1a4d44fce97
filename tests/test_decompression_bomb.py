"""Issue 31, case 9: one photo over PIL's decompression-bomb limit used to abort ``predict`` (a
traceback, the good photos unscored). It is now one unreadable photo among the others: listed
with its reason (stderr, ``--json``'s ``failed``), the rest scored; ``score --images`` the same.
The limit is lowered for the test, so a small picture stands in for a huge one."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from orderlearn.cli import main
from orderlearn.data.images import load_image
from orderlearn.errors import DataError

from builders import tiny_comparator_run

pytestmark = pytest.mark.usefixtures("one_thread")
LIMIT = 5000  # pixels (a 64 px synthetic face has 4096): PIL refuses pictures over twice its MAX_IMAGE_PIXELS, warns over it


@pytest.fixture(scope="module")
def run_dir(synthetic_root, tmp_path_factory) -> Path:
    return tiny_comparator_run(synthetic_root, tmp_path_factory.mktemp("bomb") / "run")


@pytest.fixture
def photos(synthetic_root, tmp_path) -> Path:
    """A folder of two synthetic faces (64 px: under the limit) and one 'bomb' (120 x 120 = 14400 pixels)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for face in sorted((synthetic_root / "Images").glob("*.jpg"))[:2]:
        shutil.copy(face, folder / face.name)
    Image.new("RGB", (120, 120), (90, 60, 40)).save(folder / "huge.png")
    return folder


@pytest.fixture
def low_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)


def test_the_decoder_refuses_a_bomb_as_a_data_error_naming_it(photos, low_limit):
    with pytest.raises(DataError, match=r"huge\.png is too large to decode safely \(Image size \(14400 pixels\) exceeds"):
        load_image(photos / "huge.png")
    assert load_image(next(photos.glob("*.jpg"))).size == (64, 64)


def test_over_the_warning_limit_as_an_error_is_refused_too(photos, monkeypatch):
    """A user running with warnings as errors gets PIL's warning as an exception: the same refusal."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8000)  # 14400 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(DataError, match=r"huge\.png is too large to decode safely"):
            load_image(photos / "huge.png")


def test_predict_scores_the_others_and_lists_the_bomb(run_dir, photos, low_limit, tmp_path, capsys):
    code = main(["predict", str(photos), "--model", str(run_dir), "--align", "none",
                 "--csv", str(tmp_path / "p.csv"), "--json", str(tmp_path / "p.json")])
    assert code == 1  # one photo was not scored
    with (tmp_path / "p.csv").open(newline="") as handle:
        scored = sorted(Path(r["file"]).name for r in csv.DictReader(handle))
    assert scored == sorted(p.name for p in photos.glob("*.jpg"))
    failed = json.loads((tmp_path / "p.json").read_text())["failed"]
    assert [Path(f["file"]).name for f in failed] == ["huge.png"] and "too large to decode safely" in failed[0]["reason"]
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]  # not the progress bars
    assert len(err) == 1 and err[0].startswith("error: not scored: ") and "huge.png" in err[0]


def test_score_images_scores_the_others_and_lists_the_bomb(run_dir, photos, low_limit, tmp_path, capsys):
    out = tmp_path / "scored.csv"
    assert main(["score", "--run", str(run_dir), "--images", str(photos), "--out", str(out)]) == 1
    with out.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]  # not the progress bars
    assert len(err) == 1 and "huge.png" in err[0] and "too large to decode safely" in err[0]


def test_a_symbolic_link_loop_among_the_photos_says_so(run_dir, photos, tmp_path, capsys):
    """Case 18: a loop given as a photo was 'no such file or folder'."""
    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert main(["predict", str(photos / "huge.png"), str(tmp_path / "a.jpg"), "--model", str(run_dir), "--align", "none"]) == 1
    err = capsys.readouterr().err
    assert f"error: not scored: {tmp_path / 'a.jpg'}: a symbolic link loop" in err
