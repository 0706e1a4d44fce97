"""Fit a model on the training images: pairs for a comparator, images for a regressor.

One function for both kinds and both modes. The model owns its loss (a regressor's ``loss``;
a comparator's CE / WCE / CE+KL of the config); :func:`orderlearn.engine.training.fit` is the one
loop. With ``train.frozen_backbone`` the model's features are computed once per image (and per
view of ``train.feature_views``: the mirror image too) through the feature cache and only its
head trains (:class:`~orderlearn.engine.training.HeadOnly`); with ``model.trainable_from`` those
features are a frozen trunk's maps and the "head" includes the backbone's top stages
(:mod:`comparators.partial`). A comparator trains on a fixed pair list, or with
``pairs.recipe: in-batch`` on the pairs inside each batch of images
(:mod:`orderlearn.engine.in_batch`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from comparators.base import Comparator, Model
from comparators.losses import ComparatorLoss

from orderlearn.config import ExperimentConfig
from orderlearn.data.splits import TrainingSplits
from orderlearn.errors import ConfigError
from orderlearn.engine.features import FeatureExtractor
from orderlearn.data.images import EmbeddingPairDataset, ImageDataset, PairDataset, sample_targets
from orderlearn.engine.in_batch import InBatchComparator, InBatchObjective, mix_of_validation
from orderlearn.data.pairs import PairSet, sample_pairs
from orderlearn.engine.training import ComparatorObjective, HeadOnly, RegressorObjective, TrainResult, fit


class FeatureImageDataset(Dataset):
    """Samples as precomputed features plus their targets (a head trained on cached features).

    ``features`` is ``[N, ...]`` (one view) or ``[N, V, ...]`` with ``views > 1``: then the
    dataset has N·V items, view-major, and each item's ``source`` names its face (so two views
    of one face are never paired in a batch); ``index`` is the item's position.
    """

    def __init__(self, features: torch.Tensor, samples: list, views: int = 1) -> None:
        if views > 1 and (features.dim() < 2 or features.shape[1] != views):
            raise ValueError(f"features of shape {tuple(features.shape)} do not hold {views} views on axis 1")
        self.features, self.views = features, views
        self.targets = [sample_targets(s) for s in samples]

    def __len__(self) -> int:
        return len(self.targets) * self.views

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        view, face = divmod(i, len(self.targets))
        x = self.features[face, view] if self.views > 1 else self.features[face]
        return {"image": x, "source": torch.tensor(face), "index": torch.tensor(i), **self.targets[face]}


class ViewPairDataset(Dataset):
    """Fixed pairs over cached features of several views: each pair shows one view of each face,
    drawn once per pair with the pair seed (so every face is seen in each of its views)."""

    def __init__(self, features: torch.Tensor, pairs: PairSet, seed: int) -> None:
        self.features = features
        rng = np.random.default_rng(seed)
        views = features.shape[1]
        self.a, self.b, self.labels = (torch.as_tensor(x, dtype=torch.long) for x in (pairs.a, pairs.b, pairs.labels))
        self.view_a = torch.as_tensor(rng.integers(0, views, len(pairs)), dtype=torch.long)
        self.view_b = torch.as_tensor(rng.integers(0, views, len(pairs)), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image_a": self.features[self.a[i], self.view_a[i]], "image_b": self.features[self.b[i], self.view_b[i]],
                "label": self.labels[i]}


class SourcedImageDataset(ImageDataset):
    """Images with their training augmentation; each item's face is its own ``source``."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        item["source"] = item["index"]
        return item


def fit_model(model: Model, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
              features: FeatureExtractor, output_dir: Path, resume: bool) -> TrainResult:
    """Train ``model`` as configured; the best epoch is chosen on the validation split (with a
    second database, on both databases' training and validation images)."""
    splits = splits.for_the_model()
    frozen = config.train.frozen_backbone
    views = tuple(config.train.feature_views)
    train_x = val_x = None
    if frozen:
        train_x = features(model, splits.train, "features train", views=views)
        val_x = features(model, splits.val, "features validation", views=("identity",))
    if isinstance(model, Comparator) and config.pairs.recipe == "in-batch":
        return fit_in_batch(model, splits, config, accelerator, train_x, val_x, output_dir, resume)
    module = HeadOnly(model) if frozen else model
    draw = 1  # fixed pairs draw their views once per pair (ViewPairDataset)
    if isinstance(model, Comparator):
        p = config.pairs
        train_pairs = sample_pairs([s.score for s in splits.train], p.recipe, p.total, p.margin, p.seed)
        val_pairs = sample_pairs([s.score for s in splits.val], p.recipe, p.val_total, p.margin, p.seed + 1)
        accelerator.print(f"pairs: train {train_pairs.class_counts()}, validation {val_pairs.class_counts()}")
        if frozen:
            train_data = ViewPairDataset(train_x, train_pairs, p.seed) if len(views) > 1 else EmbeddingPairDataset(train_x, train_pairs)
            val_data = EmbeddingPairDataset(val_x, val_pairs)
        else:
            train_data = PairDataset(splits.train, train_pairs, model.train_preprocess())
            val_data = PairDataset(splits.val, val_pairs, model.preprocess())
        objective = ComparatorObjective(comparator_loss(config))
    else:
        if frozen:
            train_data, val_data = FeatureImageDataset(train_x, splits.train, len(views)), FeatureImageDataset(val_x, splits.val)
            draw = views_drawn_per_epoch(config)
        else:
            train_data = ImageDataset(splits.train, model.train_preprocess())
            val_data = ImageDataset(splits.val, model.preprocess())
        objective = RegressorObjective()
    groups = None if frozen else model.parameter_groups()
    return fit(module, objective, train_data, val_data, config, output_dir, accelerator, resume,
               param_groups=groups, desc=config.model.name, views_per_face=draw)


def views_drawn_per_epoch(config: ExperimentConfig) -> int:
    """How many cached views of each face an epoch draws one from: ``train.views_per_epoch: one``
    shows each face once per epoch in a random view (1 = every view of every face)."""
    return len(config.train.feature_views) if config.train.views_per_epoch == "one" else 1


def comparator_loss(config: ExperimentConfig) -> ComparatorLoss:
    return ComparatorLoss(config.loss.name, config.loss.class_weights, config.loss.kl_weight)


def fit_in_batch(model: Comparator, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
                 train_x: Optional[torch.Tensor], val_x: Optional[torch.Tensor], output_dir: Path,
                 resume: bool) -> TrainResult:
    """``pairs.recipe: in-batch``: image (or cached-feature) batches, pairs drawn inside each."""
    p = config.pairs
    if model.num_classes == 2 and p.in_batch_mix != "balanced-2":
        raise ConfigError(f"pairs.in_batch_mix: a 2-class comparator trains on FIRST/SECOND pairs only; "
                          f"set balanced-2, not {p.in_batch_mix!r}")
    val_pairs = sample_pairs([s.score for s in splits.val], mix_of_validation(p.in_batch_mix), p.val_total, p.margin, p.seed + 1)
    accelerator.print(f"pairs: in-batch ({p.in_batch_mix}) from batches of {config.train.batch_size} images; "
                      f"validation {val_pairs.class_counts()}")
    frozen = train_x is not None
    draw = 1
    if frozen:
        train_data = FeatureImageDataset(train_x, splits.train, len(config.train.feature_views))
        val_data: Dataset = FeatureImageDataset(val_x, splits.val)
        draw = views_drawn_per_epoch(config)
    else:
        train_data = SourcedImageDataset(splits.train, model.train_preprocess())
        val_data = ImageDataset(splits.val, model.preprocess())
    objective = InBatchObjective(comparator_loss(config), p.margin, p.in_batch_mix, val_pairs, seed=p.seed)
    module = InBatchComparator(model, from_features=frozen)
    groups = None if frozen else model.parameter_groups()
    return fit(module, objective, train_data, val_data, config, output_dir, accelerator, resume,
               param_groups=groups, desc=config.model.name, views_per_face=draw)

