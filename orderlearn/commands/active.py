"""``orderlearn active``: how few comparisons per test image does a trained comparator need?

Scoring against the full bank costs R comparator calls per test image (R ≈ 350; one LMM
forward pass each for LLaVA). :class:`scorers.ActiveScorer` asks only the references that pin
the score down. This module measures that trade-off on a finished run with the *real*
comparator: the test images and the bank are embedded once, and every comparison the active
scorer requests is answered by the comparator's ``compare`` on those embeddings, in batches,
and counted per test image (comparisons are the cost; precomputed probabilities would hide
it). Any run works: a comparator run, or a regressor run through its comparator view; a run
with a checkpoint ensemble averages its checkpoints' answers as the run does.

For each budget (comparisons per image) it reports PC, MAE, RMSE, Spearman and the 95%
interval coverage of the active scores — raw, and with the posterior std scaled so that the same
procedure (the active scorer at that budget, run on the validation images) covers 95% of the
validation scores (:mod:`scorers.intervals`) — next to the same number of *random* references
(read from the full-bank answers, which are the same comparator's answers), and the full bank.
The base scorer is the run's own (its name, arguments, both-orders setting and, when the run
calibrated it, the link fitted on validation × bank comparisons), so the full-bank row is the
run's own order-learned result.

On the full bank it also contrasts, in one factorial table: grid (eq. 13) vs exact BT, hard vs
soft labels, the default vs the calibrated link (:meth:`scorers.Link.fit` on the comparator's
probabilities for validation × bank pairs, true δ known), one vs both presentation orders,
each with its 95% interval coverage (raw and validation-scaled).

Writes into ``--out`` (default ``RUN/active``): ``active.md``, ``active.csv`` (one row per
budget), ``variants.csv`` (full-bank contrasts), ``active.json`` (everything), ``active_scores.csv``
(per test image: true score, full-bank score, and each budget's score and comparisons) and
``active.png`` (PC and MAE against comparisons per image, log-2 axis, full-bank line).

Target of the issue: within ``PC_TOLERANCE`` (0.002) of the full bank at ``TARGET_BUDGET``
(32) comparisons or fewer; the report says whether it holds.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from accelerate import Accelerator
from torch import nn

import scorers
from scorers.intervals import interval_scale, widen
from scorers.references import calibrate as calibrate_scorer

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.comparisons import ComparatorCalls, Member, compare_all
from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import extra_metric_names, score_metrics
from orderlearn.runs.saved import SavedRun
from orderlearn.runs.saved import load_run as load_saved_run
from orderlearn.types import ScoredImage

DEFAULT_BUDGETS = (4, 8, 16, 32, 64)
PC_TOLERANCE = 0.002
TARGET_BUDGET = 32
LINK_CHOICES = ("run", "default", "calibrated")
REFERENCE_CHOICES = ("run", "known", "calibrated")
METRIC_COLUMNS = ("pc", "mae", "rmse", "spearman")


@dataclass
class LoadedRun:
    """A finished run (any method), ready to compare: each checkpoint's view, images embedded once."""

    saved: SavedRun
    test: list[ScoredImage]
    val: list[ScoredImage]
    members: list[Member]

    @property
    def path(self) -> Path:
        return self.saved.path

    @property
    def config(self) -> ExperimentConfig:
        return self.saved.config

    @property
    def accelerator(self) -> Accelerator:
        return self.saved.accelerator

    @property
    def bank(self) -> ReferenceBank:
        return self.saved.bank

    @property
    def truth(self) -> list[float]:
        return [s.score for s in self.test]


def load_run(run: Path, accelerator: Optional[Accelerator] = None) -> LoadedRun:
    """Load ``run`` (:func:`orderlearn.runs.saved.load_run`), check its data are unchanged, and
    embed bank, test and validation images once per checkpoint of its bank evaluator."""
    saved = load_saved_run(Path(run), accelerator)
    test = load_test(saved.config.data)
    splits = load_training(saved.config.data)
    check_unchanged(saved.path, test, splits.train + splits.val, saved.bank)
    route, members = saved.route, []
    for _, view in route.views():
        members.append(Member(view, route.embeddings(view, test, "features test"), route.embeddings(view, splits.val, "features validation"),
                              route.bank_embeddings(view)))
    return LoadedRun(saved, test, splits.val, members)


def check_unchanged(run: Path, test: Sequence[ScoredImage], training: Sequence[ScoredImage], bank: ReferenceBank,
                    tol: float = 2e-6) -> None:
    """Raise DataError when the dataset on disk is not the one the run was trained and scored on.

    Why: a dataset folder can be rewritten after a run (a regenerated synthetic set keeps its file
    names but not its faces or scores); the saved bank embeddings and checkpoint would then be
    compared with different images and every number would be silently wrong. The run's
    ``scores.csv`` (test paths and true scores, 6 decimals) and ``bank.json`` (reference scores)
    must agree with what the data readers return now.
    """
    recorded = run / "scores.csv"
    if recorded.is_file():
        with recorded.open(newline="") as handle:
            rows = [(Path(r["path"]).resolve(), float(r["true_score"])) for r in csv.DictReader(handle)]
        now = [(s.path.resolve(), s.score) for s in test]
        if len(rows) != len(now):
            raise DataError(f"{run}: scores.csv lists {len(rows)} test images but the data now gives {len(now)}; "
                            "the dataset changed since the run")
        for (path_then, score_then), (path_now, score_now) in zip(rows, now):
            if path_then != path_now or abs(score_then - score_now) > tol:
                raise DataError(f"{run}: test image {path_now} (true score {score_now:.6f}) differs from the run's "
                                f"{path_then} ({score_then:.6f}); the dataset changed since the run")
    scores_now = {s.path.resolve(): s.score for s in training}
    for ref in bank.samples:
        now = scores_now.get(ref.path.resolve())
        if now is None or abs(now - ref.score) > 1e-9:
            raise DataError(f"{run}: bank reference {ref.path} has score {ref.score} in bank.json but "
                            f"{'is not in the training split' if now is None else now} now; the dataset changed since the run")


def coverage(scores: scorers.Scores, truth: torch.Tensor) -> float:
    """Share of true scores inside the scorer's 95% interval (NaN when it gives none)."""
    if scores.lower is None or scores.upper is None:
        return math.nan
    t = truth.to(scores.lower.device, torch.float64)
    return float(((scores.lower.double() <= t) & (t <= scores.upper.double())).double().mean())


def summary(scores: scorers.Scores, truth: torch.Tensor, val_scores: Optional[scorers.Scores] = None,
            val_truth: Optional[torch.Tensor] = None, low: float = 1.0, high: float = 5.0) -> dict[str, float]:
    """PC, MAE, RMSE, Spearman, 95% coverage and mean posterior std of ``scores``; with
    validation scores of the same scorer, also the validation-fitted std scale
    (:func:`scorers.intervals.interval_scale`) and the coverage of the intervals it widens."""
    metrics = score_metrics(scores.value.double().cpu().tolist(), truth.tolist())
    std = scores.std
    finite = std[torch.isfinite(std)] if std is not None else None
    out = {**{k: metrics[k] for k in METRIC_COLUMNS}, "coverage95": coverage(scores, truth),
           "mean_std": float(finite.mean()) if finite is not None and finite.numel() else math.nan,
           "std_scale": math.nan, "coverage95_scaled": math.nan}
    if val_scores is not None and val_truth is not None and std is not None:
        scale = interval_scale(val_scores, val_truth)
        out["std_scale"] = scale
        out["coverage95_scaled"] = coverage(widen(scores, scale, low, high), truth)
    return out


def random_mask(n: int, r: int, m: int, seed: int) -> torch.Tensor:
    """[n, r] bool with ``m`` seeded random references per row."""
    keys = torch.rand(n, r, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, r, dtype=torch.bool)
    mask.scatter_(1, keys.argsort(1)[:, :m], True)
    return mask


def scorer_for(loaded: LoadedRun, name: str, **changes: Any) -> scorers.Scorer:
    """The run's scorer (its options when ``name`` is the run's scorer, defaults otherwise, and
    the run's link) with ``changes``."""
    evaluator = loaded.saved.evaluator
    args = dict(evaluator.scorer_args) if name == evaluator.scorer else {}
    if evaluator.link is not None:
        args["link"] = dict(evaluator.link)
    args.update({k: v for k, v in changes.items() if v is not None})
    return scorers.create(name, low=evaluator.low, high=evaluator.high, **args)


@dataclass
class FullBank:
    """Full-bank answers of the comparator for one image set: (image, ref) and (ref, image)
    probabilities [N, R, K]."""

    forward: torch.Tensor
    reverse: torch.Tensor  # already in the (image, ref) index order, not label-swapped
    seconds: float

    def probs(self, both_orders: bool) -> torch.Tensor:
        return (scorers.combine_orders(self.forward, self.reverse) if both_orders else self.forward).double()


def full_bank(loaded: LoadedRun, images: str = "test") -> FullBank:
    """Every image × reference comparison in both orders, averaged over the run's checkpoints."""
    started = time.perf_counter()
    forward, reverse = [], []
    for member in loaded.members:
        emb = getattr(member, images)
        forward.append(compare_all(member.view, emb, member.bank, loaded.accelerator, desc=f"{images} x bank"))
        reverse.append(compare_all(member.view, member.bank, emb, loaded.accelerator, desc=f"bank x {images}").transpose(0, 1))
    return FullBank(torch.stack(forward).mean(0), torch.stack(reverse).mean(0), time.perf_counter() - started)


@dataclass
class Truths:
    """What every row is scored against: true test and validation scores, the bank, the range."""

    test: torch.Tensor
    val: torch.Tensor
    refs: torch.Tensor  # the references' known scores
    low: float
    high: float
    places: Optional[torch.Tensor] = None  # where the base scorer places them (None: at refs)

    @property
    def scoring_refs(self) -> torch.Tensor:
        return self.refs if self.places is None else self.places


def variant_rows(loaded: LoadedRun, test: FullBank, val: FullBank, truths: Truths,
                 default_link: scorers.Link, calibrated: scorers.Link) -> list[dict[str, Any]]:
    """The full-bank factorial: scorer × labels × link × orders, each with metrics and coverage
    (raw, and with the std scaled on the same scorer's validation scores)."""
    config = loaded.config
    run_scorer = config.scorer
    grid_step = run_scorer.args.get("step", 1e-3) if run_scorer.name == "bt-grid" else 1e-3
    run_soft = bool(run_scorer.args.get("soft", False))
    rows = []
    for name, soft, link_name, both in itertools.product(("bt-grid", "bt-exact"), (False, True),
                                                         ("default", "calibrated"), (False, True)):
        link = calibrated if link_name == "calibrated" else default_link
        extra = {"step": grid_step} if name == "bt-grid" else {}
        scorer = scorer_for(loaded, name, soft=soft, link=link, **extra)
        started = time.perf_counter()
        scores = scorer.score(test.probs(both), truths.refs)
        seconds = time.perf_counter() - started
        val_scores = scorer.score(val.probs(both), truths.refs)
        is_run = (name == run_scorer.name and soft == run_soft and both == run_scorer.both_orders
                  and (link_name == "calibrated") == run_scorer.calibrate_link and not run_scorer.calibrate_references)
        val_metrics = score_metrics(val_scores.value.double().cpu().tolist(), truths.val.tolist())
        test_cs = score_metrics(scores.value.double().cpu().tolist(), truths.test.tolist(), config.cs_thresholds)
        rows.append({"scorer": name, "labels": "soft" if soft else "hard", "link": link_name,
                     "orders": "both" if both else "one",
                     **summary(scores, truths.test, val_scores, truths.val, truths.low, truths.high),
                     **{key: test_cs[key] for key in extra_metric_names(test_cs)},
                     "val_pc": val_metrics["pc"], "val_mae": val_metrics["mae"],
                     "seconds": seconds, "run_setting": "yes" if is_run else ""})
    return rows


SELECTION_METRICS = {"val_pc": 1.0, "val_mae": -1.0}  # the sign that makes larger better


def check_selection_metric(metric: str) -> None:
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric {metric!r}: expected one of {sorted(SELECTION_METRICS)}")


def selected_on_validation(rows: Sequence[dict[str, Any]], metric: str = "val_pc") -> dict[str, Any]:
    """The variant with the best validation ``metric`` (highest PC or lowest MAE; the run's own
    setting wins a tie). Beauty is judged by PC, ages by MAE, so each study selects on its own
    metric. The calibrated link is fitted on the same validation comparisons, so its validation
    figure is in-sample; the test figures of the chosen row are the honest ones."""
    check_selection_metric(metric)
    sign = SELECTION_METRICS[metric]
    return max(rows, key=lambda row: (sign * row[metric], row["run_setting"] == "yes"))


def fitted_links(loaded: LoadedRun, val: FullBank, truths: Truths) -> tuple[scorers.Link, scorers.Link]:
    """(the configured link, the link fitted on validation × bank): the latter on the
    probabilities the run scores with (both orders combined when the run combines them), as the
    pipeline fits it."""
    config = loaded.config
    evaluator = loaded.saved.evaluator
    configured = scorers.Link.from_config(config.scorer.args.get("link")) if evaluator.link_source == "calibrated" else None
    default_link = scorer_for(loaded, config.scorer.name, link=configured).link
    delta = truths.val[:, None] - truths.refs[None, :]
    val_probs = val.probs(config.scorer.both_orders)
    return default_link, default_link.fit(delta.reshape(-1), val_probs.reshape(-1, val_probs.shape[-1]))


def truths_of(loaded: LoadedRun) -> Truths:
    config = loaded.config
    return Truths(torch.tensor(loaded.truth, dtype=torch.float64), torch.tensor([s.score for s in loaded.val], dtype=torch.float64),
                  loaded.bank.scores, config.data.score_low, config.data.score_high)


def scorer_variants(loaded: LoadedRun) -> list[dict[str, Any]]:
    """The full-bank factorial of :func:`variant_rows` alone (no active budgets)."""
    truths = truths_of(loaded)
    test, val = full_bank(loaded, "test"), full_bank(loaded, "val")
    return variant_rows(loaded, test, val, truths, *fitted_links(loaded, val, truths))


def active_row(loaded: LoadedRun, base: scorers.Scorer, budget: int, batch: int, init: str, both: bool,
               test: FullBank, truths: Truths, seed: int) -> tuple[dict[str, Any], scorers.ActiveResult]:
    """One budget: the active scorer on the test images (every comparison a comparator call), the
    same on the validation images (to fit the interval scale), and random references."""
    accelerator, orders = loaded.accelerator, 2 if both else 1
    num_classes = test.forward.shape[-1]
    refs = truths.scoring_refs.to(accelerator.device)
    active = scorers.ActiveScorer(base, budget=budget, batch=min(batch, budget), init=init)
    calls = ComparatorCalls(loaded.members, "test", accelerator, both)
    started = time.perf_counter()
    result = active.score(calls, refs, len(loaded.test), num_classes)
    seconds = time.perf_counter() - started
    used = result.num_comparisons.cpu()
    if not torch.equal(calls.calls, used * orders):
        raise RuntimeError(f"budget {budget}: comparator calls {calls.calls.tolist()[:5]}... disagree with the "
                           f"active scorer's count {used.tolist()[:5]}...")
    val_calls = ComparatorCalls(loaded.members, "val", accelerator, both)
    val_result = active.score(val_calls, refs, len(loaded.val), num_classes)
    n, r = len(loaded.test), len(truths.refs)
    random = base.score(test.probs(both), truths.scoring_refs, random_mask(n, r, budget, seed + budget))
    random_metrics = score_metrics(random.value.tolist(), truths.test.tolist())
    row = {"budget": budget, "comparisons_mean": float(used.double().mean()), "comparisons_max": int(used.max()),
           "calls_max": int(calls.calls.max()),
           **summary(result.scores, truths.test, val_result.scores, truths.val, truths.low, truths.high),
           "comparator_seconds": calls.seconds, "total_seconds": seconds,
           "random_pc": random_metrics["pc"], "random_mae": random_metrics["mae"]}
    return row, result


def evaluate_active(loaded: LoadedRun, budgets: Sequence[int] = DEFAULT_BUDGETS, batch: int = 4,
                    init: str = "median", scorer_name: Optional[str] = None, link: str = "run",
                    seed: int = 0, references: str = "run", select: str = "val_pc") -> dict[str, Any]:
    """Everything ``orderlearn active`` reports, as a dictionary (see the module doc).

    ``link`` chooses the base scorer's link: ``"run"`` (calibrated iff the run calibrated it),
    ``"default"`` (the configured one) or ``"calibrated"``. It matters for the selection, not only
    for the scores: the link says how much one answer narrows the posterior, so an over-confident
    link makes the active scorer stop exploring too early. ``references`` likewise: ``"run"``
    (the fitted positions iff the run fitted them), ``"known"`` (the bank's scores) or
    ``"calibrated"`` (positions fitted on validation × bank, :mod:`scorers.references`); the full
    bank, the active rows and the random rows all score against the same places. ``select`` is the
    validation metric the reported best variant is chosen on (:func:`selected_on_validation`).
    """
    check_selection_metric(select)
    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    if link not in LINK_CHOICES:
        raise ValueError(f"link must be one of {LINK_CHOICES}, got {link!r}")
    if references not in REFERENCE_CHOICES:
        raise ValueError(f"references must be one of {REFERENCE_CHOICES}, got {references!r}")
    config, accelerator = loaded.config, loaded.accelerator
    both = config.scorer.both_orders
    name = scorer_name or config.scorer.name
    truths = truths_of(loaded)
    n, r = len(loaded.test), len(loaded.bank)

    test = full_bank(loaded, "test")
    val = full_bank(loaded, "val")
    default_link, calibrated = fitted_links(loaded, val, truths)
    base = scorer_for(loaded, name, link=default_link)
    val_probs = val.probs(config.scorer.both_orders)
    use_calibrated = link == "calibrated" or (link == "run" and config.scorer.calibrate_link)
    use_positions = references == "calibrated" or (references == "run" and config.scorer.calibrate_references)
    if use_calibrated or use_positions:  # exactly as the run calibrates (scorers.references.calibrate)
        fitted = calibrate_scorer(val_probs, truths.val, truths.refs, default_link, fit_link=use_calibrated,
                                  fit_positions=use_positions, soft=base.soft, low=truths.low, high=truths.high)
        base = scorer_for(loaded, name, link=fitted.link)
        truths.places = fitted.positions
    full_scores = base.score(test.probs(both), truths.scoring_refs)
    orders = 2 if both else 1
    full_row = {"budget": "all", "comparisons_mean": float(r), "comparisons_max": r, "calls_max": orders * r,
                **summary(full_scores, truths.test, base.score(val.probs(both), truths.scoring_refs), truths.val,
                          truths.low, truths.high),
                "comparator_seconds": test.seconds, "random_pc": math.nan, "random_mae": math.nan}

    rows, per_image = [], {"full": full_scores.value.tolist()}
    for budget in budgets:
        if budget >= r:
            continue  # every reference: that is the full-bank row
        row, result = active_row(loaded, base, budget, batch, init, both, test, truths, seed)
        rows.append(row)
        per_image[f"active_{budget}"] = result.scores.value.cpu().tolist()
        per_image[f"n_{budget}"] = result.num_comparisons.cpu().tolist()
    for row in rows + [full_row]:
        row["pc_gap"] = full_row["pc"] - row["pc"]
    # met when the active PC is at most PC_TOLERANCE below the full bank's (above it counts too)
    within = [row["budget"] for row in rows if row["budget"] <= TARGET_BUDGET and row["pc_gap"] <= PC_TOLERANCE]
    run_results = _run_results(loaded.path)
    return {
        "run": str(loaded.path), "comparator": config.model.name, "scorer": name,
        "scorer_args": {k: v for k, v in config.scorer.args.items()} if name == config.scorer.name else {},
        "both_orders": both, "active_batch": batch, "init": init, "bank_size": r, "test_images": n,
        "validation_images": len(loaded.val), "num_classes": test.forward.shape[-1],
        "ensemble_last": config.ensemble_last, "processes": accelerator.num_processes,
        "link": {"default": _link(default_link), "calibrated": _link(calibrated),
                 "used": "calibrated" if use_calibrated else "default",
                 "scored_with": _link(base.link)},
        "references": "fitted positions" if use_positions else "known scores",
        "active": rows, "full_bank": full_row,
        "target": {"tolerance_pc": PC_TOLERANCE, "max_budget": TARGET_BUDGET,
                   "met": bool(within), "smallest_budget_within": min(within) if within else None},
        "variants": (variants := variant_rows(loaded, test, val, truths, default_link, calibrated)),
        "validation_selected": {**selected_on_validation(variants, select), "selected_on": select},
        "run_order_learned": run_results.get("order_learned"),
        "run_interval_coverage": run_results.get("interval_coverage"),
        "per_image": per_image,
    }


def _link(link: scorers.Link) -> dict[str, float]:
    return {"slope": link.slope, "tie_width": link.tie_width}


def _run_results(run: Path) -> dict[str, Any]:
    path = run / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


ACTIVE_COLUMNS = ["budget", "comparisons_mean", "comparisons_max", "calls_max", "pc", "pc_gap", "mae", "rmse",
                  "spearman", "coverage95", "mean_std", "std_scale", "coverage95_scaled", "random_pc", "random_mae",
                  "comparator_seconds", "total_seconds"]
VARIANT_COLUMNS = ["scorer", "labels", "link", "orders", "pc", "mae", "rmse", "spearman", "coverage95", "mean_std",
                   "std_scale", "coverage95_scaled", "val_pc", "val_mae", "run_setting"]


def write_report(report: dict[str, Any], out: Path, test: Sequence[ScoredImage]) -> None:
    """active.md / .csv / .json, variants.csv, active_scores.csv and active.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report["active"] + [report["full_bank"]]
    _write_csv(out / "active.csv", rows, ACTIVE_COLUMNS)
    extra = extra_metric_names(*report["variants"])  # CS(t) where the study asks for it
    after_mae = VARIANT_COLUMNS.index("mae") + 1  # CS(t) beside the MAE it refines
    _write_csv(out / "variants.csv", report["variants"], VARIANT_COLUMNS[:after_mae] + extra + VARIANT_COLUMNS[after_mae:])
    per_image = report["per_image"]
    with (out / "active_scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        keys = list(per_image)
        writer.writerow(["path", "true_score", *keys])
        for i, sample in enumerate(test):
            writer.writerow([str(sample.path), f"{sample.score:.6f}",
                             *[f"{per_image[k][i]:.6f}" if k.startswith(("full", "active")) else per_image[k][i] for k in keys]])
    atomic_write_json(out / "active.json", {k: v for k, v in report.items() if k != "per_image"}, default=float)
    (out / "active.md").write_text(markdown_report(report))
    plot(out / "active.png", report)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_report(report: dict[str, Any]) -> str:
    target = report["target"]
    verdict = (f"met: {target['smallest_budget_within']} comparisons per image are within {PC_TOLERANCE} PC of the full bank"
               if target["met"] else f"not met: no budget ≤ {TARGET_BUDGET} is within {PC_TOLERANCE} PC of the full bank")
    link = report["link"]
    run = report["run_order_learned"]
    run_line = ("the run's own order-learned result (results.json): " + ", ".join(f"{k} {run[k]:.4f}" for k in METRIC_COLUMNS)
                if run else "the run has no results.json")
    return "\n".join([
        f"# Active reference selection: {report['run']}",
        "",
        f"Comparator `{report['comparator']}`, scorer `{report['scorer']}` {report['scorer_args']}, "
        f"{'both orders' if report['both_orders'] else 'one order'}, {link['used']} link "
        f"(default k {link['default']['slope']:.3f} τ {link['default']['tie_width']:.3f}; calibrated on validation × bank "
        f"k {link['calibrated']['slope']:.3f} τ {link['calibrated']['tie_width']:.3f}; scored with "
        f"k {link['scored_with']['slope']:.3f} τ {link['scored_with']['tie_width']:.3f}), references at their "
        f"{report['references']}; {report['test_images']} test images, "
        f"bank of {report['bank_size']}; batches of {report['active_batch']}, init {report['init']}.",
        "",
        "Comparisons per image = references asked (comparator calls = that × orders). pc_gap = full-bank PC − PC. "
        "coverage95: share of true scores in the raw posterior 95% interval; std_scale / coverage95_scaled: the "
        "std scaled so that the same procedure's intervals cover 95% of the validation images (conformal), and the "
        "test coverage then. random_*: the same number of random references.",
        "",
        markdown_table(report["active"] + [report["full_bank"]], ACTIVE_COLUMNS),
        "",
        f"Target (within {PC_TOLERANCE} PC of the full bank at ≤ {TARGET_BUDGET} comparisons): {verdict}.",
        "",
        f"Full bank ({run_line}, 95% coverage {report['run_interval_coverage']}; equal to the `run_setting` row when "
        f"ensemble_last = 1, here {report['ensemble_last']}):",
        "",
        markdown_table(report["variants"], VARIANT_COLUMNS),
        "",
    ])


def plot(path: Path, report: dict[str, Any]) -> Path:
    """PC and MAE against comparisons per image (log-2 axis), active and random, full-bank line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, full = report["active"], report["full_bank"]
    x = [row["budget"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "pc", "PC"), (axes[1], "mae", "MAE")):
        ax.plot(x, [row[key] for row in rows], "o-", label="active selection")
        ax.plot(x, [row[f"random_{key}"] for row in rows], "s--", alpha=0.7, label="random references")
        ax.axhline(full[key], color="black", lw=1, label=f"full bank ({report['bank_size']})")
        if key == "pc":
            ax.axhspan(full[key] - PC_TOLERANCE, full[key] + PC_TOLERANCE, color="grey", alpha=0.2,
                       label=f"±{PC_TOLERANCE}")
        if x:
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(v) for v in x])
        ax.set(xlabel="comparisons per test image", ylabel=label, title=f"{label} vs comparisons")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['comparator']} + {report['scorer']}: active reference selection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_active(run: Path, budgets: Sequence[int] = DEFAULT_BUDGETS, out: Optional[Path] = None, batch: int = 4,
               init: str = "median", scorer_name: Optional[str] = None, link: str = "run",
               references: str = "run", select: str = "val_pc") -> dict[str, Any]:
    """``orderlearn active``: load, evaluate, and (main process) write the report; returns it."""
    check_selection_metric(select)  # before the run is loaded
    loaded = load_run(Path(run))
    report = evaluate_active(loaded, budgets, batch, init, scorer_name, link, references=references, select=select)
    if loaded.accelerator.is_main_process:
        target = Path(out) if out else Path(run) / "active"
        write_report(report, target, loaded.test)
        print("\n" + markdown_report(report))
    loaded.accelerator.wait_for_everyone()
    return report


def main(args: "argparse.Namespace") -> int:
    """The command: the report into ``--out`` (default RUN/active), printed as markdown."""
    run_active(args.run, args.budgets, args.out, args.batch, scorer_name=args.scorer, link=args.link,
               references=args.references, select=args.select)
    return 0
