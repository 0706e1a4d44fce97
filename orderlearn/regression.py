"""The main job for a direct method (``task: regressor``): train it, then score both ways.

Direct: the regressor's own score of each test image. Order-learned: the regressor as a
:class:`~comparators.regression_comparator.RegressionComparator` against the same reference
bank, through the configured BT scorer, with the link's slope and tie width fitted on
validation × bank pairs. Same folds, same bank, same metrics as the comparators.

``train.frozen_backbone: true`` works for every regressor whose ``backbone`` attribute produces
the pooled features its heads read (DLD, ComboLoss, plain): features are computed once and
only the heads train — the CPU-friendly reduced protocol.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from accelerate import Accelerator
from torch import nn

import comparators
import scorers
from comparators.regression_comparator import RegressionComparator

from .bank import ReferenceBank
from .config import ExperimentConfig
from .data import load_test, load_training
from .embedding import compare_all, embed_samples
from .evaluation import comparator_metrics, score_metrics
from .images import ImageDataset
from .pairs import pair_labels
from .pipeline import Embedder, EmbeddingImageDataset, start_run, write_run_outputs
from .training import HeadOnly, RegressorObjective, fit, load_weights

log = logging.getLogger(__name__)


class FrozenBackboneRegressor(nn.Module):
    """Trains a regressor's heads on cached backbone features (its backbone set aside, frozen)."""

    def __init__(self, regressor: nn.Module):
        super().__init__()
        if not isinstance(getattr(regressor, "backbone", None), nn.Module):
            raise ValueError(f"{type(regressor).__name__} has no `backbone` module: train it with frozen_backbone: false")
        self.wrapped = regressor
        self._backbone = [regressor.backbone]  # a list, so it is not registered as a submodule
        regressor.backbone = nn.Identity()

    def forward(self, features: torch.Tensor):
        return self.wrapped(features)

    def restore(self) -> nn.Module:
        """Put the backbone back and return the complete regressor."""
        self.wrapped.backbone = self._backbone[0]
        return self.wrapped


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i : i + batch_size]).score.float().cpu() for i in range(0, len(inputs), batch_size)])


def run_regressor_experiment(config: ExperimentConfig, resume: bool = False, accelerator: Optional[Accelerator] = None) -> dict[str, Any]:
    started = time.time()
    out, accelerator = start_run(config, accelerator)
    splits = load_training(config.data)
    model = comparators.create(config.model.name, **config.model.args)
    if comparators.kind_of(config.model.name) != "regressor":
        raise ValueError(f"model {config.model.name!r} is a comparator; set task: comparator")
    model.setup_from_training(splits.train)  # e.g. ComboLoss's class weights from the training scores
    bank = ReferenceBank.select(splits.train, config.bank.bin_width, config.bank.per_bin, config.bank.seed)
    transform, bs = model.preprocess(), config.train.eval_batch_size

    if config.train.frozen_backbone:
        frozen = HeadOnly(model)
        model.to(accelerator.device)
        features = Embedder(model, accelerator, config, cacheable=True, embed=model.forward_features, transform=transform)

        train_x, val_x = features(splits.train, "features train"), features(splits.val, "features val")
        result = fit(frozen, RegressorObjective(), EmbeddingImageDataset(train_x, splits.train), EmbeddingImageDataset(val_x, splits.val),
                     config, out / "regressor", accelerator, resume, desc=config.model.name)
        load_weights(frozen, result.best_checkpoint)
        frozen.to(accelerator.device)
        test = load_test(config.data)
        score_of = {name: predict(frozen, features(samples, f"features {name}").to(accelerator.device), bs)
                    for name, samples in (("val", splits.val), ("bank", bank.samples), ("test", test))}
    else:
        result = fit(model, RegressorObjective(), ImageDataset(splits.train, model.train_preprocess()), ImageDataset(splits.val, transform),
                     config, out / "regressor", accelerator, resume, param_groups=model.parameter_groups(), desc=config.model.name)
        load_weights(model, result.best_checkpoint)
        model.to(accelerator.device).eval()
        test = load_test(config.data)
        score_of = {name: embed_samples(lambda x: model(x).score.reshape(-1, 1), samples, transform, accelerator, bs, desc=f"score {name}").reshape(-1)
                    for name, samples in (("val", splits.val), ("bank", bank.samples), ("test", test))}

    comparator = RegressionComparator(model, config.scorer.args.get("link"))
    val_true = torch.tensor([s.score for s in splits.val], dtype=torch.float64)
    labels = torch.from_numpy(pair_labels(val_true[:, None].numpy(), bank.scores[None, :].numpy(), config.pairs.margin))
    link = comparator.fit_link(score_of["val"][:, None] - score_of["bank"][None, :], labels)
    accelerator.print(f"link fitted on {labels.numel()} validation x bank pairs: slope {link.slope:.3f}, tie width {link.tie_width:.3f}")
    probs = compare_all(comparator, score_of["test"][:, None], score_of["bank"][:, None], accelerator, desc="test x bank")
    scorer_args = {k: v for k, v in config.scorer.args.items() if k != "link"}
    scorer = scorers.create(config.scorer.name, low=config.data.score_low, high=config.data.score_high, link=link, **scorer_args)
    scores = scorer.score(probs.double(), bank.scores)
    truth = [s.score for s in test]
    direct = score_of["test"].double()
    results: dict[str, Any] = {
        "name": config.name,
        "method": config.model.name,
        "train": {"best_epoch": result.best_epoch, "best_" + config.train.select_metric: result.best_metric, "history": result.history},
        "bank_size": len(bank),
        "link": {"slope": link.slope, "tie_width": link.tie_width},
        "direct": score_metrics(direct.tolist(), truth),
        "order_learned": score_metrics(scores.value.tolist(), truth),
        "comparator_metrics": comparator_metrics(probs, torch.tensor(truth, dtype=torch.float64), bank.scores, config.pairs.margin),
        "seconds": time.time() - started,
    }
    if accelerator.is_main_process:
        bank.save(out / "bank.json")
        write_run_outputs(out, config, test, scores, direct, results, direct_label=f"{config.model.name} (direct)")
    accelerator.end_training()
    return results
