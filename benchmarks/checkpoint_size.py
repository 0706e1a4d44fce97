"""Per-epoch checkpoint size of the LMOL comparator (LLaVA-1.5-7B + LoRA), from parameter shapes.

No weights are needed: the model is built on PyTorch's ``meta`` device (shapes and dtypes, no
storage) from LLaVA-1.5-7B's published config (the facts in ../shared/models/README.md) and
wrapped exactly as a run builds it (``LlavaComparator``: LoRA on the language model's
projections, trained projector copy in float32) with the LoRA settings of
``configs/lmol/balanced3_ce.yaml``. Then it counts, in bytes:

- the per-epoch weights (``epoch_NNN/model.safetensors``) and the trained tensors of the resume
  state: ``Model.checkpoint_state_dict()`` (what trains);
- AdamW's state of those tensors (two moments each, in the parameter's dtype, plus a step count);
- what a resume state holding the whole model (accelerate's ``save_state``, this project's
  format before) wrote instead: every tensor of the model's state dict.

    python benchmarks/checkpoint_size.py --tokenizer /path/to/llama2-tokenizer [--config configs/lmol/balanced3_ce.yaml]

Needs transformers, peft and the Llama-2 tokenizer (a folder holding its tokenizer.model) for the
prompt the comparator builds; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparators.llava import LlavaComparator  # noqa: E402
from comparators.llava_config import LlavaComparatorConfig  # noqa: E402
from comparators.llava_loading import llava_15_7b_config, sentencepiece_tokenizer, torch_dtype  # noqa: E402
from orderlearn.config import load_config  # noqa: E402

ADAM_MOMENTS = 2  # exp_avg and exp_avg_sq, each shaped and typed like its parameter
ADAM_STEP_BYTES = 4  # one float32 step count per parameter tensor


def comparator_on_meta(options: LlavaComparatorConfig, tokenizer_path: Path) -> LlavaComparator:
    """The run's comparator with every tensor on the ``meta`` device (no memory, no weights)."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(llava_15_7b_config()).to(torch_dtype(options.torch_dtype))
    return LlavaComparator(llava, sentencepiece_tokenizer(tokenizer_path), options)  # the prompt ids are real tensors


def nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "lmol" / "balanced3_ce.yaml")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with the Llama-2 tokenizer.model")
    args = parser.parse_args()
    config = load_config(args.config)
    model_args = {k: v for k, v in config.model.args.items() if k not in ("tiny", "image_size", "patch_size")}
    options = LlavaComparatorConfig.from_dict(model_args)
    model = comparator_on_meta(options, args.tokenizer)

    trained = model.checkpoint_state_dict()
    whole = model.state_dict()
    lora = {k: v for k, v in trained.items() if "lora_" in k}
    projector = {k: v for k, v in trained.items() if k not in lora}
    optimizer = ADAM_MOMENTS * nbytes(trained) + ADAM_STEP_BYTES * len(trained)
    resume_state = nbytes(trained) + optimizer
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in trained.values()})

    mb, gb = 1e6, 1e9
    print(f"LLaVA-1.5-7B + LoRA as configured in {args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}: "
          f"r={options.lora_r}, alpha={options.lora_alpha:g}, targets={','.join(options.lora_target_modules)}, "
          f"train_projector={options.train_projector}, base dtype {options.torch_dtype}")
    print(f"model tensors: {sum(t.numel() for t in whole.values()):,} values in {len(whole)} tensors, {nbytes(whole) / gb:.2f} GB")
    print(f"trained tensors (checkpoint_state_dict): {len(trained)} tensors, {sum(t.numel() for t in trained.values()):,} values "
          f"({', '.join(dtypes)}): LoRA {len(lora)} tensors {nbytes(lora) / mb:.1f} MB, projector {len(projector)} tensors "
          f"{nbytes(projector) / mb:.1f} MB")
    print(f"per-epoch weights  epoch_NNN/model.safetensors: {nbytes(trained) / mb:.1f} MB")
    print(f"per-epoch resume state  state_epoch_NNN/: trained tensors {nbytes(trained) / mb:.1f} MB + AdamW moments "
          f"{optimizer / mb:.1f} MB = {resume_state / mb:.1f} MB (+ RNG states and JSON, a few kB per process)")
    print(f"whole-model resume state (before): model {nbytes(whole) / gb:.2f} GB + the same AdamW moments = "
          f"{(nbytes(whole) + optimizer) / gb:.2f} GB; the resume state is now {resume_state / (nbytes(whole) + optimizer):.2%} of that")


if __name__ == "__main__":
    main()
