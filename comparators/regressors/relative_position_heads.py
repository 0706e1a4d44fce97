"""The three learned heads of relative age position learning (Amirullaeva & Han, IEEE Access 2024).

* :class:`ExpectedValueHead` - expected value refinement (Sec. III-B, Eq. 1, after DEX): one FC
  layer to ``n`` label logits, softmax, and the score ``â = Σ_i l_i · s_i``. Reading the score as
  an expectation keeps it continuous while training a classifier, which the paper's ablation
  finds 18.5 % better than plain FC regression.
* :class:`AgeReweighting` - the age-based reweighting module (Sec. III-D2, Eqs. 4-6): learnable
  ``P ∈ R^n`` scales the permuted reference map ``R^T ∈ R^{c×n}`` label-wise (``z_ij = r_ij p_j``),
  a sigmoid turns it into gates ``W ∈ (0, 1)^{c×n}``, and the input features ``X ∈ R^{b×c}``,
  repeated ``n`` times, are gated: ``x̂_ijk = x_ij · w_jk``. Like SRM's style gates, but the
  "style" of a channel is its value in each label's reference.
* :class:`RelativePositionHead` - relative position prediction (Sec. III-D3): FC ``n -> 1``
  applied to every channel (``R^{b×c×n} -> R^{b×c×1}``), flatten, FC ``c -> n`` giving logits
  over the ``n`` positions (trained with the cross-entropy of Eq. 7). The paper puts no
  activation between the two FC layers, and neither do we.
"""
from __future__ import annotations

import torch
from torch import nn


class ExpectedValueHead(nn.Module):
    """FC -> softmax over ``n`` labels -> ``Σ l_i s_i`` (Eq. 1). Returns ``(score [B], logits [B, n])``."""

    def __init__(self, feature_dim: int, label_values: torch.Tensor) -> None:
        super().__init__()
        if label_values.dim() != 1 or label_values.numel() < 2:
            raise ValueError(f"label_values must be a 1-D tensor of >= 2 labels, got shape {tuple(label_values.shape)}")
        self.fc = nn.Linear(feature_dim, label_values.numel())
        # derived from the config, so not saved in checkpoints
        self.register_buffer("label_values", label_values.float().clone(), persistent=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(features)
        return self.expectation(logits), logits

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """Eq. 1: the softmax-weighted mean of the label values.

        Computed in float32 with an element-wise product, not a matmul, so autocast cannot
        round the score to bf16 (ages near 100 would lose half a year).
        """
        return (torch.softmax(logits.float(), dim=-1) * self.label_values).sum(dim=-1)


class AgeReweighting(nn.Module):
    """Gates ``W = σ(R^T ⊙ P)`` (Eqs. 4-5) and reweighted features ``x̂ = x ⊗ W`` (Eq. 6).

    ``P`` is initialised to ``init`` (the paper gives no value; 1 makes the first gates
    ``σ(r)``, i.e. the references themselves decide, rather than a flat 0.5).
    """

    def __init__(self, num_labels: int, init: float = 1.0) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((num_labels,), float(init)))

    def gates(self, references: torch.Tensor) -> torch.Tensor:
        """``W ∈ (0, 1)^{c×n}`` from the reference map ``R ∈ R^{n×c}``."""
        if references.dim() != 2 or references.shape[0] != self.p.numel():
            raise ValueError(
                f"references must be [n={self.p.numel()}, c], got {tuple(references.shape)}"
            )
        z = references.t() * self.p  # Eq. 4: z_ij = r_ij · p_j, R permuted to c × n
        return torch.sigmoid(z)  # Eq. 5

    def forward(self, features: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """``X ∈ R^{b×c}`` and ``R ∈ R^{n×c}`` -> ``X̂ ∈ R^{b×c×n}`` (Eq. 6)."""
        w = self.gates(references)
        if features.dim() != 2 or features.shape[1] != w.shape[0]:
            raise ValueError(f"features must be [B, {w.shape[0]}], got {tuple(features.shape)}")
        return features.unsqueeze(-1) * w.unsqueeze(0)


class RelativePositionHead(nn.Module):
    """FC ``n -> 1`` per channel, flatten, FC ``c -> n``: logits over relative positions."""

    def __init__(self, feature_dim: int, num_labels: int) -> None:
        super().__init__()
        self.per_channel = nn.Linear(num_labels, 1)
        self.classifier = nn.Linear(feature_dim, num_labels)

    def forward(self, reweighted: torch.Tensor) -> torch.Tensor:
        """``X̂ ∈ R^{b×c×n}`` -> logits ``[b, n]``."""
        return self.classifier(self.per_channel(reweighted).squeeze(-1))
