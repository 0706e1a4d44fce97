"""Issue 31, case 8: a face's numbers do not depend on the faces computed beside it, nor on what
the feature cache already holds.

Convolutions and matrix products pick their kernels by the batch's shape (oneDNN, MKL, cuBLAS):
the features of one face computed alone, or among 7 others, differed by ~1e-6, its embedding
too, and its comparisons with the bank by the number of faces sharing the call; with hard
labels that moved a score (2.250 alone, 2.260 beside another face), a warm cache kept whichever
batching came first, and two exports of one run differed in their bank embeddings. Each face is
now computed on its own (features, embedding, its row of comparisons), so these are equal bit
for bit.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

import comparators
from comparators.base import Comparator
from orderlearn.bank.comparisons import compare_all, view_embeddings
from orderlearn.data import scut
from orderlearn.engine.features import FeatureCache, FeatureExtractor

from builders import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_and_faces(synthetic_root):
    torch.manual_seed(0)
    model = comparators.create(TINY_MODEL["name"], **{k: v for k, v in TINY_MODEL.items() if k != "name"})
    train, test = scut.read_split(synthetic_root, "fold1")
    return model.eval(), train[:9], test[:5]


def test_features_of_a_face_alone_equal_its_features_among_others_and_from_a_warm_cache(model_and_faces, tmp_path):
    model, faces, _ = model_and_faces
    extract = lambda cache, batch: FeatureExtractor(Accelerator(cpu=True), batch, cache=cache)  # noqa: E731
    together = extract(None, 8)(model, faces)
    for i in (0, 3, 8):
        alone = extract(None, 8)(model, [faces[i]])
        assert torch.equal(alone[0], together[i]), f"face {i}: alone vs in a batch of 8"
    cache = FeatureCache(tmp_path / "cache")
    first = extract(cache, 3)(model, faces[4:])  # cold: these entries are written from batches of 3
    warm = extract(cache, 8)(model, faces)  # four from the cache, five computed in another batching
    assert torch.equal(warm, together) and torch.equal(warm[4:], first)


def test_embeddings_and_comparisons_of_a_face_do_not_depend_on_the_others(model_and_faces):
    model, faces, test = model_and_faces
    accelerator = Accelerator(cpu=True)
    view: Comparator = model
    extract = FeatureExtractor(accelerator, 16)
    bank = view_embeddings(view, extract(model, faces), accelerator, 64)
    images = view_embeddings(view, extract(model, test), accelerator, 64)
    for i in range(len(test)):
        alone = view_embeddings(view, extract(model, [test[i]]), accelerator, 64)
        assert torch.equal(alone[0], images[i])
    everyone = compare_all(view, images, bank, accelerator)
    reverse = compare_all(view, images, bank, accelerator, reverse=True)
    for i in range(len(test)):
        assert torch.equal(compare_all(view, images[i:i + 1], bank, accelerator)[0], everyone[i])
        assert torch.equal(compare_all(view, images[i:i + 1], bank, accelerator, reverse=True)[0], reverse[i])


@pytest.mark.slow  # a tiny run, two exports and three predicts (~20 s)
def test_a_photo_scores_the_same_alone_as_in_a_folder_and_two_exports_hold_the_same_bank(synthetic_root, tmp_path):
    """The issue's reproduction at the command line: a face alone, beside others; two exports."""
    import json
    import shutil

    from orderlearn.cli import main
    from orderlearn.config import config_from_dict
    from orderlearn.runs.recipe import run_experiment

    from builders import tiny_config

    raw = tiny_config(synthetic_root, tmp_path / "run", epochs=1)
    raw["data"].update({"limit_train": 120, "limit_test": 4})
    raw["bank"] = {"per_bin": 3}
    run_experiment(config_from_dict(raw))
    photos = tmp_path / "photos"
    photos.mkdir()
    for row in (tmp_path / "run" / "scores.csv").read_text().splitlines()[1:]:
        shutil.copy(row.split(",")[0], photos)

    def predict(*given: Path, name: str) -> dict[str, float]:
        out = tmp_path / f"{name}.json"
        assert main(["predict", *map(str, given), "--model", str(tmp_path / "run"), "--align", "none", "--json", str(out)]) == 0
        return {Path(p["file"]).name: p["score"] for p in json.loads(out.read_text())["predictions"]}

    together = predict(photos, name="together")
    for i, photo in enumerate(sorted(photos.iterdir())):
        assert predict(photo, name=f"alone{i}") == {photo.name: together[photo.name]}
    for name in ("a", "b"):
        assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / name)]) == 0
    first, second = (load_file(str(tmp_path / n / "bank_embeddings.safetensors")) for n in ("a", "b"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
