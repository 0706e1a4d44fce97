"""A bundle is trusted only as far as it is checked (issue 31, cases 2, 6, 10 and 11).

It is a closed world: every file it names lies inside its folder, ``predict`` writes features only
into the user's cache folder, and its config cannot point the model at weights elsewhere. ``export``
writes ``checksums.sha256`` and loading verifies it, so a changed, missing or truncated file is
named. Behind the checksums (a bundle re-sealed after a bad edit), every value is range-checked
when the bundle loads. Each refusal is one ``error: ...`` line and exit status 2, never a
traceback; ``score``, ``active`` and ``export`` given a bundle say what it is and what to use.

The bundle is exported once from a tiny synthetic run; each test damages a copy of it.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from orderlearn.cli import main
from orderlearn.config import config_from_dict
from orderlearn.errors import DataError
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.recipe import run_experiment

from builders import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
CHECKSUMS = "checksums.sha256"
WEIGHTS = "weights/checkpoint_0.safetensors"


# ---------------------------------------------------------------------------- a tiny run, exported once
@pytest.fixture(scope="module")
def run(synthetic_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    raw = tiny_config(synthetic_root, root / "run", epochs=1)
    raw["data"].update({"limit_train": 60, "limit_test": 3})
    raw["pairs"] = {"total": 200, "val_total": 40}
    raw["bank"] = {"per_bin": 2}
    raw["direct_baseline"] = False
    raw["feature_cache"] = str(root / "run-cache")
    run_experiment(config_from_dict(raw))
    return root / "run"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "bundle"
    assert main(["export", str(run), "--out", str(out), "--template-faces", "5", "--thumbnail-size", "16"]) == 0
    return out


@pytest.fixture
def bundle(exported, tmp_path) -> Path:
    """A fresh copy of the exported bundle, for one test to damage."""
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


@pytest.fixture
def photos(run, tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for line in (run / "scores.csv").read_text().splitlines()[1:3]:
        source = Path(line.split(",")[0])
        shutil.copy(source, folder / source.name)
    return folder


def reseal(bundle: Path) -> None:
    """Rewrite the checksums over the bundle's files as they are now (``sha256sum`` format), so a
    test reaches the value checks behind them."""
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    (bundle / CHECKSUMS).write_text("".join(f"{hashlib.sha256((bundle / f).read_bytes()).hexdigest()}  {f}\n"
                                            for f in files))


def edit_json(bundle: Path, name: str, change: Callable[[dict[str, Any]], None], seal: bool = True) -> None:
    raw = json.loads((bundle / name).read_text())
    change(raw)
    (bundle / name).write_text(json.dumps(raw))
    if seal:
        reseal(bundle)


def edit_config(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = yaml.safe_load((bundle / "config.yaml").read_text())
    change(raw)
    (bundle / "config.yaml").write_text(yaml.safe_dump(raw))
    reseal(bundle)


def refused(argv: list[str], capsys) -> str:
    """The one ``error:`` line (exit status 2) a command prints for ``argv``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def predict_refused(bundle: Path, photos: Path, capsys, *more: str) -> str:
    return refused(["predict", str(photos), "--model", str(bundle), "--align", "none", *more], capsys)


def predict_json(bundle: Path, photos: Path, out: Path) -> dict[str, float]:
    assert main(["predict", str(photos), "--model", str(bundle), "--align", "none", "--json", str(out)]) == 0
    return {Path(p["file"]).name: p["score"] for p in json.loads(out.read_text())["predictions"]}


# ---------------------------------------------------------------------------- case 2: a closed world
@pytest.mark.parametrize("outside", ["absolute", "parent"])
def test_a_checkpoint_outside_the_bundle_is_refused(bundle, photos, run, tmp_path, capsys, outside):
    other = tmp_path / "other.safetensors"
    shutil.copy(bundle / WEIGHTS, other)  # another run's weights would load as well
    name = str(other) if outside == "absolute" else "../other.safetensors"
    edit_json(bundle, "scorer.json", lambda r: r.update(checkpoints=[name]))
    edit_json(bundle, "bundle.json", lambda r: r.update(checkpoints=[name]))
    err = predict_refused(bundle, photos, capsys)
    assert "scorer.json" in err and "checkpoints" in err and name in err


def test_a_link_out_of_the_bundle_is_refused(bundle, photos, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    shutil.move(bundle / WEIGHTS, other)
    (bundle / WEIGHTS).symlink_to(other)
    reseal(bundle)
    err = predict_refused(bundle, photos, capsys)
    assert WEIGHTS in err and "outside" in err


def hub_snapshot(bundle: Path, cache: Path) -> Path:
    """``bundle`` laid out as the hub's cache keeps a download: each file a link into ``blobs/``."""
    repo = cache / "models--someone--bundle"
    snapshot = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    for file in (p for p in bundle.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, blob)
        link = snapshot / file.relative_to(bundle)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(file.relative_to(bundle).parts) + 1)) / "blobs" / blob.name)
    return snapshot


def test_a_hub_snapshot_links_into_its_own_cache_only(bundle, tmp_path):
    snapshot = hub_snapshot(bundle, tmp_path / "hub")
    assert LoadedRun.load(snapshot).is_bundle  # its files link to ../../blobs: inside the repository's cache
    outside = tmp_path / "outside.safetensors"
    shutil.copy(snapshot / WEIGHTS, outside)
    (snapshot / WEIGHTS).unlink()
    (snapshot / WEIGHTS).symlink_to(outside)
    with pytest.raises(DataError, match="outside the bundle"):
        LoadedRun.load(snapshot)


def test_the_bank_file_is_a_file_of_the_bundle(bundle, photos, tmp_path, capsys):
    edit_json(bundle, "scorer.json", lambda r: r.update(bank_file=str(bundle / "references.json")))
    err = predict_refused(bundle, photos, capsys)
    assert "scorer.json" in err and "bank_file" in err


def test_reference_names_are_plain_names_never_read(bundle, photos, tmp_path, capsys):
    outside = next(photos.iterdir())
    edit_json(bundle, "references.json", lambda r: r["references"][0].update(name=str(outside)))
    err = predict_refused(bundle, photos, capsys)
    assert "references.json" in err and "name" in err and str(outside) in err


def test_without_thumbnails_the_pictures_read_no_file_of_the_current_folder(run, tmp_path, monkeypatch):
    bundle = tmp_path / "bare"
    assert main(["export", str(run), "--out", str(bundle), "--template-faces", "5", "--thumbnail-size", "0"]) == 0
    loaded = LoadedRun.load(bundle)
    name = loaded.bank.samples[0].path.name
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(next(p for p in Path(loaded.config.data.root).rglob(name)), here / name)
    monkeypatch.chdir(here)
    assert loaded.references.get(0) is None


def test_feature_cache_of_a_bundle_is_the_users_cache(bundle, photos, tmp_path, feature_cache_dir):
    elsewhere = tmp_path / "elsewhere-cache"
    edit_config(bundle, lambda c: c.update(feature_cache=str(elsewhere)))
    predict_json(bundle, photos, tmp_path / "p.json")
    assert not elsewhere.exists()
    assert any(p.is_file() for p in feature_cache_dir.rglob("*"))


def test_model_weights_outside_the_bundle_are_refused(bundle, photos, tmp_path, capsys):
    weights = tmp_path / "backbone.pth"
    torch.save({}, weights)
    edit_config(bundle, lambda c: c["model"]["args"].update(weights=str(weights)))
    edit_json(bundle, "bundle.json", lambda r: r.update(full_weights=False))
    err = predict_refused(bundle, photos, capsys)
    assert "config.yaml" in err and "model.weights" in err and str(weights) in err


# ---------------------------------------------------------------------------- case 6: checksums, values
def test_export_writes_checksums_of_every_file(exported):
    lines = (exported / CHECKSUMS).read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    files = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()} - {CHECKSUMS}
    assert listed.keys() == files
    assert all(hashlib.sha256((exported / f).read_bytes()).hexdigest() == d for f, d in listed.items())


def test_a_changed_file_is_named(bundle, photos, capsys):
    stored = load_file(str(bundle / "bank_embeddings.safetensors"))
    order = torch.arange(len(stored["checkpoint_0"]) - 1, -1, -1)
    save_file({k: v[order].contiguous() for k, v in stored.items()}, str(bundle / "bank_embeddings.safetensors"))
    err = predict_refused(bundle, photos, capsys)
    assert "bank_embeddings.safetensors" in err and CHECKSUMS in err


def test_a_missing_file_is_named(bundle, photos, capsys):
    (bundle / "README.md").unlink()
    err = predict_refused(bundle, photos, capsys)
    assert "README.md" in err and "missing" in err


def test_a_bundle_without_checksums_is_refused_with_what_to_do(bundle, photos, capsys):
    (bundle / CHECKSUMS).unlink()
    err = predict_refused(bundle, photos, capsys)
    assert CHECKSUMS in err and "orderlearn export" in err


def test_an_older_bundle_format_says_re_export(bundle, photos, capsys):
    edit_json(bundle, "bundle.json", lambda r: r.update(format=1))
    err = predict_refused(bundle, photos, capsys)
    assert "format 1" in err and "orderlearn export" in err


@pytest.mark.parametrize("scale", [-3.0, math.nan, math.inf, 0.0])
def test_the_interval_scale_is_finite_and_positive(bundle, photos, capsys, scale):
    edit_json(bundle, "scorer.json", lambda r: r.update(interval_scale=scale))
    err = predict_refused(bundle, photos, capsys)
    assert "scorer.json" in err and "interval_scale" in err


@pytest.mark.parametrize("factor", [10.0, math.nan])
def test_reference_scores_lie_in_the_score_range(bundle, photos, capsys, factor):
    edit_json(bundle, "references.json", lambda r: r["references"][1].update(score=r["references"][1]["score"] * factor))
    err = predict_refused(bundle, photos, capsys)
    assert "references.json" in err and "score" in err


def test_bank_embeddings_are_finite(bundle, photos, capsys):
    stored = load_file(str(bundle / "bank_embeddings.safetensors"))
    stored["checkpoint_0"][0, 0] = math.nan
    save_file(stored, str(bundle / "bank_embeddings.safetensors"))
    reseal(bundle)
    err = predict_refused(bundle, photos, capsys)
    assert "bank_embeddings.safetensors" in err and "NaN" in err


def test_a_reference_more_than_the_bank_embeddings_is_refused(bundle, photos, capsys):
    edit_json(bundle, "references.json", lambda r: r["references"].append(dict(r["references"][0])))
    edit_json(bundle, "bundle.json", lambda r: r.update(bank_size=r["bank_size"] + 1))
    err = predict_refused(bundle, photos, capsys)
    assert "rows for" in err


def test_weights_are_finite(bundle, photos, capsys):
    weights = load_file(str(bundle / WEIGHTS))
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key].view(-1)[0] = math.nan
    save_file(weights, str(bundle / WEIGHTS))
    reseal(bundle)
    err = predict_refused(bundle, photos, capsys)
    assert WEIGHTS in err and key in err


@pytest.mark.parametrize("change, key", [
    ({"budget": 0}, "budget"), ({"budget": "ten"}, "budget"), ({"active_batch": 0}, "active_batch"),
    ({"link": {"slope": math.nan, "tie_width": 0.1}}, "link"), ({"link": {"slope": -1.0, "tie_width": 0.1}}, "link"),
    ({"scorer": "nope"}, "scorer"), ({"low": 5.0, "high": 1.0}, "low"), ({"high": math.inf}, "high"),
    ({"reference_positions": [math.nan]}, "reference_positions"), ({"view_states": [{"link": {"slope": -2}}]}, "view_states"),
    ({"checkpoints": 3}, "checkpoints"), ({"checkpoints": "weights/checkpoint_0.safetensors"}, "checkpoints"),
    ({"checkpoints": []}, "checkpoints"),
])
def test_bad_scorer_values_are_one_line_errors(bundle, photos, capsys, change, key):
    edit_json(bundle, "scorer.json", lambda r: r.update(change))
    err = predict_refused(bundle, photos, capsys)
    assert "scorer.json" in err and key in err


def test_a_grid_too_fine_to_allocate_is_refused_at_once(bundle, photos, capsys):
    edit_json(bundle, "scorer.json", lambda r: r.update(scorer="bt-grid", scorer_args={**r["scorer_args"], "step": 1e-9}))
    err = predict_refused(bundle, photos, capsys)
    assert "scorer.json" in err and "step" in err and "grid points" in err


# ---------------------------------------------------------------------------- case 10: damaged files
@pytest.mark.parametrize("seal", [False, True])
def test_a_truncated_safetensors_file_is_named(bundle, photos, capsys, seal):
    data = (bundle / WEIGHTS).read_bytes()
    (bundle / WEIGHTS).write_bytes(data[: len(data) // 2])
    if seal:
        reseal(bundle)
    err = predict_refused(bundle, photos, capsys)
    assert WEIGHTS in err


@pytest.mark.parametrize("key", ["full_weights", "checkpoints", "score_range", "thumbnails", "alignment"])
def test_a_missing_bundle_key_is_named(bundle, photos, capsys, key):
    edit_json(bundle, "bundle.json", lambda r: r.pop(key))
    err = predict_refused(bundle, photos, capsys)
    assert "bundle.json" in err and key in err


def test_bundle_json_that_is_not_an_object_is_refused(bundle, photos, capsys):
    (bundle / "bundle.json").write_text("[2]")
    reseal(bundle)
    err = predict_refused(bundle, photos, capsys)
    assert "bundle.json" in err


def test_fewer_thumbnails_than_references_are_refused(bundle, photos, tmp_path, capsys):
    thumbs = load_file(str(bundle / "reference_thumbnails.safetensors"))["thumbnails"]
    save_file({"thumbnails": thumbs[:-1].contiguous()}, str(bundle / "reference_thumbnails.safetensors"))
    reseal(bundle)
    err = predict_refused(bundle, photos, capsys, "--plot", str(tmp_path / "pictures"))
    assert "reference_thumbnails.safetensors" in err and "references" in err


@pytest.mark.parametrize("landmarks", [[[10.0, 10.0]] * 5, [[math.nan, 1.0]] * 5])
def test_a_degenerate_alignment_template_is_refused(bundle, photos, capsys, landmarks):
    template = {"width": 48, "height": 48, "landmarks": landmarks, "faces": 5, "format": 1,
                "landmark_names": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]}
    (bundle / "alignment.json").write_text(json.dumps(template))
    edit_json(bundle, "bundle.json", lambda r: r.update(alignment="alignment.json"))
    err = predict_refused(bundle, photos, capsys)
    assert "alignment.json" in err


# ---------------------------------------------------------------------------- case 11: a bundle where a run is wanted
@pytest.mark.parametrize("argv", [["score", "--run", "{b}"], ["active", "--run", "{b}"], ["export", "{b}", "--out", "{o}"]])
def test_a_bundle_given_for_a_run_says_what_it_is(bundle, tmp_path, capsys, argv):
    err = refused([a.format(b=bundle, o=tmp_path / "again") for a in argv], capsys)
    assert "bundle" in err and "orderlearn predict" in err and "KeyError" not in err


def test_an_intact_bundle_still_predicts_as_the_run_did(bundle, photos, run, tmp_path):
    got = predict_json(bundle, photos, tmp_path / "p.json")
    expected = {Path(line.split(",")[0]).name: float(line.split(",")[2])
                for line in (run / "scores.csv").read_text().splitlines()[1:3]}
    assert got.keys() == expected.keys() and all(abs(got[k] - expected[k]) < 5e-7 for k in got)
