"""The main job: train a comparator, build the bank, score the test set, report both routes.

``run_experiment(config)`` writes into ``config.output_dir``:
``config.yaml``, ``checkpoints/`` (per epoch, best chosen on validation), ``bank.json``,
``scores.csv`` (per test image: true, order-learned with std and 95% interval, direct),
``results.json`` (all metrics), ``report.md`` (the direct-vs-order-learned table) and
``scatter.png``.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from accelerate import Accelerator

import comparators
import scorers
from comparators.direct_head import EmbeddingRegressor
from comparators.losses import ComparatorLoss

from scorers.intervals import interval_scale, widen

from .bank import ReferenceBank
from .config import ExperimentConfig
from .data import TrainingSplits, load_test, load_training
from .embedding import cache_key, compare_all, embed_samples
from .evaluation import comparator_metrics, markdown_table, scatter_plot, score_metrics, write_json
from .images import EmbeddingPairDataset, PairDataset, sample_targets
from .pairs import sample_pairs
from .training import ComparatorObjective, HeadOnly, RegressorObjective, fit, load_weights, make_accelerator

log = logging.getLogger(__name__)
EMBED_CACHE = Path("runs") / "cache" / "embeddings"
DIRECT_HEAD_EPOCHS, DIRECT_HEAD_BATCH = 30, 64


class EmbeddingImageDataset(torch.utils.data.Dataset):
    """Samples as precomputed embeddings plus their targets (the direct head's training data)."""

    def __init__(self, embeddings: torch.Tensor, samples: list):
        self.embeddings, self.targets = embeddings, [sample_targets(s) for s in samples]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.embeddings[i], **self.targets[i]}


@dataclass
class Embedder:
    """Embeds sample lists with one model, caching frozen-backbone embeddings on disk and in memory.

    ``embed``/``transform`` default to the model's ``embed`` and ``preprocess()`` (a comparator);
    a regressor's frozen backbone passes itself and the regressor's transform.
    """

    model: Any
    accelerator: Accelerator
    config: ExperimentConfig
    cacheable: bool  # true when the backbone is frozen: an image's embedding never changes
    embed: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    transform: Optional[Callable] = None
    memo: dict = dataclasses.field(default_factory=dict)  # path -> embedding, for subsets (the bank)

    def __post_init__(self) -> None:
        self.embed = self.embed or self.model.embed
        self.transform = self.transform or self.model.preprocess()

    def __call__(self, samples: list, desc: str) -> torch.Tensor:
        """Embeddings in evaluation mode (batch-norm running statistics, no dropout), always."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self._embed(samples, desc)
        finally:
            self.model.train(was_training)

    def _embed(self, samples: list, desc: str) -> torch.Tensor:
        batch, workers = self.config.train.eval_batch_size, self.config.train.num_workers
        if not self.cacheable:
            return embed_samples(self.embed, samples, self.transform, self.accelerator, batch, workers, None, desc)
        if all(s.path in self.memo for s in samples):
            return torch.stack([self.memo[s.path] for s in samples])
        spec = {k: v for k, v in self.config.model.args.items() if k in ("backbone", "weights", "image_size", "resize")}
        spec["mode"] = "eval"
        cache = EMBED_CACHE / f"{self.config.model.name}-{cache_key(spec, samples)}.pt"
        embeddings = embed_samples(self.embed, samples, self.transform, self.accelerator, batch, workers, cache, desc)
        self.memo.update(zip((s.path for s in samples), embeddings))
        return embeddings


def start_run(config: ExperimentConfig, accelerator: Optional[Accelerator]) -> tuple[Path, Accelerator]:
    """Output folder with the resolved config in it, an accelerator, and the global seed set."""
    out = Path(config.output_dir)
    accelerator = accelerator or make_accelerator(config, out)
    torch.manual_seed(config.seed)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
    return out, accelerator


def run_experiment(config: ExperimentConfig, resume: bool = False, accelerator: Optional[Accelerator] = None) -> dict[str, Any]:
    """Train, score and evaluate as configured; return the results dictionary."""
    if config.task == "regressor":
        from .regression import run_regressor_experiment

        return run_regressor_experiment(config, resume, accelerator)
    started = time.time()
    out, accelerator = start_run(config, accelerator)
    splits = load_training(config.data)
    accelerator.print(f"data: {len(splits.train)} train, {len(splits.val)} validation images ({config.data.kind})")

    model = comparators.create(config.model.name, **config.model.args)
    if comparators.kind_of(config.model.name) != "comparator":
        raise ValueError(f"model {config.model.name!r} is a regressor; set task: regressor")
    frozen = config.train.frozen_backbone
    embedder = Embedder(model, accelerator, config, cacheable=frozen)
    model.to(accelerator.device)

    result = train_comparator(model, splits, config, accelerator, embedder, resume)
    bank = ReferenceBank.select(splits.train, config.bank.bin_width, config.bank.per_bin, config.bank.seed)
    test = load_test(config.data)
    accelerator.print(f"bank: {len(bank)} references; test: {len(test)} images")

    reverse_pass = config.scorer.both_orders or config.scorer.reverse_pass

    def comparisons(checkpoint: Path) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(test, ref) and, if needed, (ref, test) probabilities with ``checkpoint``'s weights."""
        load_weights(model, checkpoint)
        model.to(accelerator.device).eval()
        bank.embeddings = embedder(bank.samples, "embed bank")
        test_emb = embedder(test, "embed test")
        forward = compare_all(model, test_emb, bank.embeddings, accelerator, desc="test x bank")
        reverse = compare_all(model, bank.embeddings, test_emb, accelerator, desc="bank x test").transpose(0, 1) if reverse_pass else None
        return forward, reverse, test_emb

    if config.ensemble_last > 1:  # LMOL's checkpoint ensemble: mean probabilities of the last K epochs
        last = range(config.train.epochs - config.ensemble_last + 1, config.train.epochs + 1)
        runs = [comparisons(result.output_dir / "checkpoints" / f"epoch_{e:03d}" / "model.safetensors") for e in last]
        probs = torch.stack([f for f, _, _ in runs]).mean(0)
        probs_rev = torch.stack([r for _, r, _ in runs]).mean(0) if reverse_pass else None
        test_emb = runs[-1][2]
    else:
        probs, probs_rev, test_emb = comparisons(result.best_checkpoint)

    truth = [s.score for s in test]
    scoring_probs = scorers.combine_orders(probs, probs_rev) if config.scorer.both_orders else probs
    scorer = scorers.create(config.scorer.name, low=config.data.score_low, high=config.data.score_high, **config.scorer.args)
    scores = scorer.score(scoring_probs.double(), bank.scores)
    order_learned = score_metrics(scores.value.tolist(), truth)
    calibration, intervals = None, None
    val_emb = None
    if config.scorer.calibrate_link or config.scorer.calibrate_intervals or config.direct_baseline:
        val_emb = embedder(splits.val, "embed val")
    if config.scorer.calibrate_link or config.scorer.calibrate_intervals:  # validation x bank: true δ known
        val_probs = compare_all(model, val_emb, bank.embeddings, accelerator, desc="validation x bank")
        if config.scorer.both_orders:  # calibrate on the same kind of probabilities the test images get
            val_rev = compare_all(model, bank.embeddings, val_emb, accelerator, desc="bank x validation").transpose(0, 1)
            val_probs = scorers.combine_orders(val_probs, val_rev)
    val_truth = torch.tensor([s.score for s in splits.val], dtype=torch.float64)
    if config.scorer.calibrate_link:
        link = calibrate_link(scorer.link, val_probs, val_truth, bank)
        accelerator.print(f"link calibrated on validation x bank comparisons: slope {link.slope:.3f}, tie width {link.tie_width:.3f}")
        default_scorer, scorer = scorer, scorers.create(config.scorer.name, low=config.data.score_low, high=config.data.score_high,
                                                        **{**config.scorer.args, "link": link})
        scores = scorer.score(scoring_probs.double(), bank.scores)
        calibration = {"slope": link.slope, "tie_width": link.tie_width,
                       "default_link": {"slope": default_scorer.link.slope, "tie_width": default_scorer.link.tie_width},
                       "order_learned_default_link": order_learned}
        order_learned = score_metrics(scores.value.tolist(), truth)
    if config.scorer.calibrate_intervals:
        scale = interval_scale(scorer.score(val_probs.double(), bank.scores), val_truth)
        intervals = {"std_scale": scale, "coverage_uncalibrated": interval_coverage(scores, truth)}
        scores = widen(scores, scale, config.data.score_low, config.data.score_high)
        accelerator.print(f"intervals calibrated on validation: posterior std x {scale:.2f}")

    results: dict[str, Any] = {
        "name": config.name,
        "comparator": config.model.name,
        "train": {"best_epoch": result.best_epoch, "best_" + config.train.select_metric: result.best_metric, "history": result.history},
        "bank_size": len(bank),
        "ensemble_last": config.ensemble_last,
        "both_orders": config.scorer.both_orders,
        "order_learned": order_learned,
        "link_calibration": calibration,
        "interval_calibration": intervals,
        "interval_coverage": interval_coverage(scores, truth),
        "comparator_metrics": comparator_metrics(probs, torch.tensor(truth, dtype=torch.float64), bank.scores, config.pairs.margin, probs_rev),
    }
    direct_scores = None
    if config.direct_baseline:
        if config.ensemble_last > 1:  # the direct head reads the validation-selected weights' embeddings
            load_weights(model, result.best_checkpoint)
            test_emb = embedder(test, "embed test")
        train_emb = embedder(splits.train, "embed train")  # from the disk cache when the backbone is frozen
        direct_scores = train_direct_head(model, train_emb, val_emb, test_emb, splits, config, accelerator)
        results["direct"] = score_metrics(direct_scores.tolist(), truth)
    results["seconds"] = time.time() - started

    if accelerator.is_main_process:
        bank.save(out / "bank.json")
        write_run_outputs(out, config, test, scores, direct_scores, results, direct_label=f"{config.model.name} embeddings + regression head")
    accelerator.end_training()
    return results


def calibrate_link(link: "scorers.Link", val_probs: torch.Tensor, val_truth: torch.Tensor, bank: ReferenceBank) -> "scorers.Link":
    """Maximum-likelihood slope and tie width of the link for this comparator.

    The link says how the comparator's answers depend on the true score gap δ; fitting it to the
    comparator's own probabilities on validation × bank pairs (true δ known, test files unseen)
    replaces the fixed defaults with what the comparator actually does.
    """
    delta = val_truth[:, None] - bank.scores[None, :]
    return link.fit(delta.reshape(-1), val_probs.reshape(-1, val_probs.shape[-1]).double())


def interval_coverage(scores: "scorers.Scores", truth: list) -> Optional[float]:
    """Share of test images whose true score lies in the scorer's 95% interval."""
    if scores.lower is None or scores.upper is None:
        return None
    t = torch.tensor(truth, dtype=torch.float64)
    return float(((scores.lower.double() <= t) & (t <= scores.upper.double())).double().mean())


def train_comparator(model, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator, embedder: Embedder, resume: bool):
    """Pairs from train and validation images, then the shared loop (head-only when frozen)."""
    p = config.pairs
    train_pairs = sample_pairs([s.score for s in splits.train], p.recipe, p.total, p.margin, p.seed)
    val_pairs = sample_pairs([s.score for s in splits.val], p.recipe, p.val_total, p.margin, p.seed + 1)
    accelerator.print(f"pairs: train {train_pairs.class_counts()}, validation {val_pairs.class_counts()}")
    if config.train.frozen_backbone:
        module = HeadOnly(model)
        train_data = EmbeddingPairDataset(embedder(splits.train, "embed train"), train_pairs)
        val_data = EmbeddingPairDataset(embedder(splits.val, "embed val"), val_pairs)
    else:
        module = model
        train_data = PairDataset(splits.train, train_pairs, model.train_preprocess())
        val_data = PairDataset(splits.val, val_pairs, model.preprocess())
    loss = ComparatorLoss(config.loss.name, config.loss.class_weights, config.loss.kl_weight)
    groups = getattr(model, "parameter_groups", None)  # e.g. LoRA and projector at different lrs
    param_groups = groups() if callable(groups) and not config.train.frozen_backbone else None
    return fit(module, ComparatorObjective(loss), train_data, val_data, config, Path(config.output_dir) / "comparator", accelerator, resume,
               param_groups=param_groups, desc="comparator")


def train_direct_head(model, train_emb, val_emb, test_emb, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator) -> torch.Tensor:
    """The direct baseline: a regression head on the same embeddings, selected on validation."""
    mean_score = sum(s.score for s in splits.train) / len(splits.train)
    head = EmbeddingRegressor(train_emb.shape[-1], score_mean=mean_score)
    # the head is small and reads cached embeddings: many short epochs cost seconds, and a few
    # large-batch epochs (the comparator's settings, made for 90k pairs) would leave it untrained
    head_config = dataclasses.replace(
        config, name=config.name + "-direct",
        train=dataclasses.replace(config.train, select_metric="val_loss", frozen_backbone=True, tracker="none",
                                  epochs=DIRECT_HEAD_EPOCHS, batch_size=DIRECT_HEAD_BATCH, max_steps_per_epoch=None),
        schedule=dataclasses.replace(config.schedule, name="cosine", warmup_epochs=0.0),
    )
    result = fit(head, RegressorObjective(), EmbeddingImageDataset(train_emb, splits.train), EmbeddingImageDataset(val_emb, splits.val),
                 head_config, Path(config.output_dir) / "direct", accelerator, desc="direct head")
    load_weights(head, result.best_checkpoint)
    head.eval()
    with torch.no_grad():
        return head(test_emb).score.double().clamp(config.data.score_low, config.data.score_high)


def write_run_outputs(
    out: Path, config: ExperimentConfig, test: list, scores: "scorers.Scores", direct_scores: Optional[torch.Tensor],
    results: dict[str, Any], direct_label: str,
) -> None:
    """scores.csv, results.json, report.md (the direct-vs-order-learned table) and scatter.png."""
    truth = [s.score for s in test]
    write_scores_csv(out / "scores.csv", test, scores, direct_scores)
    write_json(out / "results.json", results)
    rows = [{"method": f"{config.model.name} + {config.scorer.name}", "route": "order-learned", **results["order_learned"]}]
    if direct_scores is not None:
        rows.insert(0, {"method": direct_label, "route": "direct", **results["direct"]})
    table = markdown_table(rows, ["method", "route", "pc", "mae", "rmse", "spearman", "n"])
    cm = results["comparator_metrics"]
    report = (f"# {config.name}\n\n{table}\n\ncomparator accuracy on test x bank pairs: {cm['accuracy']:.4f}; "
              f"per class: {cm['per_class_accuracy']}; forward/reverse agreement: {cm.get('forward_reverse_agreement', float('nan')):.4f}\n")
    (out / "report.md").write_text(report)
    series = {"order-learned": scores.value.tolist()}
    if direct_scores is not None:
        series = {"direct": direct_scores.tolist(), **series}
    scatter_plot(out / "scatter.png", truth, series, title=config.name)
    print("\n" + report)


def write_scores_csv(path: Path, test: list, scores: "scorers.Scores", direct: Optional[torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_score", "score", "std", "lower95", "upper95", "direct_score"])
        for i, sample in enumerate(test):
            writer.writerow([
                str(sample.path), f"{sample.score:.6f}", f"{float(scores.value[i]):.6f}",
                _fmt(scores.std, i), _fmt(scores.lower, i), _fmt(scores.upper, i),
                f"{float(direct[i]):.6f}" if direct is not None else "",
            ])


def _fmt(values: Optional[torch.Tensor], i: int) -> str:
    return "" if values is None else f"{float(values[i]):.6f}"
