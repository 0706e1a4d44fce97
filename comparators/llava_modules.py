"""In-place adjustments of a built LLaVA that the LMOL comparator makes: activation checkpointing
switched on or off, and the trained projector copy held in float32.

Both change transformers / peft modules where they sit, so they live apart from the comparator's
own forward paths (:mod:`comparators.llava`), which only call them.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn


def set_checkpointing(llava: Any, enabled: bool) -> None:
    """transformers' activation checkpointing on / off (``activation_checkpointing_*`` from v5 on)."""
    if enabled:
        kwargs = {"use_reentrant": False}
        if hasattr(llava, "activation_checkpointing_enable"):
            llava.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif any(getattr(m, "gradient_checkpointing", False) for m in llava.modules()):
        if hasattr(llava, "activation_checkpointing_disable"):
            llava.activation_checkpointing_disable()
        else:
            llava.gradient_checkpointing_disable()


def keep_projector_copy_in_float32(wrapper: nn.Module) -> None:
    """Hold the trained projector copy in float32, casting at its boundaries.

    peft upcasts LoRA weights of a bf16 model to float32 but leaves the ``modules_to_save``
    copy of the projector in bf16, where an AdamW step of lr 2e-5 on weights of ~0.02 is
    below half a bf16 ulp (~4e-5) and rounds away: the projector would silently not train.
    Inputs are cast to float32 (so CPU runs without autocast work) and outputs back to the
    base dtype (so the naive LLaVA forward still splices them into bf16 embeddings).
    """
    base_dtype = next(wrapper.original_module.parameters()).dtype
    if base_dtype == torch.float32:
        return
    for copy in wrapper.modules_to_save.values():
        copy.float()
        copy.register_forward_pre_hook(_inputs_to_float32)
        copy.register_forward_hook(partial(_output_to, dtype=base_dtype))


def _inputs_to_float32(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _output_to(module: nn.Module, args: tuple, output: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return output.to(dtype)


__all__ = ["keep_projector_copy_in_float32", "set_checkpointing"]
