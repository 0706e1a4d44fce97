"""The likelihood of a comparison label given the score difference: the :class:`Link`.

The LMOL paper scores a test image by maximising a Bradley–Terry likelihood over its unknown
score s_t (eqs. 10–13): δ_i = s_t − s_{r_i} (10), L = Π_i P_i (11), NLL = −Σ_i log P_i (12),
ŝ_t = argmin NLL (13), where P_i is the probability of the label observed for reference i
(the curves of its Fig. 5). The paper does not print P_i; we use the ordered-logistic
(cumulative-logit) model that produces exactly those three curves:

    P(FIRST)   = σ(k(δ − τ))
    P(SECOND)  = σ(k(−δ − τ))
    P(SIMILAR) = 1 − P(FIRST) − P(SECOND) = σ(k(τ − δ)) − σ(−k(τ + δ))

with slope k and tie width τ (default τ = θ = 0.2, the pair margin, so the curves cross
where the labels change). A two-class comparator uses P(FIRST) = σ(kδ), P(SECOND) = 1 − that.

Why this form is convenient: every log P_c is a sum of log-sigmoids of affine functions of δ,

    log P(FIRST)   = logσ(u₁),                u₁ = k(δ − τ)
    log P(SECOND)  = logσ(u₂),                u₂ = k(−δ − τ)
    log P(SIMILAR) = logσ(−u₁) + logσ(−u₂) + log(1 − e^{−2kτ})

(the last from the identity σ(x) − σ(y) = σ(x)σ(−y)(1 − e^{y−x}) with x = −u₁, y = u₂,
x − y = 2kτ). So the SIMILAR term needs no cancelling subtraction (numerically stable), and,
since logσ is concave, every log P_c is concave in δ — the BT negative log-likelihood is convex
in s_t, which the exact scorer relies on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

#: the pair margin θ of the LMOL paper; the default tie width
DEFAULT_TIE_WIDTH = 0.2
DEFAULT_SLOPE = 10.0


def _check_num_classes(num_classes: int) -> None:
    if num_classes not in (2, 3):
        raise ValueError(f"num_classes must be 2 (FIRST, SECOND) or 3 (FIRST, SECOND, SIMILAR), got {num_classes}")


@dataclass(frozen=True)
class Link:
    """Ordered-logistic link from δ = s_test − s_ref to label probabilities (see module doc).

    ``slope`` is k > 0 (how sharply the comparator switches label as δ crosses ±τ); ``tie_width``
    is τ ≥ 0 (half-width of the SIMILAR band). τ = 0 makes P(SIMILAR) = 0, which is only
    usable with two-class data.
    """

    slope: float = DEFAULT_SLOPE  # k > 0: how sharply the label switches as δ crosses ±τ
    tie_width: float = DEFAULT_TIE_WIDTH  # τ >= 0: half-width of the SIMILAR band

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and self.slope > 0):
            raise ValueError(f"Link slope must be finite and > 0, got {self.slope}")
        if not (math.isfinite(self.tie_width) and self.tie_width >= 0):
            raise ValueError(f"Link tie_width must be finite and >= 0, got {self.tie_width}")

    @classmethod
    def from_config(cls, config: "Link | dict | None") -> "Link":
        """Build from a Link, None (defaults) or a dict ``{"slope": .., "tie_width": ..}``."""
        if config is None:
            return cls()
        if isinstance(config, Link):
            return config
        if isinstance(config, dict):
            unknown = set(config) - {"slope", "tie_width"}
            if unknown:
                raise ValueError(f"unknown link key(s) {sorted(unknown)}; expected 'slope' and/or 'tie_width'")
            return cls(**{k: float(v) for k, v in config.items()})
        raise ValueError(f"link must be a Link, a dict or None, got {type(config).__name__}")

    def log_terms(self, delta: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
        """log P_c(δ) for each class, stacked on a new last dim [..., K] (stable form)."""
        _check_num_classes(num_classes)
        k = self.slope
        if num_classes == 2:
            u = k * delta
            return torch.stack([F.logsigmoid(u), F.logsigmoid(-u)], dim=-1)
        u1 = k * (delta - self.tie_width)
        u2 = k * (-delta - self.tie_width)
        lf = F.logsigmoid(u1)
        ls = F.logsigmoid(u2)
        # log(1 − e^{−2kτ}) = log(−expm1(−2kτ)); −inf when τ = 0 (no SIMILAR band)
        const = math.log(-math.expm1(-2.0 * k * self.tie_width)) if self.tie_width > 0 else -math.inf
        lm = (lf - u1) + (ls - u2) + const  # logσ(−u) = logσ(u) − u
        return torch.stack([lf, ls, lm], dim=-1)

    def log_probs(self, delta: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
        """log P(FIRST), log P(SECOND)[, log P(SIMILAR)] at δ: tensor [..., K]."""
        return self.log_terms(torch.as_tensor(delta), num_classes)

    def probs(self, delta: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
        """P(FIRST), P(SECOND)[, P(SIMILAR)] at δ: tensor [..., K] summing to 1."""
        return self.log_probs(delta, num_classes).exp()

    def fisher_information(self, delta: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
        """Expected information E[−d² log P_c/dδ²] of one comparison at δ (same shape as δ).

        With u₁, u₂ as in the module doc, −d²/dδ² log P is k²σ(u₁)σ(−u₁) for FIRST,
        k²σ(u₂)σ(−u₂) for SECOND and the sum of both for SIMILAR; averaging over the labels'
        probabilities gives the information the active scorer maximises.
        """
        _check_num_classes(num_classes)
        k = self.slope
        if num_classes == 2:
            u = k * delta
            return k * k * torch.sigmoid(u) * torch.sigmoid(-u)
        u1 = k * (delta - self.tie_width)
        u2 = k * (-delta - self.tie_width)
        c1 = torch.sigmoid(u1) * torch.sigmoid(-u1)
        c2 = torch.sigmoid(u2) * torch.sigmoid(-u2)
        p = self.probs(delta, 3)
        return k * k * ((p[..., 0] + p[..., 2]) * c1 + (p[..., 1] + p[..., 2]) * c2)

    def fit(
        self,
        delta: torch.Tensor,
        targets: torch.Tensor,
        num_classes: Optional[int] = None,
        max_iter: int = 200,
    ) -> "Link":
        """Maximum-likelihood k (and τ) from validation pairs; returns a new Link.

        ``delta`` [M] are true score differences (test − reference); ``targets`` are labels
        (long [M], PairLabel indices) or probabilities [M, K] (then the expected log-likelihood,
        i.e. the soft cross-entropy, is maximised). ``num_classes`` defaults to K of the
        probabilities, or for labels to 3 when any SIMILAR label is present, else 2. K = 2 fits
        k only (its link has no τ). The constraints k > 0, τ ≥ 0 are enforced by optimising
        log k and log τ with LBFGS (strong Wolfe line search) from the current link's values.
        """
        delta = torch.as_tensor(delta, dtype=torch.float64).reshape(-1)
        targets = torch.as_tensor(targets, device=delta.device)
        if targets.dim() == 1:
            if targets.dtype.is_floating_point:
                raise ValueError("Link.fit: 1-D targets must be integer labels (PairLabel indices)")
            if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) > 2):
                raise ValueError("Link.fit: labels must be in {0 FIRST, 1 SECOND, 2 SIMILAR}")
            if num_classes is None:
                num_classes = 3 if bool((targets == 2).any()) else 2
            _check_num_classes(num_classes)
            if num_classes == 2 and bool((targets == 2).any()):
                raise ValueError("Link.fit: num_classes=2 but SIMILAR labels are present")
            weights = F.one_hot(targets.long(), 3).to(torch.float64)[:, :num_classes]
        elif targets.dim() == 2:
            if num_classes is not None and num_classes != targets.shape[1]:
                raise ValueError(f"Link.fit: num_classes={num_classes} but targets have {targets.shape[1]} columns")
            num_classes = targets.shape[1]
            _check_num_classes(num_classes)
            weights = targets.to(torch.float64)
        else:
            raise ValueError(f"Link.fit: targets must be labels [M] or probabilities [M, K], got shape {tuple(targets.shape)}")
        if weights.shape[0] != delta.shape[0]:
            raise ValueError(f"Link.fit: delta has {delta.shape[0]} pairs but targets has {weights.shape[0]}")
        if delta.numel() == 0:
            raise ValueError("Link.fit: no pairs to fit")
        fit_tau = num_classes == 3

        dev = delta.device
        log_k = torch.tensor(math.log(self.slope), dtype=torch.float64, device=dev, requires_grad=True)
        log_tau = torch.tensor(math.log(max(self.tie_width, 1e-3)), dtype=torch.float64, device=dev,
                               requires_grad=fit_tau)
        params = [log_k] + ([log_tau] if fit_tau else [])
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=1e-14)

        def nll() -> torch.Tensor:
            k = log_k.exp()
            if num_classes == 2:
                u = k * delta
                lp = torch.stack([F.logsigmoid(u), F.logsigmoid(-u)], dim=-1)
            else:
                tau = log_tau.exp() if fit_tau else torch.tensor(self.tie_width, dtype=torch.float64, device=dev)
                u1 = k * (delta - tau)
                u2 = k * (-delta - tau)
                lf, ls = F.logsigmoid(u1), F.logsigmoid(u2)
                lm = lf - u1 + ls - u2 + torch.log(-torch.expm1(-2.0 * k * tau))
                lp = torch.stack([lf, ls, lm], dim=-1)
            # 0·log P must be 0 even where log P = −inf (e.g. no SIMILAR band)
            return -(torch.where(weights > 0, weights * lp, torch.zeros_like(lp))).sum() / delta.numel()

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nll()
            loss.backward()
            return loss

        opt.step(closure)
        slope = float(log_k.detach().exp())
        tie = float(log_tau.detach().exp()) if fit_tau else self.tie_width
        if not (math.isfinite(slope) and math.isfinite(tie)):
            raise ValueError("Link.fit diverged (non-finite parameters); check that the labels vary with delta")
        return Link(slope=slope, tie_width=tie)
