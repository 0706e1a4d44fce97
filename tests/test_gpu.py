"""The LMOL comparator on a CUDA GPU: bf16 training and QLoRA (4-bit through bitsandbytes).

``benchmarks/gpu.sh`` runs these (``pytest -m gpu``); ``.ci/run`` deselects them (marker ``gpu``),
and without CUDA they skip. The tiny random LLaVA (LLaVA-1.5's structure and ids, the real
Llama-2 tokenizer) stands in for the 7B weights, which no machine here has: what is checked is
that the paths the published configs take on a GPU run at all and train (bf16 weights, 4-bit
base weights with LoRA and a float32 projector on top), not the scores of a 7B model.

The one test without a GPU checks the other half of gpu.sh's contract: on a machine without
CUDA it stops at once, with a message and a non-zero exit.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / ".." / "shared" / "models" / "llama2-tokenizer"


@pytest.mark.slow  # a subprocess
def test_gpu_script_stops_at_once_without_cuda(tmp_path):
    """No CUDA (hidden with CUDA_VISIBLE_DEVICES=""): exit 3 with the reason, before any work."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPU_RUN_DIR": str(tmp_path / "gpu-runs"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no CUDA GPU" in done.stderr
    assert not (tmp_path / "gpu-runs").exists()  # stopped before the first step


def _tokenizer():
    if not (TOKENIZER_DIR / "tokenizer.model").is_file():
        pytest.skip(f"Llama-2 tokenizer not found at {TOKENIZER_DIR}")
    from comparators.llava_loading import sentencepiece_tokenizer

    return sentencepiece_tokenizer(TOKENIZER_DIR)


def _pairs(n: int, size: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a, b = (torch.randn(n, 3, size, size, generator=gen) for _ in range(2))
    labels = torch.arange(n) % 3
    return a.to(device), b.to(device), labels.to(device)


def _steps(model, a, b, labels, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameter_groups(), weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(a, b).float(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_tiny_llava_trains_in_bf16_on_cuda():
    from comparators.llava import LlavaComparator, LlavaComparatorConfig

    config = LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="bfloat16", lora_lr=1e-2, projector_lr=1e-2,
                                   lora_dropout=0.0)
    model = LlavaComparator.tiny(_tokenizer(), config=config).cuda()
    assert next(model.llava.model.language_model.parameters()).dtype == torch.bfloat16
    a, b, labels = _pairs(6, model.image_size, 0, "cuda")
    with torch.no_grad():  # the split path equals the full LLaVA forward on the GPU too
        torch.testing.assert_close(model.compare(model.embed(a), model.embed(b)), model.forward_naive(a, b),
                                   atol=5e-2, rtol=0)
    losses = _steps(model, a, b, labels, 20)
    print(f"bf16 tiny LLaVA on {torch.cuda.get_device_name()}: CE {losses[0]:.4f} -> {losses[-1]:.4f} in 20 steps")
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_tiny_llava_loads_in_4bit_and_trains_a_step(tmp_path):
    """QLoRA: save the tiny model like a hub checkpoint, load it back through from_config with
    load_in_4bit (NF4, bf16 compute), and take optimizer steps on LoRA + projector."""
    import bitsandbytes as bnb
    from transformers import LlavaForConditionalGeneration

    from comparators.llava import LlavaComparator, LlavaComparatorConfig
    from comparators.llava_loading import tiny_llava_config

    tokenizer = _tokenizer()
    checkpoint = tmp_path / "tiny-llava"
    torch.manual_seed(0)
    LlavaForConditionalGeneration(tiny_llava_config()).to(torch.bfloat16).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    config = LlavaComparatorConfig(checkpoint=str(checkpoint), load_in_4bit=True, torch_dtype="bfloat16",
                                   lora_lr=1e-2, projector_lr=1e-2, lora_dropout=0.0)
    model = LlavaComparator.from_config(config)
    quantised = [m for m in model.llava.model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantised) == 2 * 7  # every projection of both decoder layers is 4-bit
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.llava.model.vision_tower.modules())
    assert model.device == torch.device("cuda", torch.cuda.current_device())
    model.to(model.device)  # what the pipeline does; a no-op for the placed 4-bit weights
    before = {k: v.clone() for k, v in model.checkpoint_state_dict().items()}
    a, b, labels = _pairs(6, model.image_size, 1, "cuda")
    losses = _steps(model, a, b, labels, 5)
    after = model.checkpoint_state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    print(f"4-bit tiny LLaVA on {torch.cuda.get_device_name()}: {len(quantised)} Linear4bit layers, "
          f"CE {losses[0]:.4f} -> {losses[-1]:.4f} in 5 steps, {len(moved)}/{len(before)} trained tensors moved")
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert len(moved) == len(before)  # every LoRA and projector tensor trained
    assert losses[-1] < losses[0], losses
