"""A run embeds each face once per checkpoint: the bank phase (fitting the views, comparing the
validation and test faces) and a regressor's direct route read the same embeddings
(:class:`orderlearn.bank.comparisons.EmbeddingMemo`), which used to be computed again by each."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

import orderlearn.bank.route as route_module
import orderlearn.runs.direct as direct_module
from orderlearn.bank.comparisons import EmbeddingMemo
from orderlearn.config import config_from_dict
from orderlearn.data.splits import load_test, load_training
from orderlearn.runs.recipe import run_experiment
from orderlearn.types import ScoredImage

from builders import TINY_IMAGE, small_run

pytestmark = pytest.mark.usefixtures("one_thread")


def faces(*names: str) -> list[ScoredImage]:
    return [ScoredImage(Path(f"/faces/{n}.jpg"), 3.0) for n in names]


def test_the_memo_computes_a_set_once_per_checkpoint():
    memo, calls = EmbeddingMemo(), []

    def compute(value: float):
        return lambda: calls.append(value) or torch.full((2, 1), value)

    a, b = faces("a", "b"), faces("a", "c")
    assert memo.get(Path("run/best.pt"), a, compute(1.0)).eq(1.0).all()
    assert memo.get(Path("run/best.pt"), faces("a", "b"), compute(9.0)).eq(1.0).all()  # the same faces: kept
    assert memo.get(Path("run/./best.pt"), a, compute(9.0)).eq(1.0).all()  # the same file, spelled otherwise
    assert memo.get(Path("run/best.pt"), b, compute(2.0)).eq(2.0).all()  # other faces
    assert memo.get(Path("run/last.pt"), a, compute(3.0)).eq(3.0).all()  # other weights
    assert calls == [1.0, 2.0, 3.0]


def test_a_set_larger_than_the_limit_is_computed_each_time_not_held():
    memo, calls = EmbeddingMemo(max_bytes=8), []
    for _ in range(2):
        memo.get(Path("best.pt"), faces("a", "b", "c"), lambda: calls.append(1) or torch.zeros(3, 1))  # 12 bytes
    assert len(calls) == 2


def test_a_regressor_run_embeds_its_test_and_validation_faces_once(synthetic_root, tmp_path, monkeypatch):
    """Counted where the embeddings are computed: every call of ``view_embeddings`` from the bank
    route and from the direct route, by how many faces it embedded."""
    embedded: Counter[int] = Counter()

    def counting(original):
        def view_embeddings(view, features, accelerator, batch_size):
            embedded[len(features)] += 1
            return original(view, features, accelerator, batch_size)
        return view_embeddings

    monkeypatch.setattr(route_module, "view_embeddings", counting(route_module.view_embeddings))
    monkeypatch.setattr(direct_module, "view_embeddings", counting(direct_module.view_embeddings))
    monkeypatch.setenv("ORDERLEARN_CACHE_DIR", str(tmp_path / "cache"))
    raw = small_run(synthetic_root, tmp_path / "run", {"name": "plain", **TINY_IMAGE}, name="memo", train={"epochs": 1})
    config = config_from_dict(raw)
    splits, test = load_training(config.data), load_test(config.data)
    assert len({len(test), len(splits.val)}) == 2  # told apart by their sizes
    results = run_experiment(config)
    assert embedded[len(test)] == 1 and embedded[len(splits.val)] == 1, embedded
    assert results["direct"]["n"] == results["order_learned"]["n"] == len(test)  # both routes scored every face
