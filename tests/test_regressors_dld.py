"""Dual label distribution regressor: targets, Table I mapping, losses (Eqs. 2-11), training."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from comparators.base import RegressorOutput
from comparators.regressors import dual_label_distribution as dld

from builders import TINY_BACKBONE as TINY

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


def reference_target(mu: float, sigma: float) -> list[float]:
    """Eqs. (2)-(5) + sigmoid + L1 normalisation, in plain Python from the paper's text."""
    b = sigma / math.sqrt(2)

    def cdf(x: float) -> float:
        sign = (x > mu) - (x < mu)
        return 0.5 * (1 + sign * (1 - math.exp(-abs(x - mu) / b)))

    edges = [1 + 0.1 * k for k in range(41)]
    masses = [max(cdf(edges[j + 1]) - cdf(edges[j]), 1e-15) for j in range(40)]
    squashed = [1 / (1 + math.exp(-m)) for m in masses]
    return [s / sum(squashed) for s in squashed]


def test_laplace_target_matches_hand_values():
    sigma = 0.5 * math.sqrt(2)  # b = 0.5
    p = dld.attractiveness_distribution(
        torch.tensor([3.0]), torch.tensor([sigma]), dld.interval_edges((1.0, 5.0), 0.1)
    )[0]
    assert p.shape == (40,)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)
    # interval [3.0, 3.1]: mass 0.5 (1 - e^-0.2); interval [1.0, 1.1]: 0.5 (e^-3.8 - e^-4)
    m20, m0 = 0.5 * (1 - math.exp(-0.2)), 0.5 * (math.exp(-3.8) - math.exp(-4.0))
    assert m20 == pytest.approx(0.0906346, abs=1e-6)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert float(p[20] / p[0]) == pytest.approx(sig(m20) / sig(m0), rel=1e-9)
    assert float(p[20] / p[0]) == pytest.approx(1.04423, abs=1e-4)
    assert torch.allclose(p, p.flip(0), atol=1e-12)  # symmetric about μ = 3.0 = midpoint of the grid
    assert p.tolist() == pytest.approx(reference_target(3.0, sigma), abs=1e-9)


def test_target_with_zero_std_is_finite_and_peaked():
    p = dld.attractiveness_distribution(torch.tensor([2.34]), torch.tensor([0.0]), dld.interval_edges((1.0, 5.0), 0.1))[0]
    assert torch.isfinite(p).all()
    assert int(p.argmax()) == 13  # [2.3, 2.4]
    assert p.tolist() == pytest.approx(reference_target(2.34, 1e-6 * math.sqrt(2)), abs=1e-9)


def test_rating_mapping_is_table_one():
    assignment = dld.rating_assignment(dld.interval_edges((1.0, 5.0), 0.1))
    expected = {0: range(0, 5), 1: range(5, 15), 2: range(15, 25), 3: range(25, 35), 4: range(35, 40)}
    # Eq. (7): j in [10m - 15, 10m - 6] for m = 2, 3, 4
    for m in (2, 3, 4):
        assert list(expected[m - 1]) == list(range(10 * m - 15, 10 * m - 6 + 1))
    for rating, js in expected.items():
        assert assignment[:, rating].nonzero().flatten().tolist() == list(js)
    assert torch.equal(assignment.sum(1), torch.ones(40, dtype=assignment.dtype))


def test_forward_outputs_distribution_score_and_ratings():
    torch.manual_seed(0)
    model = dld.build(**TINY).eval()
    out = model(torch.randn(3, 3, 32, 32))
    p = out.extras["distribution"]
    assert p.shape == (3, 40) and (p > 0).all()
    assert torch.allclose(p.sum(1), torch.ones(3))
    mids = torch.tensor([1.05 + 0.1 * j for j in range(40)])
    assert torch.allclose(out.score, p @ mids, atol=1e-5)
    r = out.extras["rating_distribution"]
    assert torch.allclose(r[:, 0], p[:, :5].sum(1)) and torch.allclose(r[:, 2], p[:, 15:25].sum(1))
    assert ((out.score > 1.05 - 1e-6) & (out.score < 4.95 + 1e-6)).all()


def test_loss_matches_hand_computation():
    model = dld.build(**TINY)
    uniform = torch.full((2, 40), 1 / 40)
    # ŷ = mean of midpoints = 3.0; r̂ = [5, 10, 10, 10, 5] / 40
    r_hat = torch.tensor([[0.125, 0.25, 0.25, 0.25, 0.125]] * 2)
    out = RegressorOutput(score=torch.tensor([3.0, 3.0]), extras={"distribution": uniform, "rating_distribution": r_hat})
    sigma = 0.5 * math.sqrt(2)
    batch = {
        "score": torch.tensor([3.0, 4.0]),
        "rating_counts": torch.tensor([[0.0, 0, 60, 0, 0], [0, 0, 0, 0, 0]]),  # second: unknown
        "std": torch.tensor([sigma, sigma]),
    }
    terms = model.loss_terms(out, batch)
    l_ad = sum(
        math.sqrt(sum((1 / 40 - t) ** 2 for t in reference_target(mu, sigma))) for mu in (3.0, 4.0)
    ) / 2
    assert float(terms["ad"]) == pytest.approx(l_ad, rel=1e-5)
    # only the first sample has a histogram: ||r̂ - (0,0,1,0,0)||₂ = sqrt(2·.125² + 2·.25² + .75²)
    assert float(terms["rd"]) == pytest.approx(math.sqrt(0.71875), rel=1e-6)
    assert float(terms["score"]) == pytest.approx((math.exp(0) - 1) + (math.exp(1) - 1), rel=1e-6)
    assert float(model.loss(out, batch)) == pytest.approx(l_ad + math.sqrt(0.71875) + math.e - 1, rel=1e-5)
    mean_model = dld.build(**TINY, score_reduction="mean", lambda_rd=2.0)
    expected = l_ad + 2 * math.sqrt(0.71875) + (math.e - 1) / 2
    assert float(mean_model.loss(out, batch)) == pytest.approx(expected, rel=1e-5)


def test_sigma_fallbacks():
    model = dld.build(**TINY)
    counts = torch.tensor([[0.0, 1, 2, 1, 0]])  # ratings 2,3,3,4: population std sqrt(0.5)
    p, r, has = model.targets({"score": torch.tensor([3.0]), "rating_counts": counts, "std": torch.tensor([float("nan")])})
    assert p[0].tolist() == pytest.approx(reference_target(3.0, math.sqrt(0.5)), abs=1e-9)
    assert r[0].tolist() == pytest.approx([0, 0.25, 0.5, 0.25, 0]) and has.tolist() == [True]
    no_labels = {"score": torch.tensor([3.3]), "rating_counts": torch.zeros(1, 5), "std": torch.tensor([float("nan")])}
    with pytest.raises(ValueError, match="default_std"):
        model.targets(no_labels)
    p, _, has = dld.build(**TINY, default_std=0.7).targets(no_labels)
    assert p[0].tolist() == pytest.approx(reference_target(3.3, 0.7), abs=1e-7) and has.tolist() == [False]
    with pytest.raises(ValueError, match="rating_counts"):
        model.targets({"score": torch.tensor([3.0]), "rating_counts": torch.ones(1, 4), "std": torch.tensor([0.5])})


def test_config_validation():
    with pytest.raises(ValueError, match="bogus"):
        dld.build(**TINY, bogus=1)
    with pytest.raises(ValueError, match="whole number"):
        dld.DualLabelDistributionConfig(score_range=(1.0, 5.05), interval=0.1)
    with pytest.raises(ValueError, match="score_reduction"):
        dld.DualLabelDistributionConfig(score_reduction="max")
    cfg = dld.DualLabelDistributionConfig(score_range=[1, 5])  # YAML lists become tuples
    assert cfg.score_range == (1.0, 5.0) and cfg.num_bins == 40
    assert dld.PAPER_RECIPE["schedule"] == {"name": "step", "step_size": 30, "gamma": 0.1}
    assert dld.PAPER_RECIPE["train"] == {"epochs": 90, "batch_size": 256}


def test_default_is_imagenet_mobilenetv2_with_paper_size():
    model = dld.build()
    n_params = sum(p.numel() for p in model.parameters())
    assert model.head[1].in_features == 1280 and model.head[1].out_features == 40
    assert n_params / 1e6 == pytest.approx(2.28, abs=0.005)  # Table II: 2.28 M
    # ImageNet weights, not a random init: the first BN's running stats are not the init values
    bn = model.backbone.bn1
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_preprocess_resize_then_centre_crop():
    model = dld.build(**TINY)
    image = Image.new("RGB", (350, 300), (120, 60, 30))
    assert model.preprocess()(image).shape == (3, 224, 224)
    assert model.train_preprocess()(image).shape == (3, 224, 224)
    direct = dld.build(**TINY, resize=None, image_size=64)
    assert direct.preprocess()(image).shape == (3, 64, 64)


def test_a_few_steps_lower_the_loss(fit_fixed_batch):
    torch.manual_seed(0)
    model = dld.build(**TINY, dropout=0.0).train()
    images = torch.randn(8, 3, 32, 32)
    batch = {
        "image": images,
        "score": torch.linspace(1.5, 4.5, 8),
        "rating_counts": torch.randint(0, 10, (8, 5)).float(),
        "std": torch.full((8,), 0.6),
    }
    losses = fit_fixed_batch(model, batch, 15)
    assert losses[-1] < 0.5 * losses[0]


def test_readout_runs_in_float32_under_autocast():
    model = dld.build(**TINY).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    assert out.score.dtype == torch.float32 and out.extras["distribution"].dtype == torch.float32
