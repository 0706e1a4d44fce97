"""Pictures of one scoring decision: why this photo got this score.

One PNG per image, three panels:

1. the Bradley–Terry negative log-likelihood over the score range (LMOL's Fig. 6), with the
   estimate and its reported 95% interval (and the true score when known);
2. the comparisons with the bank as points by reference score: P(photo better) − P(reference
   better), coloured by the comparator's verdict FIRST (photo better) / SECOND / SIMILAR, so
   the crossing from "better than" to "worse than" around the estimate is visible;
3. the scored (aligned) crop beside the references whose scores are nearest to the estimate,
   each with its score and the verdict against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import scorers  # noqa: E402

from orderlearn.bank.scoring_recipe import ScoringRecipe  # noqa: E402
from orderlearn.types import PairLabel  # noqa: E402

LABEL_COLOURS = {PairLabel.FIRST: "#1a9850", PairLabel.SECOND: "#d73027", PairLabel.SIMILAR: "#7f7f7f"}
LABEL_TEXT = {PairLabel.FIRST: "FIRST (photo better)", PairLabel.SECOND: "SECOND (reference better)",
              PairLabel.SIMILAR: "SIMILAR"}
NEAREST = 6
CURVE_POINTS = 801


@dataclass
class Decision:
    """Everything one picture shows."""

    title: str
    crop: Image.Image
    probs: torch.Tensor  # [R, K]: what the scorer read for this image
    ref_scores: torch.Tensor  # [R]
    estimate: float
    lower: Optional[float]
    upper: Optional[float]
    truth: Optional[float] = None


def nll_curve(recipe: ScoringRecipe, probs: torch.Tensor, ref_scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(grid, NLL − min NLL) of one image under the run's link and hard/soft setting."""
    step = (recipe.high - recipe.low) / (CURVE_POINTS - 1)
    link = {} if recipe.link is None else {"link": dict(recipe.link)}
    grid_scorer = scorers.create("bt-grid", low=recipe.low, high=recipe.high, step=step,
                                 soft=bool(recipe.scorer_args.get("soft", False)), **link)
    nll = grid_scorer.nll(probs[None].double(), ref_scores.double())[0]
    return grid_scorer.grid().numpy(), (nll - nll.min()).numpy()


def nearest_references(ref_scores: torch.Tensor, estimate: float, count: int = NEAREST) -> list[int]:
    order = torch.argsort((ref_scores - estimate).abs(), stable=True)[:count]
    return sorted(order.tolist(), key=lambda i: float(ref_scores[i]))


def plot_decision(out: Path, decision: Decision, recipe: ScoringRecipe,
                  reference_image: Callable[[int], Optional[Image.Image]]) -> Path:
    """Write the three-panel picture of ``decision`` to ``out`` (PNG)."""
    fig = plt.figure(figsize=(13.5, 3.6), dpi=80)
    grid = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.1, 1.4], wspace=0.28)
    _nll_panel(fig.add_subplot(grid[0]), decision, recipe)
    _comparison_panel(fig.add_subplot(grid[1]), decision)
    _faces_panel(fig, grid[2], decision, reference_image)
    fig.suptitle(decision.title, fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.84, bottom=0.15)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def _mark_estimate(ax: plt.Axes, d: Decision) -> None:
    if d.lower is not None and d.upper is not None:
        ax.axvspan(d.lower, d.upper, color="#4575b4", alpha=0.15, label="95% interval")
    ax.axvline(d.estimate, color="#4575b4", lw=1.5, label=f"estimate {d.estimate:.2f}")
    if d.truth is not None:
        ax.axvline(d.truth, color="black", lw=1, ls="--", label=f"true {d.truth:.2f}")


def _nll_panel(ax: plt.Axes, d: Decision, recipe: ScoringRecipe) -> None:
    grid, nll = nll_curve(recipe, d.probs, d.ref_scores)
    ax.plot(grid, nll, color="black", lw=1.2)
    _mark_estimate(ax, d)
    visible = nll[(grid >= d.estimate - 1.0) & (grid <= d.estimate + 1.0)]
    ax.set_ylim(-0.05 * max(visible.max(), 1e-6), 1.05 * max(visible.max(), 1e-6))
    ax.set_xlim(recipe.low, recipe.high)
    ax.set_xlabel("score s")
    ax.set_ylabel("NLL(s) − min")
    ax.set_title("Bradley–Terry negative log-likelihood", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _comparison_panel(ax: plt.Axes, d: Decision) -> None:
    probs = d.probs.double()
    margin = (probs[:, int(PairLabel.FIRST)] - probs[:, int(PairLabel.SECOND)]).numpy()
    verdict = probs.argmax(-1).numpy()
    refs = d.ref_scores.numpy()
    points = []
    for label in PairLabel:
        chosen = verdict == int(label)
        if chosen.any():
            points.append(ax.scatter(refs[chosen], margin[chosen], s=9, color=LABEL_COLOURS[label],
                                     label=f"{LABEL_TEXT[label]}: {chosen.sum()}"))
    _mark_estimate(ax, d)
    ax.axhline(0.0, color="#999999", lw=0.6)
    ax.set_ylim(-1.08, 1.08)
    ax.set_xlabel("reference score")
    ax.set_ylabel("P(FIRST) − P(SECOND)")
    ax.set_title(f"comparisons with {len(refs)} references", fontsize=9)
    ax.legend(handles=points, fontsize=7, loc="upper right")


def _faces_panel(fig: plt.Figure, cell: object, d: Decision, reference_image: Callable[[int], Optional[Image.Image]]) -> None:
    inner = cell.subgridspec(2, 1 + NEAREST // 2, width_ratios=[2.0] + [1.0] * (NEAREST // 2), wspace=0.05, hspace=0.35)
    ax = fig.add_subplot(inner[:, 0])
    ax.imshow(d.crop)
    ax.set_title("scored crop", fontsize=9)
    ax.axis("off")
    verdicts = d.probs.argmax(-1)
    for k, index in enumerate(nearest_references(d.ref_scores, d.estimate)):
        ax = fig.add_subplot(inner[k // (NEAREST // 2), 1 + k % (NEAREST // 2)])
        image = reference_image(index)
        label = PairLabel(int(verdicts[index]))
        if image is not None:
            ax.imshow(image)
        else:
            ax.text(0.5, 0.5, "no image", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        ax.set_title(f"{float(d.ref_scores[index]):.2f} · {label.name}", fontsize=7, color=LABEL_COLOURS[label])
        ax.set_xticks([])
        ax.set_yticks([])


def plot_decisions(out_dir: Path, decisions: Sequence[tuple[str, Decision]], recipe: ScoringRecipe,
                   reference_image: Callable[[int], Optional[Image.Image]]) -> list[Path]:
    """One PNG per (file stem, decision) under ``out_dir``."""
    return [plot_decision(Path(out_dir) / f"{stem}.png", d, recipe, reference_image) for stem, d in decisions]


def decisions_for(names: Sequence[str], scored: Sequence[Path], for_scoring: torch.Tensor, scores: scorers.Scores,
                  ref_scores: torch.Tensor, truths: Optional[Sequence[float]] = None) -> list[tuple[str, Decision]]:
    """(file stem, Decision) of each image: ``names[i]`` was scored as the image file ``scored[i]``
    with the probabilities ``for_scoring[i]``; ``truths[i]`` (NaN: unknown) is marked when given."""
    from orderlearn.data.images import load_image

    out = []
    for i, (name, path) in enumerate(zip(names, scored)):
        truth = None if truths is None or truths[i] != truths[i] else float(truths[i])
        out.append((f"{i:03d}_{Path(name).stem}", Decision(
            title=f"{name}: {float(scores.value[i]):.3f}" + (f" (true {truth:.3f})" if truth is not None else ""),
            crop=load_image(path), probs=for_scoring[i], ref_scores=ref_scores, estimate=float(scores.value[i]),
            lower=None if scores.lower is None else float(scores.lower[i]),
            upper=None if scores.upper is None else float(scores.upper[i]), truth=truth)))
    return out
