"""Configuration of the LMOL comparator (LLaVA-1.5 + LoRA), validated on construction.

Defaults follow the paper where it says something (LLaVA-1.5-7B, the question of eq. 4,
the labels First/Second/Similar, frozen CLIP encoder) and state a choice where it does
not: the paper gives no LoRA hyper-parameters, so r=8, alpha=16, dropout 0.05 on the
language model's attention and MLP projections is the common PEFT recipe (alpha = 2r);
the projector is trained by default, as in the public LMOL re-implementations. The two
learning rates are LLaVA-1.5's own LoRA fine-tuning recipe (``scripts/v1_5/finetune_lora.sh``:
``learning_rate 2e-4`` for LoRA, ``mm_projector_lr 2e-5`` for the projector), since the
paper gives none; :meth:`LlavaComparator.parameter_groups` hands them to the training loop.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from comparators.llava_prompt import DEFAULT_TEMPLATE, IMAGE_TOKEN

DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LlavaComparatorConfig:
    """Everything that defines an LMOL comparator; saved next to every adapter.

    ``prompt_template`` default: ``"USER: <image>\\n<image>\\n{question} Answer with
    {choices}. ASSISTANT:"`` where ``{choices}`` is "First, Second or Similar" (or
    "First or Second" when ``two_class``). ``labels`` are in :class:`PairLabel` order
    (FIRST, SECOND, SIMILAR); ``two_class`` keeps the first two.
    """

    checkpoint: str = "llava-hf/llava-1.5-7b-hf"  # LLaVA-1.5 weights: a hub id or a local folder
    tokenizer: Optional[str] = None  # required to build: a hub id or a local folder (the project ships none)
    question: str = "Which face looks more attractive?"  # the question of the prompt (eq. 4)
    labels: tuple[str, ...] = ("First", "Second", "Similar")  # the answer words, in FIRST, SECOND, SIMILAR order
    prompt_template: str = DEFAULT_TEMPLATE  # the prompt with two <image> slots, {question} and {choices}
    answer_separator: str = " "  # "ASSISTANT:" + " " + "First", as in LLaVA's conversation format
    two_class: bool = False  # keep only the first two labels (no SIMILAR)
    lora_r: int = 8  # LoRA rank
    lora_alpha: float = 16.0  # LoRA scaling alpha
    lora_dropout: float = 0.05  # dropout on the LoRA branch
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS  # the language model's linear layers that get LoRA adapters
    train_projector: bool = True  # also train the image projector W (eq. 2)
    load_in_4bit: bool = False  # load the language model in 4 bits (bitsandbytes)
    load_in_8bit: bool = False  # load the language model in 8 bits (bitsandbytes)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, more time)
    torch_dtype: str = "bfloat16"  # dtype of the loaded weights: bfloat16 | float16 | float32
    attn_implementation: Optional[str] = None  # None: transformers' default (sdpa)
    seed: int = 0  # LoRA initialisation
    lora_lr: float = 2e-4  # LLaVA-1.5 finetune_lora.sh learning_rate (the paper gives none)
    projector_lr: float = 2e-5  # LLaVA-1.5 finetune_lora.sh mm_projector_lr

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.lora_target_modules = tuple(self.lora_target_modules)
        if len(self.labels) != 3 or len(set(self.labels)) != 3 or not all(
                isinstance(x, str) and x.strip() for x in self.labels):
            raise ValueError(f"labels: need three distinct non-empty words (FIRST, SECOND, SIMILAR), got {self.labels!r}")
        if self.prompt_template.count(IMAGE_TOKEN) != 2 or "{question}" not in self.prompt_template:
            raise ValueError(f"prompt_template: needs two {IMAGE_TOKEN!r} placeholders and a '{{question}}' field, "
                             f"got {self.prompt_template!r}")
        if not isinstance(self.lora_r, int) or self.lora_r < 1:
            raise ValueError(f"lora_r: must be a positive integer, got {self.lora_r!r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha: must be positive, got {self.lora_alpha!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout!r}")
        if not self.lora_target_modules or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m)
                                                   for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules: need module names like 'q_proj', got {self.lora_target_modules!r}")
        for key in ("lora_lr", "projector_lr"):
            setattr(self, key, _positive_float(key, getattr(self, key)))
        if self.torch_dtype not in DTYPES:
            raise ValueError(f"torch_dtype: expected one of {DTYPES}, got {self.torch_dtype!r}")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit: choose at most one")

    @property
    def active_labels(self) -> tuple[str, ...]:
        """The answer words the comparator scores: all three, or First/Second when two-class."""
        return self.labels[:2] if self.two_class else self.labels

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LlavaComparatorConfig":
        """Build from a mapping (YAML/JSON); unknown keys are errors that name the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LlavaComparatorConfig: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _positive_float(key: str, value: Any) -> float:
    """A learning rate from YAML: PyYAML reads ``2e-4`` (no dot) as a string, so strings are parsed."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
        raise ValueError(f"{key}: must be a positive number, got {value!r}")
    return float(number)


def lora_target_regex(modules: tuple[str, ...]) -> str:
    """peft target regex: the named projections of the *language model* only.

    A bare list like ["q_proj", "v_proj"] would also hit CLIP's attention projections
    (same names) and silently adapt the vision tower, which LMOL keeps frozen.
    """
    return r".*language_model\..*\.(" + "|".join(re.escape(m) for m in modules) + r")"


__all__ = ["LlavaComparatorConfig", "DEFAULT_LORA_TARGETS", "lora_target_regex", "DTYPES"]
