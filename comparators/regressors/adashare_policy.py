"""The per-task execute/skip policy of AdaShare (Electronics 2024, 13, 179, Eq. 1 + [14, 20]).

Each task ``k`` owns logits ``α_k ∈ R^{N×2}`` over the ``N`` residual blocks; column 0 is
*execute*, column 1 is *skip* (the paper's ``policy = [1 0]^T`` executes, ``[0 1]^T``
skips). A block's output for task ``k`` is ``out = [x' x] · policy_k`` (Eq. 1).

The choice is discrete, so during policy learning it is drawn with Gumbel-softmax [20]
(straight-through: one-hot in the forward pass, the relaxed softmax's gradient in the
backward pass), with AdaShare's temperature schedule (τ₀ = 5, ×0.965 every 100 policy
steps). At test time, and when re-training with a fixed policy, the most likely action
(argmax) is taken, so predictions are deterministic.

The paper's objective is Eq. 7 only; AdaShare's own regularisers are provided for
ablations (weights default to 0 in the model config):

* sparsity (AdaShare code): mean over blocks of ``CE(α_k, skip)``, summed over tasks -
  pushes blocks towards being skipped;
* sharing (AdaShare paper): ``Σ_{k1<k2} Σ_l (L − l)/L · |α_{k1,l,0} − α_{k2,l,0}|`` with
  ``l = 1..L`` - pushes tasks to agree on the lower blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EXECUTE, SKIP = 0, 1
STAGES = ("warmup", "policy", "finetune")


def execute_all(num_tasks: int, num_blocks: int, device: torch.device | None = None) -> torch.Tensor:
    """Policy ``[tasks, blocks, 2]`` that executes every block (warm-up: hard sharing)."""
    policy = torch.zeros(num_tasks, num_blocks, 2, device=device)
    policy[..., EXECUTE] = 1.0
    return policy


def gumbel_policy(logits: torch.Tensor, temperature: float, hard: bool = True) -> torch.Tensor:
    """Gumbel-softmax sample over the last dim of ``logits`` ``[tasks, blocks, 2]``.

    ``hard=True`` is the straight-through estimator: the forward value is exactly one-hot
    (Eq. 1 needs a discrete policy) while gradients flow through the soft sample.
    """
    if temperature <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {temperature}")
    return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)


def argmax_policy(logits: torch.Tensor) -> torch.Tensor:
    """Deterministic one-hot policy: the most likely action per task and block."""
    return F.one_hot(logits.argmax(dim=-1), num_classes=logits.shape[-1]).to(logits.dtype)


def temperature_at(step: int, initial: float, decay: float, every: int) -> float:
    """AdaShare's step schedule: ``τ = τ₀ · decay^⌊step / every⌋``."""
    if every < 1:
        raise ValueError(f"temperature decay interval must be >= 1 step, got {every}")
    return initial * decay ** (step // every)


def sparsity_loss(logits: torch.Tensor) -> torch.Tensor:
    """AdaShare's sparsity term: per task, mean over blocks of CE(α_k,l, skip); summed over tasks."""
    tasks, blocks, _ = logits.shape
    target = torch.full((tasks * blocks,), SKIP, dtype=torch.long, device=logits.device)
    per_block = F.cross_entropy(logits.reshape(tasks * blocks, -1), target, reduction="none")
    return per_block.view(tasks, blocks).mean(dim=1).sum()


def sharing_loss(logits: torch.Tensor) -> torch.Tensor:
    """AdaShare's sharing term: Σ_{k1<k2} Σ_l (L − l)/L |α_{k1,l,0} − α_{k2,l,0}|, l = 1..L."""
    tasks, blocks, _ = logits.shape
    l = torch.arange(1, blocks + 1, device=logits.device, dtype=logits.dtype)
    weights = (blocks - l) / blocks
    total = logits.new_zeros(())
    for k1 in range(tasks):
        for k2 in range(k1 + 1, tasks):
            total = total + (weights * (logits[k1, :, EXECUTE] - logits[k2, :, EXECUTE]).abs()).sum()
    return total
