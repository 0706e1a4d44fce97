"""Fit a model on the training images: pairs for a comparator, images for a regressor.

One function for both kinds and both modes. The model owns its loss (a regressor's ``loss``;
a comparator's CE / WCE / CE+KL of the config); :func:`orderlearn.training.fit` is the one
loop. With ``train.frozen_backbone`` the model's features are computed once per image through
the feature cache and only its head trains (:class:`~orderlearn.training.HeadOnly`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from comparators.base import Comparator, Model
from comparators.losses import ComparatorLoss

from .config import ExperimentConfig
from .data import TrainingSplits
from .features import FeatureExtractor
from .images import EmbeddingPairDataset, ImageDataset, PairDataset, sample_targets
from .pairs import sample_pairs
from .training import ComparatorObjective, HeadOnly, RegressorObjective, TrainResult, fit


class FeatureImageDataset(Dataset):
    """Samples as precomputed features plus their targets (a head trained on cached features)."""

    def __init__(self, features: torch.Tensor, samples: list) -> None:
        self.features, self.targets = features, [sample_targets(s) for s in samples]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.features[i], **self.targets[i]}


def fit_model(model: Model, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
              features: FeatureExtractor, output_dir: Path, resume: bool) -> TrainResult:
    """Train ``model`` as configured; the best epoch is chosen on the validation split."""
    frozen = config.train.frozen_backbone
    module = HeadOnly(model) if frozen else model
    if frozen:
        train_x, val_x = features(model, splits.train, "features train"), features(model, splits.val, "features validation")
    if isinstance(model, Comparator):
        p = config.pairs
        train_pairs = sample_pairs([s.score for s in splits.train], p.recipe, p.total, p.margin, p.seed)
        val_pairs = sample_pairs([s.score for s in splits.val], p.recipe, p.val_total, p.margin, p.seed + 1)
        accelerator.print(f"pairs: train {train_pairs.class_counts()}, validation {val_pairs.class_counts()}")
        if frozen:
            train_data, val_data = EmbeddingPairDataset(train_x, train_pairs), EmbeddingPairDataset(val_x, val_pairs)
        else:
            train_data = PairDataset(splits.train, train_pairs, model.train_preprocess())
            val_data = PairDataset(splits.val, val_pairs, model.preprocess())
        objective = ComparatorObjective(ComparatorLoss(config.loss.name, config.loss.class_weights, config.loss.kl_weight))
    else:
        if frozen:
            train_data, val_data = FeatureImageDataset(train_x, splits.train), FeatureImageDataset(val_x, splits.val)
        else:
            train_data = ImageDataset(splits.train, model.train_preprocess())
            val_data = ImageDataset(splits.val, model.preprocess())
        objective = RegressorObjective()
    groups = None if frozen else model.parameter_groups()
    return fit(module, objective, train_data, val_data, config, output_dir, accelerator, resume,
               param_groups=groups, desc=config.model.name)
