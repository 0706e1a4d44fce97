"""The monotone maps both routes use on a new scale (scorers.monotone_map): the choice by
leave-one-out, the fits themselves, what a map does to scores with intervals, and the JSON
record a scoring recipe carries into a bundle."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scorers.base import Scores
from scorers.monotone_map import MonotoneMap, choose_map, fit_isotonic, leave_one_out_mae


def test_the_map_is_chosen_by_leave_one_out():
    x = np.linspace(0, 1, 30)
    linear = choose_map(x, 3 * x + 1)
    assert linear.kind == "linear" and linear(torch.tensor([0.5])).item() == pytest.approx(2.5)
    step = choose_map(x, (x > 0.5).astype(float) * 10)
    assert step.kind == "isotonic"
    assert step.leave_one_out_mae["isotonic"] < step.leave_one_out_mae["linear"]
    assert choose_map([1.0, 2.0], [10.0, 20.0]).kind == "linear"  # under 3 references: no step fit
    flipped = choose_map(x, -2 * x)  # a reversed new scale is a linear map with a negative slope
    assert flipped(torch.tensor([1.0])).item() == pytest.approx(-2.0)


def test_identity_is_kept_where_the_scores_are_on_the_target_scale_already():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 5, 40)
    y = x + rng.normal(0, 0.3, 40)
    kept = choose_map(x, y, kinds=("identity", "linear", "isotonic"))
    assert kept.kind == "identity" and kept.leave_one_out_mae["identity"] <= kept.leave_one_out_mae["linear"]
    shrunk = choose_map(0.5 * x + 1.5, y, kinds=("identity", "linear", "isotonic"))  # pulled to the middle
    assert shrunk.kind == "linear" and shrunk.slope == pytest.approx(2.0, abs=0.2)


def test_the_isotonic_fit_pools_violators_and_equal_inputs():
    fitted = fit_isotonic(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert fitted.knots_x == (0.0, 1.5, 3.0) and fitted.knots_y == (1.0, 2.5, 4.0)
    tied = fit_isotonic(np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0, 4.0]))
    assert tied.knots_x == (0.0, 1.0, 2.0) and tied.knots_y == (0.0, 2.0, 4.0)  # one knot per input
    assert tied.apply(np.array([-5.0, 0.5, 9.0])).tolist() == [0.0, 1.0, 4.0]  # flat beyond the ends
    assert leave_one_out_mae("identity", np.array([1.0, 2.0]), np.array([2.0, 2.0])) == pytest.approx(0.5)


def test_a_map_moves_values_and_interval_ends_and_scales_the_std():
    scores = Scores(torch.tensor([2.0, 3.0]), torch.tensor([0.5, 0.1]), torch.tensor([1.0, 2.8]),
                    torch.tensor([3.0, 3.2]))
    moved = MonotoneMap("linear", slope=2.0, intercept=1.0).map_scores(scores, low=0.0, high=6.5)
    assert moved.value.tolist() == [5.0, 6.5]  # 7.0 clamped to the range
    assert moved.std.tolist() == pytest.approx([1.0, 0.2])
    assert moved.lower.tolist() == pytest.approx([3.0, 6.5]) and moved.upper.tolist() == pytest.approx([6.5, 6.5])
    assert MonotoneMap("identity").map_scores(scores, 0.0, 1.0) is scores


def test_a_map_round_trips_through_its_record_and_a_bad_record_says_why():
    for fitted in (choose_map(np.arange(10.0), np.arange(10.0) ** 2, kinds=("isotonic",)),
                   MonotoneMap("linear", slope=-1.5, intercept=2.0), MonotoneMap("identity")):
        again = MonotoneMap.from_dict(fitted.to_dict())
        assert again == fitted and again.apply(np.array([3.3])) == pytest.approx(fitted.apply(np.array([3.3])))
    for record, words in [({"kind": "spline"}, "not a map record"),
                          ({"kind": "linear", "slope": float("nan"), "intercept": 0.0}, "finite slope"),
                          ({"kind": "isotonic", "knots_x": [1.0, 0.0], "knots_y": [0.0, 1.0]}, "increasing knots_x"),
                          ({"kind": "isotonic", "knots_x": [0.0, 1.0], "knots_y": [0.0]}, "equal-length")]:
        with pytest.raises(ValueError, match=words):
            MonotoneMap.from_dict(record)
    with pytest.raises(ValueError, match="at least 2 references"):
        choose_map([1.0], [1.0])


def test_a_recipe_scores_through_its_output_map_and_refuses_a_bad_one():
    from orderlearn.bank.scoring_recipe import ScoringRecipe, recipe_problem

    plain = ScoringRecipe(scorer="bt-exact", scorer_args={}, low=0.0, high=10.0, checkpoints=["ckpt.safetensors"])
    line = MonotoneMap("linear", slope=1.5, intercept=-1.0)
    mapped = ScoringRecipe(**{**plain.__dict__, "output_map": line.to_dict()})
    probs = torch.softmax(torch.randn(6, 8, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    bank_scores = torch.linspace(2.0, 8.0, 8, dtype=torch.float64)
    before, after = plain.score_with(probs, bank_scores), mapped.score_with(probs, bank_scores)
    assert torch.allclose(after.value, (1.5 * before.value - 1.0).clamp(0.0, 10.0))
    assert torch.allclose(mapped.score_with(probs, bank_scores, "bt-grid").value,
                          plain.score_with(probs, bank_scores, "bt-grid").value)  # another scorer: unmapped
    assert recipe_problem(mapped) is None
    broken = ScoringRecipe(**{**plain.__dict__, "output_map": {"kind": "linear", "slope": "steep"}})
    assert recipe_problem(broken).startswith("output_map: a linear map needs finite slope")


def test_an_order_keeping_choice_never_takes_a_flat_or_decreasing_map():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([3.0, 2.9, 3.1, 2.8, 3.0, 2.7])  # no trend: the references' mean predicts them best
    free = choose_map(x, y, kinds=("identity", "linear", "isotonic"))
    assert free.kind in ("linear", "isotonic") and np.ptp(free.apply(np.array([1.0, 6.0]))) < 0.5
    kept = choose_map(x, y, kinds=("identity", "linear", "isotonic"), increasing=True)
    assert kept.kind == "identity"  # the only order-keeping candidate left
    with pytest.raises(ValueError, match="no order-keeping map"):
        choose_map(x, -x, kinds=("linear", "isotonic"), increasing=True)
