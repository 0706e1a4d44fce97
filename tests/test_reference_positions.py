"""Reference positions (scorers/references.py): where a comparator places each reference, fitted
on validation comparisons, and what that does for scoring with few references."""
from __future__ import annotations

import pytest
import torch

from scorers import ActiveScorer, ExactBTScorer, Link, compare_from_probs, fit_reference_positions
from scorers.references import calibrate

from test_scorers import sampled_hard_probs

pytestmark = pytest.mark.usefixtures("one_thread")

LINK = Link(slope=6.0, tie_width=0.3)


def biased_bank(seed: int, n_val: int = 400, n_test: int = 300, r: int = 60):
    """A comparator that answers as if every reference sat ``bias`` away from its known score (as a
    trained comparator does with noisy ratings): validation and test answers drawn from the link."""
    gen = torch.Generator().manual_seed(seed)
    known = 1.2 + 3.6 * torch.rand(r, generator=gen, dtype=torch.float64)
    bias = 0.4 * torch.randn(r, generator=gen, dtype=torch.float64)
    val = 1.2 + 3.6 * torch.rand(n_val, generator=gen, dtype=torch.float64)
    test = 1.2 + 3.6 * torch.rand(n_test, generator=gen, dtype=torch.float64)
    seen = (known + bias).clamp(1.0, 5.0)
    return known, seen, val, test, sampled_hard_probs(val, seen, LINK, seed + 1), sampled_hard_probs(test, seen, LINK, seed + 2)


def test_positions_recover_where_the_comparator_places_the_references():
    known, seen, val, _, val_probs, _ = biased_bank(0)
    positions = fit_reference_positions(val_probs, val, LINK)
    assert positions.shape == known.shape and positions.dtype == torch.float64
    error_fitted = (positions - seen).abs().mean()
    error_known = (known - seen).abs().mean()
    assert error_fitted < 0.1 < error_known  # 400 answers per reference pin it to a tenth of a point


def test_position_is_the_reference_scored_from_its_own_side():
    """One reference answered against validation images is exactly one BT problem, swapped."""
    _, _, val, _, val_probs, _ = biased_bank(1, r=5)
    positions = fit_reference_positions(val_probs, val, LINK)
    for i in range(5):
        own = val_probs[:, i, [1, 0, 2]].unsqueeze(0)  # the reference is "first" against each validation image
        alone = ExactBTScorer(link=LINK).score(own, val).value
        assert float(alone[0]) == pytest.approx(float(positions[i]), abs=1e-9)


def test_a_reference_above_every_validation_image_sits_at_the_range_top():
    val = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    probs = torch.zeros(3, 1, 3, dtype=torch.float64)
    probs[:, 0, 1] = 1.0  # every validation image: SECOND (the reference is better)
    assert float(fit_reference_positions(probs, val, LINK, high=5.0)[0]) == 5.0


def test_few_references_score_better_at_their_positions():
    """The point of the positions: with a budget, per-reference bias does not average out."""
    known, _, val, test, val_probs, test_probs = biased_bank(2)
    positions = fit_reference_positions(val_probs, val, LINK)
    scorer = ExactBTScorer(link=LINK)

    def mae(refs: torch.Tensor) -> float:
        active = ActiveScorer(scorer, budget=12, batch=4).score(compare_from_probs(test_probs), refs, len(test))
        return float((active.scores.value - test).abs().mean())

    assert mae(positions) < 0.8 * mae(known)


def test_calibrate_alternates_link_and_positions():
    known, seen, val, _, val_probs, _ = biased_bank(3)
    start = Link()  # k 10, τ 0.2: not the comparator's link
    link_only = calibrate(val_probs, val, known, start, fit_link=True, fit_positions=False)
    assert link_only.positions is None
    both = calibrate(val_probs, val, known, start, fit_link=True, fit_positions=True)
    # on the fitted positions the link is closer to the one the answers were drawn from
    assert abs(both.link.slope - LINK.slope) < abs(link_only.link.slope - LINK.slope)
    assert (both.positions - seen).abs().mean() < 0.1
    positions_only = calibrate(val_probs, val, known, LINK, fit_link=False, fit_positions=True)
    assert positions_only.link is LINK
    assert torch.equal(positions_only.positions, fit_reference_positions(val_probs, val, LINK))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"probs \[V, R, K\] and truth \[V\]"):
        fit_reference_positions(torch.zeros(3, 2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="no validation comparisons"):
        fit_reference_positions(torch.zeros(0, 2, 3), torch.zeros(0))
