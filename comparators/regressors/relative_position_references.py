"""Reference selection (Sec. III-D1, Algorithm 1): per label, the training sample with minimum error.

The paper saves, during a training epoch, every training input's pooled features ``f`` and
estimated score ``â``; before the next epoch it computes ``e = |a − â|`` and, for each label
``l``, takes the features of the sample of label ``l`` with the smallest error (``argmin``, not
the first sample found) as row ``l`` of the reference map ``R ∈ R^{n×c}`` - the "age
representation" the reweighting module gates with. Selection is skipped for the first epoch
(no estimates exist yet).

:class:`ReferenceSelector` keeps only a running minimum per label instead of saving every
sample: the argmin over the epoch is the same, at ``O(n·c)`` memory instead of ``O(K·c)``.
Ties keep the sample seen first. The training loop drives it through the regressor's hooks:
``observe`` on every training batch, ``commit`` at the end of the epoch (the paper's "before
each epoch", one step earlier), ``reset_epoch`` at the start of an epoch.

Labels no training sample had in an epoch keep the reference of an earlier epoch; a label never
seen keeps a zero row (``reference_valid`` False), which the sigmoid gate of Eq. 5 turns into a
neutral 0.5. The paper sidesteps this case by making sure every label occurs in its training
split; binned beauty scores often leave the extreme bins empty, so we must handle it.

References are stored features (detached): like the paper's saved features they carry no
gradient. ``references``/``reference_valid``/``reference_errors`` are persistent buffers, so a
checkpoint keeps them and inference can use them; the running minima are not saved.
Under ``torch.distributed`` the per-process minima are merged at ``commit`` so every process
fixes the same references.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class ReferenceSelector(nn.Module):
    """Tracks, per label, the min-error training sample of the epoch; ``commit`` fixes them as ``R``."""

    def __init__(self, num_labels: int, feature_dim: int) -> None:
        super().__init__()
        if num_labels < 1 or feature_dim < 1:
            raise ValueError(f"num_labels and feature_dim must be >= 1, got {num_labels}, {feature_dim}")
        self.num_labels, self.feature_dim = num_labels, feature_dim
        self.register_buffer("references", torch.zeros(num_labels, feature_dim))
        self.register_buffer("reference_valid", torch.zeros(num_labels, dtype=torch.bool))
        self.register_buffer("reference_errors", torch.full((num_labels,), float("inf")))
        self.register_buffer("best_errors", torch.full((num_labels,), float("inf")), persistent=False)
        self.register_buffer("best_features", torch.zeros(num_labels, feature_dim), persistent=False)

    @property
    def has_references(self) -> bool:
        """True once at least one epoch has been committed (or references were loaded)."""
        return bool(self.reference_valid.any())

    def reset_epoch(self) -> None:
        """Forget this epoch's running minima (the committed references stay)."""
        self.best_errors.fill_(float("inf"))
        self.best_features.zero_()

    @torch.no_grad()
    def observe(self, features: torch.Tensor, positions: torch.Tensor, errors: torch.Tensor) -> None:
        """Record a batch: pooled ``features`` [B, c], label ``positions`` [B] (long), ``errors`` [B] = |a − â|."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be [B, {self.feature_dim}], got {tuple(features.shape)}")
        if positions.shape != errors.shape or positions.shape[0] != features.shape[0]:
            raise ValueError(
                f"positions {tuple(positions.shape)} and errors {tuple(errors.shape)} must be [B] with "
                f"B = {features.shape[0]}"
            )
        if positions.numel() and (positions.min() < 0 or positions.max() >= self.num_labels):
            raise ValueError(f"positions must lie in [0, {self.num_labels}), got {positions.tolist()}")
        errors = errors.detach().to(self.best_errors)
        positions = positions.to(self.best_errors.device)
        # per-label minimum error in this batch
        batch_min = torch.full_like(self.best_errors, float("inf"))
        batch_min.scatter_reduce_(0, positions, errors, reduce="amin")
        # the first sample of each label that attains it (argmin's tie rule)
        order = torch.arange(errors.numel(), device=errors.device)
        is_min = errors == batch_min[positions]
        first = torch.full((self.num_labels,), errors.numel(), dtype=torch.long, device=errors.device)
        first.scatter_reduce_(0, positions[is_min], order[is_min], reduce="amin")
        # strictly better than everything seen earlier in the epoch
        better = batch_min < self.best_errors
        labels = better.nonzero().squeeze(1)
        self.best_errors[labels] = batch_min[labels]
        self.best_features[labels] = features.detach()[first[labels]].to(self.best_features)

    @torch.no_grad()
    def commit(self) -> int:
        """Fix this epoch's min-error samples as the references; return how many labels got one."""
        self._merge_processes()
        seen = torch.isfinite(self.best_errors)
        self.references[seen] = self.best_features[seen]
        self.reference_errors[seen] = self.best_errors[seen]
        self.reference_valid |= seen
        self.reset_epoch()
        return int(seen.sum())

    def _merge_processes(self) -> None:
        """Keep, per label, the minimum over all processes (data-parallel training)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        errors = [torch.empty_like(self.best_errors) for _ in range(world)]
        feats = [torch.empty_like(self.best_features) for _ in range(world)]
        dist.all_gather(errors, self.best_errors.contiguous())
        dist.all_gather(feats, self.best_features.contiguous())
        stacked = torch.stack(errors)  # [W, n]
        winner = stacked.argmin(dim=0)  # first process wins ties
        labels = torch.arange(self.num_labels, device=stacked.device)
        self.best_errors.copy_(stacked[winner, labels])
        self.best_features.copy_(torch.stack(feats)[winner, labels])
