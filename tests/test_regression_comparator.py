"""The degenerate comparator (a regressor compared through the BT link) and every direct method
trained end to end on CPU, scored directly and through the reference bank."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from comparators.base import Regressor, RegressorOutput
from comparators.regression_comparator import RegressionComparator
from orderlearn.report.run_folders import read_run
from orderlearn.config import load_config
from orderlearn.runs.recipe import run_experiment
from orderlearn.types import PairLabel
from scorers.link import Link

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention

REPO = Path(__file__).resolve().parents[1]
FIRST, SECOND, SIMILAR = int(PairLabel.FIRST), int(PairLabel.SECOND), int(PairLabel.SIMILAR)


class MeanPixelRegressor(Regressor):
    """Score = the image's mean pixel value: lets a test put any score on an image."""

    def forward(self, images: torch.Tensor) -> RegressorOutput:
        return RegressorOutput(score=images.mean(dim=(1, 2, 3)))


def images_with_scores(*scores: float) -> torch.Tensor:
    return torch.tensor(scores, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 2, 2).clone()


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_probabilities_match_the_link_by_hand():
    comparator = RegressionComparator(MeanPixelRegressor(), {"slope": 4.0, "tie_width": 0.25})
    a, b = images_with_scores(3.1, 2.6, 2.0, 4.5), images_with_scores(2.6, 2.6, 2.5, 1.5)
    probs = torch.softmax(comparator(a, b).double(), dim=-1)
    # δ = 0.5, 0, −0.5, 3.0;  P(FIRST) = σ(k(δ − τ)), P(SECOND) = σ(k(−δ − τ)), P(SIMILAR) = rest
    for row, delta in enumerate((0.5, 0.0, -0.5, 3.0)):
        first, second = sigmoid(4.0 * (delta - 0.25)), sigmoid(4.0 * (-delta - 0.25))
        expected = [first, second, 1.0 - first - second]
        assert probs[row].tolist() == pytest.approx(expected, abs=1e-6), delta
    # the first row by hand: σ(1) = 0.7310585786, σ(−3) = 0.0474258732
    assert probs[0].tolist() == pytest.approx([0.7310585786, 0.0474258732, 0.2215155482], abs=1e-6)
    assert probs[1, SIMILAR].item() == pytest.approx(1 - 2 * sigmoid(-1.0), abs=1e-6)  # 0.4621171573


def test_probabilities_sum_to_one_and_reverse_symmetrically():
    comparator = RegressionComparator(MeanPixelRegressor(), {"slope": 7.0, "tie_width": 0.2})
    g = torch.Generator().manual_seed(0)
    sa, sb = 1 + 4 * torch.rand(64, generator=g), 1 + 4 * torch.rand(64, generator=g)
    a, b = images_with_scores(*sa.tolist()), images_with_scores(*sb.tolist())
    forward = torch.softmax(comparator(a, b).double(), -1)
    reverse = torch.softmax(comparator(b, a).double(), -1)
    assert torch.allclose(forward.sum(-1), torch.ones(64, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(forward[:, FIRST], reverse[:, SECOND], atol=1e-6)
    assert torch.allclose(forward[:, SECOND], reverse[:, FIRST], atol=1e-6)
    assert torch.allclose(forward[:, SIMILAR], reverse[:, SIMILAR], atol=1e-6)
    # embed once, compare many: the split path gives the same logits as forward
    split = comparator.compare(comparator.embed(a), comparator.embed(b))
    assert torch.allclose(split, comparator(a, b))
    # the most probable label follows the score gap once it is clearly beyond the tie band
    delta = sa - sb
    assert (forward.argmax(-1)[delta > 0.5] == FIRST).all() and (forward.argmax(-1)[delta < -0.5] == SECOND).all()


def test_two_class_link():
    comparator = RegressionComparator(MeanPixelRegressor(), {"slope": 3.0}, num_classes=2)
    probs = torch.softmax(comparator(images_with_scores(3.0), images_with_scores(2.5)).double(), -1)
    assert probs[0].tolist() == pytest.approx([sigmoid(1.5), sigmoid(-1.5)], abs=1e-6)


def test_fit_link_recovers_known_slope_and_tie_width():
    true = Link(slope=6.0, tie_width=0.3)
    g = torch.Generator().manual_seed(1)
    sa, sb = 1 + 4 * torch.rand(8_000, generator=g, dtype=torch.float64), 1 + 4 * torch.rand(8_000, generator=g, dtype=torch.float64)
    labels = torch.multinomial(true.probs(sa - sb, 3), 1, generator=g).squeeze(1)
    comparator = RegressionComparator(MeanPixelRegressor())  # starts from the default link (10, 0.2)
    fitted = comparator.fit_link(sa - sb, labels)
    assert fitted.slope == pytest.approx(6.0, rel=0.06)
    assert fitted.tie_width == pytest.approx(0.3, rel=0.06)
    assert comparator.link == fitted  # the comparator now compares with the fitted link


# --- every method end to end on CPU -----------------------------------------------------------

TINY = ["data.kind=scut", "data.limit_train=60", "data.limit_test=20", "data.val_fraction=0.2",
        "model.image_size=32", "train.epochs=1", "train.batch_size=16", "train.eval_batch_size=64",
        "bank.per_bin=2", "scorer.step=0.01"]
METHODS = {  # shipped synthetic config -> extra overrides (already CPU-sized in the file)
    "synthetic/dld.yaml": [],
    "synthetic/comboloss.yaml": [],
    "synthetic/plain_l1.yaml": [],
    "synthetic/plain_mse.yaml": [],
    "synthetic/adashare_aff.yaml": ["model.width=8"],
    # two epochs, so the second uses the references of the first (the full Eq. 8)
    "synthetic/relative_position.yaml": ["train.epochs=2", "model.backbone_kwargs={widths: [8, 8, 16, 16], depths: [1, 1, 1, 1]}"],
}

def check_run(out: Path, results: dict, model: str, n_test: int, epochs: int) -> None:
    assert results["method"] == model and len(results["train"]["history"]) == epochs
    for route in ("direct", "order_learned"):
        assert results[route]["n"] == n_test
        assert math.isfinite(results[route]["mae"]) and math.isfinite(results[route]["rmse"])
    link = results["scorer"]["link"]  # the comparator view's fitted link, which the scorer uses
    assert results["scorer"]["link_source"] == "comparator" and link["slope"] > 0 and link["tie_width"] >= 0
    assert results["scorer"]["view_states"] == [{"link": link}]
    assert results["comparator_metrics"]["pairs"] == n_test * results["bank_size"]
    run = read_run(out)  # scores.csv agrees with results.json on both routes (else DataError)
    assert set(run.predictions) == {"direct", "order_learned"} and run.truth.size == n_test
    assert ((run.predictions["order_learned"] >= 1.0) & (run.predictions["order_learned"] <= 5.0)).all()
    assert (out / "report.md").is_file() and (out / "scatter.png").is_file()


@pytest.mark.parametrize("config_file", list(METHODS))
def test_every_method_trains_and_scores_both_ways(config_file, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # embedding caches land under ./runs
    out = tmp_path / "run"
    config = load_config(REPO / "configs" / config_file,
                         TINY + [f"data.root={synthetic_root}", f"output_dir={out}"] + METHODS[config_file])
    results = run_experiment(config)
    check_run(out, results, config.model.name, n_test=20, epochs=config.train.epochs)


def test_relative_position_on_synthetic_ages(tmp_path, monkeypatch):
    """The shipped age config, on an age set generated here (the command its comment names)."""
    from orderlearn.data.synthetic import generate_synthetic_ages

    monkeypatch.chdir(tmp_path)
    root = generate_synthetic_ages(tmp_path / "ages", n_images=100, image_size=48, seed=0)
    out = tmp_path / "run"
    config = load_config(REPO / "configs" / "synthetic" / "ages_relative_position.yaml", [
        f"data.root={root / 'manifest.csv'}", f"output_dir={out}", "data.val_fraction=0.2", "model.image_size=32",
        "model.backbone_kwargs={widths: [8, 8, 16, 16], depths: [1, 1, 1, 1]}", "train.epochs=1", "train.batch_size=16",
    ])
    assert config.data.kind == "manifest" and (config.data.score_low, config.data.score_high) == (16.0, 77.0)
    results = run_experiment(config)
    assert results["direct"]["n"] == results["order_learned"]["n"] == 20  # fold 1 of 100 faces
    run = read_run(out)
    assert run.truth.min() >= 16 and run.truth.max() <= 77 and (run.truth == run.truth.round()).all()
    assert ((run.predictions["order_learned"] >= 16) & (run.predictions["order_learned"] <= 77)).all()
    assert math.isfinite(results["direct"]["mae"]) and results["scorer"]["link"]["slope"] > 0
