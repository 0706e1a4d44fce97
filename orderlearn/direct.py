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
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader
from accelerate import Accelerator

from comparators.base import Comparator, Model, Regressor
from comparators.direct_head import EmbeddingRegressor

from .comparisons import view_embeddings
from .config import ExperimentConfig
from .data import TrainingSplits
from .features import FeatureExtractor
from .fitting import FeatureImageDataset
from .images import GENDER_INDEX, ImageDataset
from .training import RegressorObjective, fit, load_weights
from .types import ScoredImage

HEAD_EPOCHS, HEAD_BATCH = 30, 64


def direct_scores(model: Model, best_checkpoint: Path, splits: TrainingSplits, test: list[ScoredImage],
                  config: ExperimentConfig, accelerator: Accelerator, features: FeatureExtractor,
                  output_dir: Path) -> Optional[torch.Tensor]:
    """Direct scores of ``test`` (float64 [N]), or None for a comparator without ``direct_baseline``."""
    if isinstance(model, Comparator) and not config.direct_baseline:
        return None
    load_weights(model, best_checkpoint)
    model.to(accelerator.device).eval()
    if not isinstance(model, Comparator):  # a regressor's view embeds an image as its score
        view = model.comparator_view().to(accelerator.device)
        scores = view_embeddings(view, features(view, test, "features test"), accelerator, config.train.eval_batch_size)
        return scores.reshape(-1).double()
    view = model.comparator_view().to(accelerator.device)  # the embeddings the bank route compares

    def embeddings(samples: list[ScoredImage], name: str) -> torch.Tensor:
        return view_embeddings(view, features(view, samples, f"features {name}"), accelerator, config.train.eval_batch_size)

    train_x, val_x, test_x = embeddings(splits.train, "train"), embeddings(splits.val, "validation"), embeddings(test, "test")
    return fit_embedding_head(train_x, val_x, test_x, splits, config, accelerator, output_dir)


def fit_embedding_head(train_x: torch.Tensor, val_x: torch.Tensor, test_x: torch.Tensor, splits: TrainingSplits,
                       config: ExperimentConfig, accelerator: Accelerator, output_dir: Path) -> torch.Tensor:
    """A regression head on embeddings, selected on validation, applied to the test embeddings.

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
    result = fit(head, RegressorObjective(), FeatureImageDataset(train_x, splits.train), FeatureImageDataset(val_x, splits.val),
                 head_config, output_dir, accelerator, desc="direct head")
    load_weights(head, result.best_checkpoint)
    head.to(accelerator.device).eval()
    with torch.no_grad():
        return head(test_x.to(accelerator.device)).score.double().cpu().clamp(config.data.score_low, config.data.score_high)


@torch.no_grad()
def direct_gender_accuracy(model: Model, test: list[ScoredImage], config: ExperimentConfig, accelerator: Accelerator,
                           features: FeatureExtractor) -> Optional[dict[str, float]]:
    """Test gender accuracy of a regressor that also predicts gender (its validation-selected
    weights, loaded by :func:`direct_scores`), over the test faces of known gender; None for the
    rest. The image alone is classified (no flip averaging)."""
    if not isinstance(model, Regressor) or not model.predicts_gender:
        return None
    known = [s for s in test if s.gender in GENDER_INDEX]
    if not known:
        return None
    model.to(accelerator.device).eval()
    batch_size = config.train.eval_batch_size
    logits = []
    if model.splits:
        cached = features(model, known, "features test", views=("identity",))
        for start in range(0, len(cached), batch_size):
            with accelerator.autocast():
                output = model.forward_head(cached[start:start + batch_size].to(accelerator.device))
            logits.append(model.gender_logits(output).float().cpu())
    else:
        for batch in DataLoader(ImageDataset(known, model.preprocess()), batch_size=batch_size):
            with accelerator.autocast():
                output = model(batch["image"].to(accelerator.device))
            logits.append(model.gender_logits(output).float().cpu())
    predicted = torch.cat(logits).argmax(dim=1)
    truth = torch.tensor([GENDER_INDEX[s.gender] for s in known])
    return {"gender_accuracy": float((predicted == truth).float().mean()), "gender_n": len(known)}
