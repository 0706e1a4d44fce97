"""Prompt and answer-token plumbing of the LMOL comparator (text side only, no model).

LMOL asks LLaVA-1.5 one question about two faces and reads the answer from the *first*
generated token (paper eq. 4–5). Three things must be exactly right for that to work and
all three are tokenizer facts, so they live here, testable without any weights:

1. the prompt, with each ``<image>`` placeholder expanded to as many image tokens as the
   vision tower yields patches (what transformers' ``LlavaProcessor`` does);
2. the ids of the label words *at the answer position* — the leading-space trap:
   SentencePiece encodes the string ``" First"`` as ``[29871, 3824]`` (a bare ``▁`` first),
   so ``encode(" First")[0]`` is 29871 for every label; the id that matters is the piece
   the model predicts right after ``ASSISTANT:``, i.e. ``▁First`` = 3824;
3. the masked softmax of eq. 5 over those label ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

DEFAULT_TEMPLATE = "USER: <image>\n<image>\n{question} Answer with {choices}. ASSISTANT:"
"""The -hf chat format with two images; ``{choices}`` becomes "First, Second or Similar"."""

IMAGE_TOKEN = "<image>"


def choices_text(labels: Sequence[str]) -> str:
    """"First, Second or Similar" / "First or Second": the answer set named in the prompt."""
    if len(labels) < 2:
        raise ValueError(f"labels: need at least two answer words, got {list(labels)!r}")
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def render_prompt(template: str, question: str, labels: Sequence[str], image_token: str = IMAGE_TOKEN) -> str:
    """The prompt text with two ``<image>`` placeholders (not yet expanded).

    Raises ValueError when the template does not hold exactly two image placeholders —
    the comparator's whole point is one prompt with both faces (eq. 3–4).
    """
    n = template.count(image_token)
    if n != 2:
        raise ValueError(f"prompt_template: must contain exactly two {image_token!r} placeholders, found {n}")
    if "{question}" not in template:
        raise ValueError("prompt_template: must contain the '{question}' field")
    return template.format(question=question, choices=choices_text(labels))


def num_image_tokens(image_size: int, patch_size: int, select_strategy: str = "default") -> int:
    """Image tokens per image: (size // patch)^2 patches, plus CLS for strategy "full".

    CLIP prepends a CLS token; LLaVA's "default" strategy drops it, so the -hf 336 px /
    patch 14 model gets 24 * 24 = 576 tokens per image. Same rule as ``LlavaProcessor``.
    """
    if select_strategy not in ("default", "full"):
        raise ValueError(f"vision_feature_select_strategy: expected 'default' or 'full', got {select_strategy!r}")
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    patches = (image_size // patch_size) ** 2
    return patches + (1 if select_strategy == "full" else 0)


def expand_image_tokens(prompt: str, n_tokens: int, image_token: str = IMAGE_TOKEN) -> str:
    """Replace each placeholder by ``n_tokens`` copies, as ``LlavaProcessor`` does before tokenising."""
    return prompt.replace(image_token, image_token * n_tokens)


@dataclass(frozen=True)
class PromptLayout:
    """The tokenised prompt and where the two images sit in it.

    Every pair uses the same prompt, so the ids are computed once and a batch needs no
    padding; images a and b occupy ``[a_start, a_start + n)`` and ``[b_start, b_start + n)``.
    """

    input_ids: torch.Tensor  # long [L]
    a_start: int
    b_start: int
    n_image_tokens: int

    @property
    def length(self) -> int:
        return int(self.input_ids.numel())


def build_prompt_ids(tokenizer: Any, prompt: str, n_tokens: int, image_token_id: int,
                     image_token: str = IMAGE_TOKEN) -> PromptLayout:
    """Tokenise the expanded prompt (with BOS) and locate the two contiguous image blocks.

    Raises ValueError when the tokenizer does not map the placeholder to ``image_token_id``
    (e.g. ``<image>`` was not added as a special token) — image features would then be
    spliced into the wrong positions.
    """
    ids = tokenizer(expand_image_tokens(prompt, n_tokens, image_token), add_special_tokens=True)["input_ids"]
    ids_t = torch.tensor(ids, dtype=torch.long)
    where = (ids_t == image_token_id).nonzero().flatten().tolist()
    if len(where) != 2 * n_tokens:
        raise ValueError(
            f"tokenizer: expected {2 * n_tokens} image tokens (id {image_token_id}) in the prompt, found "
            f"{len(where)}; is {image_token!r} registered as a special token with that id?")
    a_start, b_start = where[0], where[n_tokens]
    if where != list(range(a_start, a_start + n_tokens)) + list(range(b_start, b_start + n_tokens)):
        raise ValueError("prompt: the image tokens of each image must be contiguous")
    return PromptLayout(ids_t, a_start, b_start, n_tokens)


def answer_token_ids(tokenizer: Any, prompt: str, labels: Sequence[str], separator: str = " ") -> list[int]:
    """Ids of the label words at the answer position, checked distinct (eq. 5's set C).

    Tokenises ``prompt + separator + label`` and takes the first token after the prompt's
    own tokens — the piece the model predicts next, which is what eq. 5 masks to. Raises
    ValueError when the prompt's tokens are not a prefix of the answered prompt (e.g. a
    trailing space in the template merges into the answer) or when two labels share their
    first piece (the leading-space trap, or labels like "Firstly"/"First").
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    out = []
    for label in labels:
        full = tokenizer(prompt + separator + label, add_special_tokens=True)["input_ids"]
        if full[: len(prompt_ids)] != prompt_ids or len(full) == len(prompt_ids):
            raise ValueError(
                f"prompt_template: the prompt's tokens change when the answer {label!r} is appended "
                f"(does the template end in whitespace?); cannot locate the answer position")
        out.append(int(full[len(prompt_ids)]))
    if len(set(out)) != len(out):
        pieces = tokenizer.convert_ids_to_tokens(out)
        raise ValueError(
            f"labels: {list(labels)!r} give non-distinct first answer tokens {out} ({pieces}); each label "
            f"must start with its own token (the leading-space trap gives 29871 '▁' for all)")
    return out


def masked_softmax(vocab_logits: torch.Tensor, label_ids: Sequence[int]) -> torch.Tensor:
    """Eq. 5: softmax over the full vocabulary with every non-label logit masked to −inf.

    Returns probabilities over the K labels, ordered as ``label_ids``. Equal to a plain
    softmax over ``vocab_logits[..., label_ids]``, which is what the comparator returns
    as logits; this function exists to state (and test) that equivalence.
    """
    ids = torch.as_tensor(list(label_ids), device=vocab_logits.device, dtype=torch.long)
    mask = torch.full_like(vocab_logits, float("-inf"))
    mask[..., ids] = 0.0
    return torch.softmax(vocab_logits + mask, dim=-1)[..., ids]
