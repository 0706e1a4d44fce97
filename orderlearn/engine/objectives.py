"""What a model is trained to do: one objective per kind of batch, and the loss the config chooses.

The training loop (:func:`orderlearn.engine.training.fit`) is the same for every method; an
:class:`Objective` turns a batch into a loss and evaluates a validation loader. Pair batches
train a comparator (:class:`ComparatorObjective`), image batches a regressor's own loss
(:class:`RegressorObjective`), and with ``pairs.recipe: in-batch`` a batch of B faces gives
B(B−1) ordered pairs (:class:`InBatchObjective`): each step embeds B images (or cached trunk
maps) once and scores the pairs among them with the comparator's ``compare``. The pairs of every
class are enumerated, the class mix of a fixed recipe is drawn from them (``balanced-3`` by
default: as many FIRST as SECOND as SIMILAR pairs, as many as the rarest class allows;
``balanced-2``, ``imbalanced-4-4-2``, or ``all``), and the loss is the configured comparator loss
(CE, WCE; CE+KL scores the reversed pair of every drawn pair in the same step, without another
image pass). The label rule and margin are those of the fixed recipes
(:func:`orderlearn.types.labels_from_delta`); two views of one face (a face and its mirror) never
form a pair. Validation uses the fixed recipes' validation pairs, with each validation image
embedded once.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel
from torch import nn
from torch.utils.data import DataLoader

from comparators.losses import ComparatorLoss

from orderlearn.data.pairs import RECIPES, PairSet
from orderlearn.engine.heads import InBatchComparator, unwrap
from orderlearn.types import PairLabel, labels_from_delta

log = logging.getLogger(__name__)
MIXES: dict[str, Optional[tuple[float, float, float]]] = {**RECIPES, "all": None}


class Objective:
    """The contract the loop trains through: ``loss`` of one training batch (a scalar tensor
    the loop back-propagates), ``evaluate`` of a validation loader (metrics named as in
    :data:`~orderlearn.engine.training.HIGHER_IS_BETTER`, gathered over every process), and
    the objective's own random state (``state_dict`` / ``load_state_dict``): what it draws
    from besides the global generators, saved in every resume state so a resumed run draws
    what an unbroken one would have (empty for an objective that draws nothing)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state; the resume state holds {sorted(state)}")


class ComparatorObjective(Objective):
    """Pair batches: loss on ``model(a, b)`` (and ``model(b, a)`` for the KL term)."""

    def __init__(self, loss: ComparatorLoss):
        self.criterion = loss

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = batch["image_a"], batch["image_b"]
        if self.criterion.needs_reverse:  # forward and reversed pair in the same batch (eq. 8)
            logits = model(torch.cat([a, b]), torch.cat([b, a]))
            forward, reverse = logits.chunk(2)
            return self.criterion(forward, batch["label"], reverse)
        return self.criterion(model(a, b), batch["label"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        losses, correct, count = [], 0, 0
        for batch in loader:
            logits = model(batch["image_a"], batch["image_b"])
            nll = torch.nn.functional.cross_entropy(logits.float(), batch["label"], reduction="none")
            hits = (logits.argmax(-1) == batch["label"]).float()
            nll, hits = accelerator.gather_for_metrics((nll, hits))
            losses.append(nll.sum().item())
            correct += hits.sum().item()
            count += len(hits)
        return {"val_loss": sum(losses) / max(count, 1), "val_accuracy": correct / max(count, 1)}


class RegressorObjective(Objective):
    """Image batches: the regressor's own loss; validation also reports MAE and PC."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return unwrap(model).loss(model(batch["image"]), batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        losses, predicted, target = [], [], []
        for batch in loader:
            output = model(batch["image"])
            loss = unwrap(model).loss(output, batch).reshape(1).repeat(len(output.score))
            loss, score, truth = accelerator.gather_for_metrics((loss, output.score.float(), batch["score"].float()))
            losses.append(loss.sum().item())
            predicted.append(score.cpu())
            target.append(truth.cpu())
        p, t = torch.cat(predicted).double(), torch.cat(target).double()
        pc = float(np.corrcoef(p.numpy(), t.numpy())[0, 1]) if len(p) > 1 and p.std() > 0 else 0.0
        return {"val_loss": sum(losses) / len(p), "val_mae": float((p - t).abs().mean()), "val_pc": pc}


def batch_pairs(scores: torch.Tensor, sources: torch.Tensor, margin: float, mix: str,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ordered pairs (a, b, label) among a batch's items, drawn to the class mix ``mix``.

    ``sources`` names the face each item shows (two views of one face share it): such items
    never pair. With a recipe's shares s_c, T = min_c n_c / s_c over the classes it uses, and
    round(s_c · T) pairs of each class are drawn without replacement. When a class the mix asks
    for is absent from the batch, the batch gives no pairs (empty tensors): a silent
    rebalancing would train on another mix than configured.
    """
    if mix not in MIXES:
        raise ValueError(f"in-batch mix {mix!r}: choose from {sorted(MIXES)}")
    device = scores.device
    delta = (scores.reshape(-1, 1) - scores.reshape(1, -1)).detach().double().cpu().numpy()
    labels = torch.from_numpy(labels_from_delta(delta, margin)).to(device)
    valid = sources.reshape(-1, 1) != sources.reshape(1, -1)
    shares = MIXES[mix]
    if shares is None:
        a, b = valid.nonzero(as_tuple=True)
        return a, b, labels[a, b]
    per_class = [(valid & (labels == int(c))).nonzero() for c in PairLabel]
    used = [(pairs, share) for pairs, share in zip(per_class, shares) if share > 0]
    scale = min(len(pairs) / share for pairs, share in used)
    picked = []
    for pairs, share in used:
        k = int(round(share * scale))
        order = torch.randperm(len(pairs), generator=generator)[:k].to(device)
        picked.append(pairs[order])
    chosen = torch.cat(picked) if picked else torch.empty(0, 2, dtype=torch.long, device=device)
    a, b = chosen[:, 0], chosen[:, 1]
    return a, b, labels[a, b]


class InBatchObjective(ComparatorObjective):
    """Loss on the in-batch pairs of an image (or feature) batch; validation on fixed pairs.

    Training batches: ``image`` [B, ...], ``score`` [B], ``source`` [B]. Validation batches:
    the validation images in order (``image``, ``index``); the pairs are ``val_pairs``
    (indices into that list), scored after every validation image is embedded once.
    ``pairs_seen`` counts the labelled pairs trained on (the benchmark's figure).
    """

    def __init__(self, loss: ComparatorLoss, margin: float, mix: str, val_pairs: PairSet, seed: int = 0) -> None:
        super().__init__(loss)
        if mix not in MIXES:
            raise ValueError(f"pairs.in_batch_mix: {mix!r} is not one of {sorted(MIXES)}")
        self.margin, self.mix, self.val_pairs = margin, mix, val_pairs
        self.generator = torch.Generator().manual_seed(seed)
        self.pairs_seen = 0
        self.empty_batches = 0

    def state_dict(self) -> dict[str, Any]:
        """The pair generator (the pairs every later batch draws) and the counters."""
        return {"generator": self.generator.get_state(), "pairs_seen": self.pairs_seen, "empty_batches": self.empty_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.pairs_seen, self.empty_batches = int(state["pairs_seen"]), int(state["empty_batches"])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b, labels = batch_pairs(batch["score"], batch["source"], self.margin, self.mix, self.generator)
        if len(labels) == 0:
            self.empty_batches += 1
            if self.empty_batches == 1:
                log.warning("an in-batch step had no pairs of some class of mix %s; it trains on nothing "
                            "(raise train.batch_size)", self.mix)
            return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        self.pairs_seen += len(labels)
        if self.criterion.needs_reverse:  # the reversed pairs share the step's embeddings
            logits = model(batch["image"], torch.cat([a, b]), torch.cat([b, a]))
            forward, reverse = logits.chunk(2)
            return self.criterion(forward, labels, reverse)
        return self.criterion(model(batch["image"], a, b), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
        wrapper = _in_batch(model)
        parts, order = [], []
        for batch in loader:
            emb = wrapper.embed_inputs(batch["image"])
            emb, index = accelerator.gather_for_metrics((emb, batch["index"]))
            parts.append(emb)
            order.append(index)
        emb = torch.cat(parts)[torch.argsort(torch.cat(order))]
        a = torch.as_tensor(self.val_pairs.a, device=emb.device)
        b = torch.as_tensor(self.val_pairs.b, device=emb.device)
        labels = torch.as_tensor(self.val_pairs.labels, device=emb.device)
        nll, hits = [], []
        for start in range(0, len(labels), 4096):
            sl = slice(start, start + 4096)
            logits = wrapper.comparator.compare(emb[a[sl]], emb[b[sl]]).float()
            nll.append(F.cross_entropy(logits, labels[sl], reduction="none"))
            hits.append((logits.argmax(-1) == labels[sl]).float())
        return {"val_loss": float(torch.cat(nll).mean()), "val_accuracy": float(torch.cat(hits).mean())}


def _in_batch(model: nn.Module) -> InBatchComparator:
    inner = extract_model_from_parallel(model)
    if not isinstance(inner, InBatchComparator):
        raise TypeError(f"InBatchObjective trains an InBatchComparator, got {type(inner).__name__}")
    return inner


def mix_of_validation(mix: str) -> str:
    """The fixed recipe whose validation pairs measure an in-batch mix."""
    return mix if mix in RECIPES else "balanced-3"
