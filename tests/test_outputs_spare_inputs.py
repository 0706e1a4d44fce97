"""Issue 31, case 7: an output file (``predict --csv/--json``, ``score --out``) that names one of
the photos to be scored is refused before anything is read or written; the photo is untouched."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from orderlearn.commands.score import refuse_outputs_over_inputs
from orderlearn.errors import ConfigError


def photo(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)
    return path.read_bytes()


def test_an_output_naming_a_given_photo_is_refused(tmp_path: Path):
    face = tmp_path / "me.jpg"
    photo(face)
    with pytest.raises(ConfigError, match=r"^--csv: .*me\.jpg is one of the photos to score"):
        refuse_outputs_over_inputs({"--csv": face, "--json": None}, [face])


def test_an_output_naming_a_photo_inside_a_given_folder_is_refused(tmp_path: Path):
    face = tmp_path / "photos" / "sub" / "me.png"
    photo(face)
    with pytest.raises(ConfigError, match=r"^--json: "):
        refuse_outputs_over_inputs({"--json": tmp_path / "photos" / "sub" / ".." / "sub" / "me.png"}, [tmp_path / "photos"])


def test_outputs_beside_the_photos_are_fine(tmp_path: Path):
    face = tmp_path / "photos" / "me.png"
    photo(face)
    refuse_outputs_over_inputs({"--csv": tmp_path / "photos" / "scores.csv", "--json": None}, [tmp_path / "photos"])


@pytest.mark.slow  # a subprocess: the real command line
def test_predict_refuses_before_loading_the_model_and_keeps_the_photo(tmp_path: Path):
    face = tmp_path / "me.jpg"
    before = photo(face)
    done = subprocess.run([sys.executable, "-m", "orderlearn.cli", "predict", str(face), "--model", str(tmp_path / "no-run"),
                           "--align", "none", "--csv", str(face)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--csv" in done.stderr and "one of the photos to score" in done.stderr
    assert face.read_bytes() == before
