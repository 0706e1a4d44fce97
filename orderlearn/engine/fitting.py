"""Fit a model on the training images: pairs for a comparator, images for a regressor; and a
small head on cached features.

One function for both kinds and both modes. The model owns its loss (a regressor's ``loss``;
a comparator's CE / WCE / CE+KL of the config, :mod:`orderlearn.engine.objectives`);
:func:`orderlearn.engine.training.fit` is the one loop. With ``train.frozen_backbone`` the
model's features are computed once per image (and per view of ``train.feature_views``: the
mirror image too) through the feature cache and only its head trains
(:class:`~orderlearn.engine.heads.HeadOnly`); with ``model.trainable_from`` those features are
a frozen trunk's maps and the "head" includes the backbone's top stages
(:mod:`comparators.partial`). A comparator trains on a fixed pair list, or with
``pairs.recipe: in-batch`` on the pairs inside each batch of images
(:class:`~orderlearn.engine.objectives.InBatchObjective`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from comparators.base import Comparator, Model
from comparators.losses import ComparatorLoss

from orderlearn.config import ExperimentConfig
from orderlearn.data.pairs import sample_pairs
from orderlearn.data.splits import TrainingSplits
from orderlearn.engine.checkpoints import CheckpointStore, ResumeState
from orderlearn.engine.datasets import (EmbeddingPairDataset, FeatureImageDataset, ImageDataset, PairDataset,
                                        SourcedImageDataset, ViewPairDataset)
from orderlearn.engine.features import FeatureExtractor
from orderlearn.engine.heads import HeadOnly, InBatchComparator
from orderlearn.engine.objectives import ComparatorObjective, InBatchObjective, Objective, RegressorObjective, mix_of_validation
from orderlearn.engine.training import TrainResult, fit
from orderlearn.errors import ConfigError
from orderlearn.types import ScoredImage


@dataclass
class FitInputs:
    """What the loop trains on: the module (the model, its head, or its in-batch wrapper), the
    objective, the two datasets, and how many cached views of a face an epoch draws one from."""

    module: torch.nn.Module
    objective: Objective
    train_data: Dataset
    val_data: Dataset
    views_per_face: int = 1


def fit_model(model: Model, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
              features: FeatureExtractor, store: CheckpointStore, resume_state: Optional[ResumeState]) -> TrainResult:
    """Train ``model`` as configured; the best epoch is chosen on the validation split (with a
    second database, on both databases' training and validation images)."""
    splits = splits.for_the_model()
    frozen = config.train.frozen_backbone
    views = tuple(config.train.feature_views)
    train_x = val_x = None
    if frozen:
        train_x = features(model, splits.train, "features train", views=views)
        val_x = features(model, splits.val, "features validation", views=("identity",))
    loss = None
    if isinstance(model, Comparator):  # the model owns its loss; a comparator's is the config's
        loss = comparator_loss(config)
    if loss is None:
        inputs = image_inputs(model, splits, config, train_x, val_x)
    elif config.pairs.recipe == "in-batch":
        inputs = in_batch_inputs(model, splits, config, accelerator, loss, train_x, val_x)
    else:
        inputs = pair_inputs(model, splits, config, accelerator, loss, train_x, val_x)
    groups = None if frozen else model.parameter_groups()
    return fit(inputs.module, inputs.objective, inputs.train_data, inputs.val_data, config, store, accelerator, resume_state,
               param_groups=groups, desc=config.model.name, views_per_face=inputs.views_per_face)


def fit_on_features(head: Model, train_x: torch.Tensor, train: list[ScoredImage], val_x: torch.Tensor,
                    val: list[ScoredImage], config: ExperimentConfig, store: CheckpointStore, accelerator: Accelerator,
                    desc: str) -> TrainResult:
    """Train a regressor ``head`` on cached features (``train_x`` of the ``train`` images, ``val_x``
    of ``val``) with its own loss, selected on validation as ``config`` says; always from scratch."""
    return fit(head, RegressorObjective(), FeatureImageDataset(train_x, train), FeatureImageDataset(val_x, val),
               config, store, accelerator, desc=desc)


def image_inputs(model: Model, splits: TrainingSplits, config: ExperimentConfig, train_x: Optional[torch.Tensor],
                 val_x: Optional[torch.Tensor]) -> FitInputs:
    """A regressor: images (or their cached features, ``train_x`` / ``val_x``) and its own loss."""
    if train_x is not None:
        draw = views_drawn_per_epoch(config)
        return FitInputs(HeadOnly(model), RegressorObjective(), FeatureImageDataset(train_x, splits.train, len(config.train.feature_views)),
                         FeatureImageDataset(val_x, splits.val), draw)
    return FitInputs(model, RegressorObjective(), ImageDataset(splits.train, model.train_preprocess()),
                     ImageDataset(splits.val, model.preprocess()))


def pair_inputs(model: Comparator, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
                loss: ComparatorLoss, train_x: Optional[torch.Tensor], val_x: Optional[torch.Tensor]) -> FitInputs:
    """A comparator on a fixed pair list (``pairs.recipe``); with cached features each pair shows
    one view of each face, drawn once per pair (:class:`~orderlearn.engine.datasets.ViewPairDataset`)."""
    p = config.pairs
    module = HeadOnly(model) if train_x is not None else model
    train_pairs = sample_pairs([s.score for s in splits.train], p.recipe, p.total, p.margin, p.seed)
    val_pairs = sample_pairs([s.score for s in splits.val], p.recipe, p.val_total, p.margin, p.seed + 1)
    accelerator.print(f"pairs: train {train_pairs.class_counts()}, validation {val_pairs.class_counts()}")
    if train_x is not None:
        several = len(config.train.feature_views) > 1
        train_data = ViewPairDataset(train_x, train_pairs, p.seed) if several else EmbeddingPairDataset(train_x, train_pairs)
        val_data: Dataset = EmbeddingPairDataset(val_x, val_pairs)
    else:
        train_data = PairDataset(splits.train, train_pairs, model.train_preprocess())
        val_data = PairDataset(splits.val, val_pairs, model.preprocess())
    return FitInputs(module, ComparatorObjective(loss), train_data, val_data)


def in_batch_inputs(model: Comparator, splits: TrainingSplits, config: ExperimentConfig, accelerator: Accelerator,
                    loss: ComparatorLoss, train_x: Optional[torch.Tensor], val_x: Optional[torch.Tensor]) -> FitInputs:
    """``pairs.recipe: in-batch``: image (or cached-feature) batches, pairs drawn inside each."""
    p = config.pairs
    if model.num_classes == 2 and p.in_batch_mix != "balanced-2":
        raise ConfigError(f"pairs.in_batch_mix: a 2-class comparator trains on FIRST/SECOND pairs only; "
                          f"set balanced-2, not {p.in_batch_mix!r}")
    val_pairs = sample_pairs([s.score for s in splits.val], mix_of_validation(p.in_batch_mix), p.val_total, p.margin, p.seed + 1)
    accelerator.print(f"pairs: in-batch ({p.in_batch_mix}) from batches of {config.train.batch_size} images; "
                      f"validation {val_pairs.class_counts()}")
    frozen = train_x is not None
    draw = views_drawn_per_epoch(config) if frozen else 1
    if frozen:
        train_data = FeatureImageDataset(train_x, splits.train, len(config.train.feature_views))
        val_data: Dataset = FeatureImageDataset(val_x, splits.val)
    else:
        train_data = SourcedImageDataset(splits.train, model.train_preprocess())
        val_data = ImageDataset(splits.val, model.preprocess())
    objective = InBatchObjective(loss, p.margin, p.in_batch_mix, val_pairs, seed=p.seed)
    return FitInputs(InBatchComparator(model, from_features=frozen), objective, train_data, val_data, draw)


def views_drawn_per_epoch(config: ExperimentConfig) -> int:
    """How many cached views of each face an epoch draws one from: ``train.views_per_epoch: one``
    shows each face once per epoch in a random view (1 = every view of every face)."""
    return len(config.train.feature_views) if config.train.views_per_epoch == "one" else 1


def comparator_loss(config: ExperimentConfig) -> ComparatorLoss:
    """The comparator's loss as the config's ``loss:`` section says (a regressor owns its own)."""
    return ComparatorLoss(config.loss.name, config.loss.class_weights, config.loss.kl_weight)
