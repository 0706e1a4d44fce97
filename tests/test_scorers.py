"""Tests of the BT scoring engine (scorers/): link, grid vs exact, priors, uncertainty, active
selection, order combination and the registry. Tiny shapes; every expectation is a real value."""
from __future__ import annotations

import csv
import io
import math

import pytest
import torch
import torch.nn.functional as F

import scorers
from scorers import (ActiveScorer, ExactBTScorer, GridBTScorer, Link, Scores, combine_orders,
                     compare_from_probs)
from scorers.likelihood import nll_derivatives

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def sampled_hard_probs(true: torch.Tensor, refs: torch.Tensor, link: Link, seed: int) -> torch.Tensor:
    """One-hot probabilities of labels drawn from the link at the true δ (a calibrated comparator)."""
    gen = torch.Generator().manual_seed(seed)
    p = link.probs(true[:, None] - refs[None, :])
    labels = torch.multinomial(p.reshape(-1, 3), 1, generator=gen).reshape(p.shape[:2])
    return F.one_hot(labels, 3).to(torch.float64)


def noisy_probs(n: int, r: int, seed: int, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Realistic inputs: true scores, reference scores, link probabilities with per-image error
    and logit noise (mis-calibrated against the default link)."""
    gen = torch.Generator().manual_seed(seed)
    true = 1.2 + 3.6 * torch.rand(n, generator=gen, dtype=torch.float64)
    refs = 1.0 + 4.0 * torch.rand(r, generator=gen, dtype=torch.float64)
    seen = true + 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)
    logits = Link(slope=6.0, tie_width=0.3).log_probs(seen[:, None] - refs[None, :], num_classes)
    logits = logits + 0.8 * torch.randn(logits.shape, generator=gen, dtype=torch.float64)
    return true, refs, torch.softmax(logits, -1)


# -- Link ---------------------------------------------------------------------------------------
def test_link_probabilities_hand_computed_and_sum_to_one():
    link = Link(slope=10.0, tie_width=0.2)
    p = link.probs(torch.tensor([0.5, 0.0, -0.1], dtype=torch.float64))
    # δ = 0.5: P(FIRST) = σ(10·0.3) = σ(3), P(SECOND) = σ(10·(−0.7)) = σ(−7)
    assert p[0, 0].item() == pytest.approx(0.9525741268224334, abs=1e-12)
    assert p[0, 1].item() == pytest.approx(0.0009110511944006454, abs=1e-12)
    assert p[0, 2].item() == pytest.approx(1 - sig(3) - sig(-7), abs=1e-12)
    # δ = 0: symmetric, P(FIRST) = P(SECOND) = σ(−2)
    assert p[1, 0].item() == pytest.approx(sig(-2), abs=1e-12) and p[1, 1].item() == pytest.approx(sig(-2), abs=1e-12)
    assert torch.allclose(p.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)
    two = Link(slope=10.0).probs(torch.tensor([0.5], dtype=torch.float64), num_classes=2)
    assert two[0, 0].item() == pytest.approx(sig(5), abs=1e-12) and two.sum().item() == pytest.approx(1.0)


def test_link_log_probs_stable_in_the_tails():
    link = Link(slope=10.0, tie_width=0.2)
    delta = torch.tensor([-40.0, -3.0, 0.0, 3.0, 40.0], dtype=torch.float64)
    lp = link.log_probs(delta)
    assert torch.isfinite(lp).all()
    # where the naive formula is representable the stable one agrees with it
    naive = torch.log(1 - torch.sigmoid(10 * (delta - 0.2)) - torch.sigmoid(10 * (-delta - 0.2)))
    assert torch.allclose(lp[1:4, 2], naive[1:4], atol=1e-9)
    # at δ = 40 the naive SIMILAR is log(0) = −inf; the stable one is ≈ −k(δ − τ) + log(1 − e^{−2kτ})
    assert lp[4, 2].item() == pytest.approx(-10 * 39.8 + math.log(1 - math.exp(-4)), abs=1e-9)


@pytest.mark.parametrize("slope,tie", [(10.0, 0.2), (3.0, 0.05), (25.0, 1.0)])
def test_every_log_probability_is_concave(slope, tie):
    """log(1 − σ(a) − σ(b)) is concave too (second differences ≤ 0), hence the NLL is convex."""
    h = 1e-3
    delta = torch.arange(-3.0, 3.0, h, dtype=torch.float64)
    lp = Link(slope, tie).log_probs(delta)
    second = (lp[2:] - 2 * lp[1:-1] + lp[:-2]) / h ** 2
    assert second.max().item() <= 1e-6
    assert second[:, 2].min().item() < -1.0  # and genuinely curved, not a trivially flat column


def test_analytic_derivatives_match_autograd():
    true, refs, probs = noisy_probs(5, 30, seed=3)
    w = probs.clone()
    s = torch.tensor([1.3, 2.0, 2.9, 3.7, 4.6], dtype=torch.float64, requires_grad=True)
    link = Link(8.0, 0.25)
    nll = -(w * link.log_probs(s[:, None] - refs[None, :])).sum((1, 2))
    (grad,) = torch.autograd.grad(nll.sum(), s, create_graph=True)
    (curv,) = torch.autograd.grad(grad.sum(), s)
    f, g, h = nll_derivatives(s.detach(), refs, w, link, 0.25)
    assert torch.allclose(f, nll.detach(), atol=1e-9)
    assert torch.allclose(g, grad.detach(), atol=1e-8)
    assert torch.allclose(h, curv, atol=1e-7)
    assert (h > 0).all()


def test_link_fit_recovers_known_parameters():
    gen = torch.Generator().manual_seed(7)
    truth = Link(slope=6.0, tie_width=0.3)
    delta = 3.0 * torch.rand(8000, generator=gen, dtype=torch.float64) - 1.5
    probs = truth.probs(delta)
    labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    fitted = Link().fit(delta, labels)  # starts from k = 10, τ = 0.2
    assert fitted.slope == pytest.approx(6.0, abs=0.3)
    assert fitted.tie_width == pytest.approx(0.3, abs=0.015)
    soft = Link().fit(delta, probs)  # expected log-likelihood: exact recovery
    assert soft.slope == pytest.approx(6.0, abs=1e-3) and soft.tie_width == pytest.approx(0.3, abs=1e-4)
    two = Link().fit(delta, Link(4.0).probs(delta, 2))
    assert two.slope == pytest.approx(4.0, abs=1e-3) and two.tie_width == 0.2  # τ untouched for K = 2


def test_link_rejects_bad_parameters():
    with pytest.raises(ValueError, match="slope"):
        Link(slope=0.0)
    with pytest.raises(ValueError, match="tie_width"):
        Link(tie_width=-0.1)
    with pytest.raises(ValueError, match="unknown link key"):
        Link.from_config({"slop": 3})


# -- grid and exact BT ----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [GridBTScorer, ExactBTScorer])
def test_sign_convention(make):
    refs = torch.linspace(2.0, 4.0, 9, dtype=torch.float64)
    first = F.one_hot(torch.zeros(1, 9, dtype=torch.long), 3).double()  # test beats every reference
    second = F.one_hot(torch.ones(1, 9, dtype=torch.long), 3).double()
    up, down = make().score(first, refs), make().score(second, refs)
    assert up.value.item() > refs.max().item() and down.value.item() < refs.min().item()
    # mixed: beats the lower half, loses to the upper half, SIMILAR to the middle → about 3.0
    labels = torch.tensor([[0, 0, 0, 0, 2, 1, 1, 1, 1]])
    mid = make().score(F.one_hot(labels, 3).double(), refs)
    assert mid.value.item() == pytest.approx(3.0, abs=1e-3)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("num_classes", [3, 2])
def test_grid_and_exact_agree(soft, num_classes):
    _, refs, probs = noisy_probs(40, 50, seed=11, num_classes=num_classes)
    grid = GridBTScorer(soft=soft).score(probs, refs)
    exact = ExactBTScorer(soft=soft).score(probs, refs)
    assert (grid.value - exact.value).abs().max().item() <= 1e-3 + 1e-12
    # where the posterior is not truncated by the range, Laplace std ≈ grid posterior std
    interior = (exact.lower > 1.0) & (exact.upper < 5.0)
    assert interior.sum() > 20
    ratio = grid.std[interior] / exact.std[interior]
    assert ratio.min().item() > 0.85 and ratio.max().item() < 1.15


@pytest.mark.parametrize("seed", range(6))
def test_exact_and_grid_agree_to_the_grid_step_on_random_inputs(seed):
    """Random links, labels, class counts, masks and ranges: the grid argmin is within one grid
    step of the exact minimiser (convexity puts the minimiser between the argmin's neighbours)."""
    gen = torch.Generator().manual_seed(100 + seed)
    num_classes, soft = (3, 2)[seed % 2], seed % 3 == 0
    low, high = (1.0, 5.0) if seed < 4 else (0.0, 10.0)
    link = Link(slope=float(2.0 + 12.0 * torch.rand(1, generator=gen)), tie_width=float(0.05 + 0.4 * torch.rand(1, generator=gen)))
    refs = low + (high - low) * torch.rand(37, generator=gen, dtype=torch.float64)
    probs = torch.softmax(4.0 * torch.randn(23, 37, num_classes, generator=gen, dtype=torch.float64), -1)
    mask = torch.rand(23, 37, generator=gen) < 0.6
    grid = GridBTScorer(link=link, low=low, high=high, step=1e-3, soft=soft)
    exact = ExactBTScorer(link=link, low=low, high=high, soft=soft)
    for m in (None, mask):
        diff = (grid.score(probs, refs, m).value - exact.score(probs, refs, m).value).abs().max().item()
        assert diff <= 1e-3 + 1e-12


@pytest.mark.parametrize("prior_std", [None, 0.5])
@pytest.mark.parametrize("per_image", [False, True])
def test_exact_meets_the_optimality_conditions_of_the_reference_form(prior_std, per_image):
    """The fast Newton form is checked against the per-class reference derivatives: at every
    returned score the slope is zero (interior) or has the sign that makes the range edge optimal,
    and the std is 1/sqrt of the reference curvature there."""
    true, refs, probs = noisy_probs(60, 45, seed=8)
    extremes = F.one_hot(torch.tensor([[0] * 45, [1] * 45]), 3).double()  # beats / loses to every reference
    probs = torch.cat([probs, extremes])
    scorer = ExactBTScorer(link=Link(7.0, 0.25), prior_std=prior_std, prior_mean=3.0 if prior_std else None)
    if per_image:
        picked = torch.rand(62, 45, generator=torch.Generator().manual_seed(8)).argsort(1)[:, :12]
        probs, refs = probs[torch.arange(62)[:, None], picked], refs[picked]
    out = scorer.score(probs, refs)
    _, g, h = scorer.objective(out.value, probs, refs)
    interior = (out.value > 1.0) & (out.value < 5.0)
    assert interior.sum() > 30 and (prior_std is not None or (~interior).sum() >= 2)  # both cases exercised
    assert (g[interior].abs() / h[interior]).max().item() < 1e-9  # the Newton step left is below tol
    assert (g[out.value == 1.0] >= 0).all() and (g[out.value == 5.0] <= 0).all()
    # the last Newton step is taken without re-evaluating: the curvature is extrapolated along
    # it (ExactBTScorer._solve), so the std matches the one at the returned point to ~1e-6
    assert torch.allclose(out.std, h.rsqrt(), rtol=1e-5, atol=0)


def test_exact_converges_on_nearly_flat_objectives():
    """A steep link with few, widely spaced references saturates every comparison: slopes and
    curvatures near 1e-300 must neither stall the iteration nor produce NaN."""
    refs = torch.tensor([1.2, 2.0, 3.1, 4.4], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(25.0 * torch.randn(64, 4, 3, generator=gen, dtype=torch.float64), -1)
    for soft in (False, True):
        out = ExactBTScorer(link=Link(slope=120.0, tie_width=0.07), soft=soft).score(probs, refs)
        assert torch.isfinite(out.value).all() and ((out.value >= 1.0) & (out.value <= 5.0)).all()
        assert not torch.isnan(out.std).any()


def test_exact_is_the_minimum_of_the_nll():
    _, refs, probs = noisy_probs(6, 30, seed=5)
    scorer = ExactBTScorer()
    out = scorer.score(probs, refs)
    interior = (out.value > 1.0) & (out.value < 5.0)
    f0, g0, _ = scorer.objective(out.value, probs, refs)
    for eps in (1e-4, -1e-4):
        f1, _, _ = scorer.objective(out.value + eps, probs, refs)
        assert (f1[interior] >= f0[interior]).all()
    assert g0[interior].abs().max().item() < 1e-6


def test_per_image_reference_sets_equal_the_masked_bank():
    _, refs, probs = noisy_probs(6, 30, seed=4)
    gen = torch.Generator().manual_seed(4)
    picked = torch.rand(6, 30, generator=gen).topk(8, dim=1).indices  # 8 references per image
    mask = torch.zeros(6, 30, dtype=torch.bool).scatter_(1, picked, True)
    scorer = ExactBTScorer(prior_std=1.0, prior_mean=3.0)
    masked = scorer.score(probs, refs, mask)
    compact = scorer.score(probs[torch.arange(6)[:, None], picked], refs[picked])
    assert torch.allclose(masked.value, compact.value, atol=1e-9)
    assert torch.allclose(masked.std, compact.std, atol=1e-9)
    with pytest.raises(ValueError, match="ref_scores must be a tensor"):
        GridBTScorer().score(probs[torch.arange(6)[:, None], picked], refs[picked])


@pytest.mark.parametrize("make", [GridBTScorer, ExactBTScorer])
def test_no_divergence_at_the_extremes(make):
    refs = torch.linspace(1.0, 5.0, 7, dtype=torch.float64)
    all_first = F.one_hot(torch.zeros(2, 7, dtype=torch.long), 3).double()
    out = make().score(all_first, refs)
    assert torch.isfinite(out.value).all() and torch.allclose(out.value, torch.full((2,), 5.0, dtype=torch.float64))
    assert (out.lower >= 1.0).all() and (out.upper <= 5.0).all() and (out.lower <= out.value).all()
    all_second = F.one_hot(torch.ones(1, 7, dtype=torch.long), 3).double()
    assert make().score(all_second, refs).value.item() == 1.0


def test_map_prior_moves_estimate_toward_prior_mean():
    refs = torch.tensor([2.5, 3.0, 3.5, 4.0], dtype=torch.float64)
    probs = F.one_hot(torch.tensor([[0, 0, 2, 1]]), 3).double()  # about 3.5
    mle = ExactBTScorer().score(probs, refs)
    weak = ExactBTScorer(prior_std=1.0, prior_mean=2.0).score(probs, refs)
    strong = ExactBTScorer(prior_std=0.1, prior_mean=2.0).score(probs, refs)
    assert 2.0 < strong.value.item() < weak.value.item() < mle.value.item()
    assert strong.std.item() < 0.1  # the prior's precision adds to the curvature
    # default prior mean = mean reference score (3.25): the estimate moves down toward it, not below
    centred = ExactBTScorer(prior_std=0.3).score(probs, refs)
    assert 3.25 < centred.value.item() < mle.value.item()


@pytest.mark.parametrize("make", [GridBTScorer, ExactBTScorer])
def test_interval_coverage_is_about_95_percent(make):
    gen = torch.Generator().manual_seed(2)
    refs = 1.0 + 4.0 * torch.rand(60, generator=gen, dtype=torch.float64)
    true = 1.5 + 3.0 * torch.rand(300, generator=gen, dtype=torch.float64)
    probs = sampled_hard_probs(true, refs, Link(), seed=2)
    out = make().score(probs, refs)
    coverage = ((out.lower <= true) & (true <= out.upper)).double().mean().item()
    assert 0.88 <= coverage <= 0.99


def test_similar_label_with_zero_tie_width_is_an_error():
    refs = torch.tensor([2.0, 3.0], dtype=torch.float64)
    probs = F.one_hot(torch.tensor([[0, 2]]), 3).double()
    with pytest.raises(ValueError, match="tie_width = 0"):
        ExactBTScorer(link=Link(tie_width=0.0)).score(probs, refs)
    with pytest.raises(ValueError, match="tie_width = 0"):
        GridBTScorer(link=Link(tie_width=0.0)).score(probs, refs)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="K = 4"):
        ExactBTScorer().score(torch.rand(2, 3, 4), torch.rand(3))
    with pytest.raises(ValueError, match="ref_scores has 2 references"):
        GridBTScorer().score(torch.rand(2, 3, 3), torch.rand(2))
    with pytest.raises(ValueError, match="high"):
        ExactBTScorer(low=5.0, high=1.0)


def test_scores_rows_for_csv():
    s = Scores(torch.tensor([3.0, 4.0]), torch.tensor([0.1, 0.2]), torch.tensor([2.8, 3.6]), torch.tensor([3.2, 4.4]))
    rows = s.as_rows(names=["a.jpg", "b.jpg"], truth=[3.1, 3.9])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    assert buf.getvalue().splitlines()[0] == "name,truth,value,std,lower,upper"
    assert rows[1] == {"name": "b.jpg", "truth": 3.9, "value": 4.0, "std": pytest.approx(0.2),
                       "lower": pytest.approx(3.6), "upper": pytest.approx(4.4)}
    assert Scores(torch.tensor([1.0])).to_dict() == {"value": [1.0]}


# -- both orders ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["geometric", "arithmetic"])
def test_combine_orders_on_consistent_inputs_returns_forward(mode):
    _, _, fwd = noisy_probs(4, 6, seed=9)
    rev = fwd[..., [1, 0, 2]]  # (ref, test): FIRST and SECOND swap
    assert torch.allclose(combine_orders(fwd, rev, mode=mode), fwd, atol=1e-10)
    _, _, fwd2 = noisy_probs(4, 6, seed=9, num_classes=2)
    assert torch.allclose(combine_orders(fwd2, fwd2.flip(-1), mode=mode), fwd2, atol=1e-10)


def test_combine_orders_geometric_cancels_a_position_bias():
    logits = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64)  # unbiased (test, ref)
    bias = torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64)  # the first slot is favoured
    fwd = torch.softmax(logits + bias, -1)
    rev = torch.softmax(logits[:, [1, 0, 2]] + bias, -1)  # (ref, test) shown the other way round
    out = combine_orders(fwd, rev)
    assert torch.log(out[0, 0] / out[0, 1]).item() == pytest.approx(1.5, abs=1e-9)  # = 1.0 − (−0.5)
    arith = combine_orders(fwd, rev, mode="arithmetic")
    assert abs(torch.log(arith[0, 0] / arith[0, 1]).item() - 1.5) > 0.01
    with pytest.raises(ValueError, match="mode"):
        combine_orders(fwd, rev, mode="median")


# -- active selection -----------------------------------------------------------------------------
def _active_setup():
    gen = torch.Generator().manual_seed(1)
    refs = torch.linspace(1.0, 5.0, 120, dtype=torch.float64)
    true = 1.5 + 3.0 * torch.rand(60, generator=gen, dtype=torch.float64)
    return true, refs, sampled_hard_probs(true, refs, Link(), seed=1)


def test_active_scorer_reaches_full_bank_estimate_within_budget():
    true, refs, probs = _active_setup()
    scorer = ExactBTScorer()
    full = scorer.score(probs, refs)
    calls = []

    def compare(t, r):
        calls.append(t.numel())
        return probs[t, r]

    res = ActiveScorer(scorer, budget=24, batch=4).score(compare, refs, true.numel())
    assert (res.num_comparisons <= 24).all() and sum(calls) == int(res.num_comparisons.sum())
    assert (res.mask.sum(1) == res.num_comparisons).all()  # no reference asked twice
    assert (res.scores.value - full.value).abs().mean().item() < 0.04
    active_mae = (res.scores.value - true).abs().mean().item()
    gen = torch.Generator().manual_seed(0)
    rand_mask = torch.zeros_like(res.mask).scatter_(1, torch.rand(res.mask.shape, generator=gen).topk(24, 1).indices, True)
    random_mae = (scorer.score(probs, refs, rand_mask).value - true).abs().mean().item()
    assert active_mae < 0.8 * random_mae  # choosing references beats choosing them blindly


def test_active_scorer_stops_on_std_and_validates_comparator():
    true, refs, probs = _active_setup()
    res = ActiveScorer(ExactBTScorer(), budget=40, batch=4, stop_std=0.12).score(
        compare_from_probs(probs), refs, true.numel())
    used, std = res.num_comparisons, res.scores.std
    assert ((std < 0.12) | (used == 40)).all()  # each image ran until confident or out of budget
    assert (used < 40).sum() > 10 and (used % 4 == 0).all()  # most stopped early, in whole batches
    with pytest.raises(ValueError, match="compare_fn returned shape"):
        ActiveScorer(ExactBTScorer(), budget=8).score(lambda t, r: probs[t, r][:, :2], refs, 5)


def test_active_scorer_two_class_and_grid_base():
    true, refs, _ = _active_setup()
    probs2 = Link().probs(true[:, None] - refs[None, :], 2)  # a calibrated soft 2-class comparator
    res = ActiveScorer(GridBTScorer(soft=True), budget=12, batch=3).score(
        compare_from_probs(probs2), refs, true.numel(), num_classes=2)
    assert (res.num_comparisons == 12).all()
    assert (res.scores.value - true).abs().max().item() < 2e-3  # soft calibrated labels: the truth


# -- registry -------------------------------------------------------------------------------------
def test_registry_create_available_and_errors():
    assert {"bt-grid", "bt-exact"} <= set(scorers.available())
    s = scorers.create("bt-exact", link={"slope": 5.0, "tie_width": 0.1}, soft=True)
    assert isinstance(s, ExactBTScorer) and s.link == Link(5.0, 0.1) and s.soft
    with pytest.raises(ValueError, match="unknown scorer 'bt-nope'.*bt-exact"):
        scorers.create("bt-nope")
    with pytest.raises(ValueError, match="'bt-grid'.*stepp"):
        scorers.create("bt-grid", stepp=0.1)

    @scorers.register("test-dummy-scorer")
    class Dummy(GridBTScorer):
        pass

    assert isinstance(scorers.create("test-dummy-scorer"), Dummy)
    with pytest.raises(ValueError, match="already registered"):
        scorers.register("bt-grid")(Dummy)
