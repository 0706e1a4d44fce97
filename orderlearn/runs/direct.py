"""The direct route of a run: a score per test image without the bank.

A regressor's direct score is its own output (through its comparator view's embedding, so a
model with ``test_flip`` scores a face as the mean of its and its mirror's predicted scores).
A comparator has none, so its direct baseline is a small regression head fitted on the same
(validation-selected) embeddings the comparator compares (``direct_baseline: true``; pooled
after a partially fine-tuned top, flip-averaged with ``test_flip``): "direct vs order-learned"
then contrasts the scoring route, not the features. Both use the validation-selected checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, default_collate
from accelerate import Accelerator

from comparators.base import Comparator, Model, Regressor, RegressorOutput
from comparators.direct_head import EmbeddingRegressor

from orderlearn.bank.comparisons import EmbeddingMemo, view_embeddings
from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import TrainingSplits
from orderlearn.data.images import sample_targets
from orderlearn.engine.checkpoints import CheckpointStore, load_weights
from orderlearn.engine.datasets import ImageDataset
from orderlearn.engine.features import FeatureExtractor
from orderlearn.engine.fitting import fit_on_features
from orderlearn.report.metrics import classification_metrics
from orderlearn.types import ScoredImage

HEAD_EPOCHS, HEAD_BATCH = 30, 64


@dataclass(frozen=True)
class DirectScores:
    """The direct route's scores (float64; a comparator's head clamps to the score range): of the
    test images and of the validation images (``val_scores.csv``; the fused route measures its
    prior width on a comparator's)."""

    test: torch.Tensor
    val: torch.Tensor


def direct_scores(model: Model, best_checkpoint: Path, splits: TrainingSplits, test: list[ScoredImage],
                  config: ExperimentConfig, accelerator: Accelerator, features: FeatureExtractor,
                  store: CheckpointStore, memo: Optional[EmbeddingMemo] = None) -> Optional[DirectScores]:
    """Direct scores of ``test`` and of the validation images, or None for a comparator without
    ``direct_baseline`` (``store``: where its direct head keeps its checkpoints; ``memo``: the
    embeddings the bank route computed under the same checkpoint, read instead of computed again)."""
    if isinstance(model, Comparator) and not config.direct_baseline:
        return None
    load_weights(model, best_checkpoint)
    model.to(accelerator.device).eval()
    view = model.comparator_view().to(accelerator.device)  # the embeddings the bank route compares
    memo = memo if memo is not None else EmbeddingMemo()

    def embeddings(samples: list[ScoredImage], name: str) -> torch.Tensor:
        return memo.get(best_checkpoint, samples, lambda: view_embeddings(
            view, features(view, samples, f"features {name}"), accelerator, config.train.eval_batch_size))

    if not isinstance(model, Comparator):  # a regressor's view embeds an image as its score
        return DirectScores(embeddings(test, "test").reshape(-1).double(),
                            embeddings(splits.val, "validation").reshape(-1).double())
    train_x, val_x, test_x = embeddings(splits.train, "train"), embeddings(splits.val, "validation"), embeddings(test, "test")
    val, test_scores = fit_embedding_head(train_x, val_x, test_x, splits, config, accelerator, store)
    return DirectScores(test_scores, val)


def fit_embedding_head(train_x: torch.Tensor, val_x: torch.Tensor, test_x: torch.Tensor, splits: TrainingSplits,
                       config: ExperimentConfig, accelerator: Accelerator,
                       store: CheckpointStore) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression head on embeddings, selected on validation, applied to the validation and the
    test embeddings: (validation scores, test scores).

    The head is small and reads cached embeddings: many short epochs cost seconds, and a few
    large-batch epochs (the comparator's settings, made for 90k pairs) would leave it untrained.
    It is initialised from the run's seed, not from whatever the global random state is after
    feature extraction (which consumes random numbers only when the feature cache is cold).
    """
    mean_score = sum(s.score for s in splits.train) / len(splits.train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = EmbeddingRegressor(train_x.shape[-1], score_mean=mean_score)
    head_config = dataclasses.replace(
        config, name=config.name + "-direct",
        train=dataclasses.replace(config.train, select_metric="val_loss", frozen_backbone=True, tracker="none",
                                  epochs=HEAD_EPOCHS, batch_size=HEAD_BATCH, max_steps_per_epoch=None),
        schedule=dataclasses.replace(config.schedule, name="cosine", warmup_epochs=0.0),
    )
    result = fit_on_features(head, train_x, splits.train, val_x, splits.val, head_config, store, accelerator, desc="direct head")
    load_weights(head, result.best_checkpoint)
    head.to(accelerator.device).eval()

    @torch.no_grad()
    def scores(x: torch.Tensor) -> torch.Tensor:
        x = x.to(accelerator.device)  # each face on its own, as its embedding was (bank/comparisons.py)
        out = torch.cat([head(x[i:i + 1]).score.reshape(-1) for i in range(len(x))]) if len(x) else x.new_zeros(0)
        return out.double().cpu().clamp(config.data.score_low, config.data.score_high)

    return scores(val_x), scores(test_x)


@torch.no_grad()
def direct_classifications(model: Model, tests: list[list[ScoredImage]], config: ExperimentConfig, accelerator: Accelerator,
                           features: FeatureExtractor) -> dict[str, float]:
    """Test accuracy and macro-F1 of each classification task a regressor also predicts
    (:meth:`~comparators.regressor.Regressor.classifications`; its validation-selected weights,
    loaded by :func:`direct_scores`), pooled over ``tests`` (the test set, and the second
    database's in a multi-database run) where the task's target is known; empty for the rest.
    The image alone is classified (no flip averaging)."""
    if not isinstance(model, Regressor):
        return {}
    model.to(accelerator.device).eval()
    pooled: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for samples in tests:
        for output, batch in _direct_outputs(model, samples, config, accelerator, features):
            for name, (logits, targets) in model.classifications(output, batch).items():
                pooled.setdefault(name, ([], []))
                pooled[name][0].append(logits.float().cpu())
                pooled[name][1].append(targets.cpu())
    metrics: dict[str, float] = {}
    for name, (logits, targets) in pooled.items():
        all_logits, all_targets = torch.cat(logits), torch.cat(targets)
        if bool((all_targets >= 0).any()):
            result = classification_metrics(all_logits, all_targets)
            metrics.update({f"{name}_accuracy": result["accuracy"], f"{name}_macro_f1": result["macro_f1"],
                            f"{name}_n": int((all_targets >= 0).sum())})
    return metrics


def _direct_outputs(model: Regressor, samples: list[ScoredImage], config: ExperimentConfig, accelerator: Accelerator,
                    features: FeatureExtractor) -> Iterator[tuple[RegressorOutput, dict[str, torch.Tensor]]]:
    """The model's outputs on ``samples`` in batches, with each batch's targets."""
    batch_size = config.train.eval_batch_size
    if model.splits:
        cached = features(model, samples, "features test", views=("identity",))
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            batch = default_collate([sample_targets(s) for s in chunk])
            with accelerator.autocast():
                yield model.forward_head(cached[start:start + batch_size].to(accelerator.device)), batch
        return
    for batch in DataLoader(ImageDataset(samples, model.preprocess()), batch_size=batch_size):
        with accelerator.autocast():
            yield model(batch["image"].to(accelerator.device)), batch
