"""Your own references: a bank on another scale, self-calibrated on the references alone, with
the direct route mapped onto that scale beside it (issue 28).

The property: references scored a·s + b (a > 0) give every image the score a·ŝ + b, so PC is the
same and MAE is scaled by a, with many references (link, positions and intervals fitted) and with
few (the fallback); the mapped direct route likewise. Then the commands: ``predict --references``
on a bundle, a bundle exported with its own references scoring without their images, and the
one-line errors of a bad references file."""
from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from orderlearn.bank.own_references import read_references
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.self_calibration import MIN_FIT_LINK, MIN_FIT_POSITIONS
from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.report.metrics import score_metrics
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import score_on_new_scale
from orderlearn.runs.recipe import run_experiment
from orderlearn.types import ScoredImage

from builders import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

A, B = 2.5, 7.0  # the new scale: 2.5 s + 7
TOLERANCE = {"pc": 2e-3, "mae_ratio": 0.01}  # a grid scorer's step and LBFGS's stopping leave ~1e-3


@pytest.fixture(scope="module")
def run(synthetic_root, tmp_path_factory) -> Path:
    """The tiny comparator run with its direct head (one epoch)."""
    raw = tiny_config(synthetic_root, tmp_path_factory.mktemp("own-refs") / "run", epochs=1)
    raw["direct_baseline"] = True
    run_experiment(config_from_dict(raw))
    return Path(raw["output_dir"])


def drawn(run: Path, count: int, seed: int = 0) -> list[ScoredImage]:
    train = load_training(LoadedRun.from_run(run).config.data).train
    return random.Random(seed).sample(train, count)


def bank(samples: list[ScoredImage], a: float = 1.0, b: float = 0.0) -> ReferenceBank:
    return ReferenceBank([ScoredImage(path=s.path, score=a * s.score + b) for s in samples])


def write_manifest(path: Path, samples: list[ScoredImage], a: float = 1.0, b: float = 0.0) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        writer.writerows([[str(s.path), a * s.score + b] for s in samples])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("count", [MIN_FIT_POSITIONS + 10, MIN_FIT_LINK - 2])
def test_references_on_an_affine_scale_give_the_same_pc_and_mae_times_a(run, count):
    loaded = LoadedRun.from_run(run)
    test = load_test(loaded.config.data)
    truth = [s.score for s in test]
    refs = drawn(run, count)
    same = score_on_new_scale(loaded, bank(refs), test)
    moved = score_on_new_scale(loaded, bank(refs, A, B), test)
    assert ("reference_positions" in moved.calibration["fitted"]) == (count >= MIN_FIT_POSITIONS)
    assert ("link" in moved.calibration["fitted"]) == (count >= MIN_FIT_LINK)
    assert ("output_map" in moved.calibration) == (count >= MIN_FIT_LINK)  # chosen, identity included
    if count >= MIN_FIT_LINK:  # the same map is chosen on either scale
        assert moved.calibration["output_map"]["kind"] == same.calibration["output_map"]["kind"]
    assert (moved.fused is not None) == (count >= MIN_FIT_LINK)  # the fused route from 10 references on
    for route in ("order_learned", "direct_mapped") + (("fused",) if count >= MIN_FIT_LINK else ()):
        ours = getattr(same, route)
        theirs = getattr(moved, route)
        ours = ours.value if hasattr(ours, "value") else ours
        theirs = theirs.value if hasattr(theirs, "value") else theirs
        before = score_metrics(ours.tolist(), truth)
        after = score_metrics(theirs.tolist(), [A * t + B for t in truth])
        assert after["pc"] == pytest.approx(before["pc"], abs=TOLERANCE["pc"]), route
        assert after["mae"] / before["mae"] == pytest.approx(A, rel=TOLERANCE["mae_ratio"]), route
        assert torch.allclose(theirs, A * ours + B, atol=A * 0.02), route
    assert torch.equal(moved.direct, same.direct)  # the unmapped direct route stays in the run's units
    link_same, link_moved = same.loaded.recipe.link, moved.loaded.recipe.link
    assert link_moved["tie_width"] == pytest.approx(A * link_same["tie_width"], rel=0.02)
    assert link_moved["slope"] == pytest.approx(link_same["slope"] / A, rel=0.02)


@pytest.mark.slow
def test_predict_references_on_a_bundle_and_a_bundle_with_its_own_references(run, tmp_path, capsys):
    loaded = LoadedRun.from_run(run)
    photos = tmp_path / "photos"
    photos.mkdir()
    for s in load_test(loaded.config.data)[:5]:
        shutil.copy(s.path, photos / s.path.name)
    refs = write_manifest(tmp_path / "refs.csv", drawn(run, 12, seed=1), a=10.0)  # a 10..50 scale
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--out", str(bundle), "--thumbnail-size", "0"]) == 0
    assert main(["predict", str(photos), "--model", str(bundle), "--references", str(refs), "--align", "none",
                 "--json", str(tmp_path / "bundle.json")]) == 0
    on_bundle = json.loads((tmp_path / "bundle.json").read_text())
    assert len(on_bundle["predictions"]) == 5 and "link" in on_bundle["references"]["fitted"]
    low, high = on_bundle["references"]["range"]
    assert 5 < low < high < 60 and all(low <= p["score"] <= high for p in on_bundle["predictions"])
    assert on_bundle["predictions"][0]["direct_score"] is None  # a bundle carries the bank route only
    import orderlearn

    in_python = orderlearn.load(bundle).predict(photos, align="none", references=refs)
    assert [p.score for p in in_python] == pytest.approx([p["score"] for p in on_bundle["predictions"]], abs=1e-9)
    # the run folder gives the same order-learned scores, and its direct route raw and mapped
    assert main(["predict", str(photos), "--model", str(run), "--references", str(refs), "--align", "none",
                 "--json", str(tmp_path / "run.json")]) == 0
    on_run = json.loads((tmp_path / "run.json").read_text())
    assert [p["score"] for p in on_run["predictions"]] == pytest.approx([p["score"] for p in on_bundle["predictions"]], abs=1e-6)
    assert all(p["direct_mapped"] is not None and 1 <= p["direct_score"] <= 5 for p in on_run["predictions"])
    # a bundle exported with its own references scores on their scale without their images
    own = tmp_path / "own"
    assert main(["export", str(run), "--out", str(own), "--references", str(refs), "--thumbnail-size", "0"]) == 0
    manifest = json.loads((own / "bundle.json").read_text())
    assert manifest["own_references"]["references"] == 12 and manifest["score_range"] == [low, high]
    hidden = tmp_path / "hidden"
    shutil.copytree(own, hidden)
    assert main(["predict", str(photos), "--model", str(hidden), "--align", "none", "--json", str(tmp_path / "own.json")]) == 0
    with_own = json.loads((tmp_path / "own.json").read_text())
    assert [p["score"] for p in with_own["predictions"]] == pytest.approx([p["score"] for p in on_bundle["predictions"]], abs=1e-6)


def test_bad_references_files_are_one_line_errors_naming_the_file_and_row(tmp_path):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    (tmp_path / "b.png").write_bytes(image.read_bytes())
    cases = {
        "missing-score.csv": ("path,score\na.png,3\nb.png,\n", "missing-score.csv:3: score '' is not a number"),
        "nan.csv": ("path,score\na.png,nan\nb.png,3\n", "nan.csv:2: score 'nan' is not a finite number"),
        "no-image.csv": ("path,score\na.png,3\nc.png,4\n", "no-image.csv:3: image"),
        "one.csv": ("path,score\na.png,3\n", "one.csv: 1 reference(s); a new scale needs at least 2"),
        "no-score-column.csv": ("path\na.png\n", "no-score-column.csv: missing column(s) ['score']"),
        "missing.jsonl": ('{"path": "a.png", "score": 2}\n{"path": "b.png"}\n', "missing.jsonl:2: needs 'path' and 'score'"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as error:
            read_references(tmp_path / name)
        assert expected in str(error.value) and "\n" not in str(error.value), name
    with pytest.raises(DataError, match="a folder without a manifest"):
        read_references(tmp_path)


def test_references_cli_errors_before_the_run_is_read(tmp_path, capsys):
    (tmp_path / "refs.csv").write_text("path,score\n")
    assert main(["predict", str(tmp_path), "--model", str(tmp_path / "nowhere"), "--references",
                 str(tmp_path / "refs.csv")]) != 0
    assert "refs.csv has no rows" in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_line_scores_a_scale_never_trained_on_by_both_routes(run):
    from orderlearn.runs.new_scale_line import new_scale_line, new_scale_results

    found = new_scale_results(run)
    assert found["references"] == 30 and found["calibration"]["references"] == 30
    assert "reference_positions" in found["calibration"]["fitted"]
    for route in ("order_learned", "direct_mapped"):
        assert np.isfinite(found[route]["pc"]) and 0 <= found[route]["mae"] <= 100
    line = new_scale_line(found)
    assert line.startswith("new scale (share of raters giving 4 or 5 (%)") and "order-learned" in line and "direct mapped" in line
