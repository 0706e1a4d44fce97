"""`orderlearn predict` on your own photos: files and folders, bad files listed while the rest are
scored, the run's own numbers with --align none, alignment with MTCNN, pictures of the decision,
and `orderlearn score --plot N` for a run's test images."""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.runs.recipe import run_experiment

from builders import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_scut_run(scut_root: Path, out: Path, model: dict | None = None, task: str = "comparator") -> Path:
    """A tiny run on a few real SCUT-FBP5500 faces (random weights: the numbers mean nothing,
    the path from photo to score is the real one)."""
    raw = tiny_config(scut_root, out, epochs=1, batch_size=64)
    raw["data"].update({"limit_train": 60, "limit_test": 6})
    raw["pairs"] = {"total": 300, "val_total": 60}
    raw["bank"] = {"per_bin": 2}
    raw["direct_baseline"] = False
    raw["task"] = task
    if model is not None:
        raw["model"] = model
        raw["train"]["select_metric"] = "val_pc"
    run_experiment(config_from_dict(raw))
    return out


@pytest.fixture(scope="module")
def scut_run(scut_root, tmp_path_factory) -> Path:
    return tiny_scut_run(scut_root, tmp_path_factory.mktemp("predict") / "run")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_faces(run: Path, folder: Path) -> dict[str, str]:
    """Copies of the run's test faces in ``folder``; file name -> the run's own score (CSV text)."""
    folder.mkdir(parents=True, exist_ok=True)
    scores = {}
    for row in read_csv(run / "scores.csv"):
        shutil.copy(row["path"], folder / Path(row["path"]).name)
        scores[Path(row["path"]).name] = row["score"]
    return scores


test_faces.__test__ = False  # a helper, not a test


def no_face_image(path: Path) -> Path:
    ramp = np.linspace(0, 255, 224, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (224, 1))] * 3, axis=-1)).save(path)
    return path


def test_align_none_scores_a_folder_as_the_run_scored_its_test_set(scut_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    expected = test_faces(scut_run, photos)
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.jpg").write_text("not a JPEG either")
    code = main(["predict", str(photos), "--model", str(scut_run), "--align", "none", "--json", str(tmp_path / "p.json"),
                 "--csv", str(tmp_path / "p.csv")])
    assert code == 1  # a bad file is named and the exit code says so
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "notes.txt" not in err  # .txt is not collected; a bad .jpg is listed
    payload = json.loads((tmp_path / "p.json").read_text())
    got = {Path(p["file"]).name: f"{p['score']:.6f}" for p in payload["predictions"]}
    assert got == expected  # every face scored, with the run's own scores
    assert [Path(f["file"]).name for f in payload["failed"]] == ["broken.jpg"]
    rows = read_csv(tmp_path / "p.csv")
    assert {Path(r["file"]).name: r["score"] for r in rows} == expected
    assert all(0.0 <= float(r["percentile"]) <= 100.0 and float(r["lower95"]) <= float(r["score"]) <= float(r["upper95"])
               for r in rows)


def test_single_files_and_a_clean_exit(scut_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    expected = test_faces(scut_run, photos)
    first = sorted(photos.iterdir())[0]
    assert main(["predict", str(first), "--model", str(scut_run), "--align", "none"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["file", "score"] and str(first) in table[1]
    assert f"{float(expected[first.name]):.3f}" in table[1]
    assert main(["predict", str(tmp_path / "missing.jpg"), "--model", str(scut_run), "--align", "none"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["predict", str(first), "--model", str(tmp_path / "nowhere")]) == 2


def test_mtcnn_scores_every_face_and_names_the_text_file_and_the_non_face(scut_run, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    photos = tmp_path / "photos"
    expected = test_faces(scut_run, photos)
    (photos / "notes.txt").write_text("not an image")
    given = [str(photos), str(photos / "notes.txt"), str(no_face_image(tmp_path / "ramp.png"))]
    code = main(["predict", *given, "--model", str(scut_run), "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "pics")])
    assert code == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "ramp.png: no face found" in err
    payload = json.loads((tmp_path / "p.json").read_text())
    assert sorted(Path(p["file"]).name for p in payload["predictions"]) == sorted(expected)
    assert sorted(Path(f["file"]).name for f in payload["failed"]) == ["notes.txt", "ramp.png"]
    assert all(p["faces_found"] == 1 for p in payload["predictions"])
    assert (scut_run / "alignment.json").is_file()  # the template, measured once on the bank's faces
    pictures = sorted((tmp_path / "pics").glob("*.png"))
    assert len(pictures) == len(expected)
    assert all(p.stat().st_size < 300_000 for p in pictures)


def test_one_face_refuses_a_photo_of_two(scut_run, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    faces = sorted(test_faces(scut_run, tmp_path / "faces"))[:2]
    left, right = (Image.open(tmp_path / "faces" / f).convert("RGB") for f in faces)
    pair = Image.new("RGB", (left.width + right.width + 40, max(left.height, right.height)))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width + 40, 0))
    pair.save(tmp_path / "two.png")
    assert main(["predict", str(tmp_path / "two.png"), "--model", str(scut_run), "--one-face"]) == 1
    assert "2 faces found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "two.png"), "--model", str(scut_run), "--json", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["predictions"][0]["faces_found"] == 2


def test_without_facenet_alignment_is_a_one_line_error(scut_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails as if not installed
    face = sorted(test_faces(scut_run, tmp_path / "faces"))[0]
    assert main(["predict", str(tmp_path / "faces" / face), "--model", str(scut_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install --no-deps facenet-pytorch" in err and "--align none" in err


def test_score_plot_draws_the_decision_for_test_images(scut_run, tmp_path):
    assert main(["score", "--run", str(scut_run), "--out", str(tmp_path / "s.csv"), "--plot", "2",
                 "--plot-dir", str(tmp_path / "plots")]) == 0
    pictures = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pictures) == 2
    with Image.open(pictures[0]) as image:
        assert image.size[0] > 2 * image.size[1]  # three panels side by side
    assert all(p.stat().st_size < 300_000 for p in pictures)
