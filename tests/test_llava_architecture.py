"""LLaVA-1.5-7B's architecture with random weights, the seam that wraps a built model, and where the
tokenizer comes from.

The 7B facts are checked on the meta device (shapes only, no memory): the parameter count from
``llava_15_7b_config()`` against a count by hand from the published shapes, and the exact number
of parameters the LMOL comparator trains. ``random_llava`` and ``from_model`` are checked on the
tiny configuration, where every path is the same code.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from comparators.llava import LlavaComparator, LlavaComparatorConfig, build
from comparators.llava_loading import (LLAVA_15_7B_PARAMETERS, CheckpointNotFoundError, llava_15_7b_config,
                                       load_tokenizer, random_llava, sentencepiece_tokenizer, tiny_llava_config)
from orderlearn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer(llama2_tokenizer_dir):
    return sentencepiece_tokenizer(llama2_tokenizer_dir)


def _meta_7b():
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        return LlavaForConditionalGeneration(llava_15_7b_config())


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- the 7B architecture
def test_7b_config_gives_the_documented_parameter_count():
    """7,063,427,072: by the model built from llava_15_7b_config() and by hand from the shapes."""
    model = _meta_7b()
    counted = sum(p.numel() for p in model.parameters())
    h, inter, layers, vocab = 4096, 11008, 32, 32064
    llama = 2 * vocab * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h  # embeddings, head, layers, final norm
    v, v_inter, v_layers, patches = 1024, 4096, 24, (336 // 14) ** 2
    clip = (3 * 14 * 14 * v + v + (patches + 1) * v + 2 * v  # patch conv, CLS, positions, pre-norm
            + v_layers * (4 * (v * v + v) + (v * v_inter + v_inter) + (v_inter * v + v) + 4 * v) + 2 * v)
    projector = (v * h + h) + (h * h + h)
    assert counted == llama + clip + projector == LLAVA_15_7B_PARAMETERS == 7_063_427_072
    cfg = model.config
    assert (cfg.image_token_id, cfg.text_config.pad_token_id, cfg.vision_feature_layer, cfg.vision_feature_select_strategy) \
        == (32000, 32001, -2, "default")
    assert cfg.vision_config.hidden_act == "quick_gelu" and not cfg.text_config.tie_word_embeddings


def test_the_7b_comparator_trains_lora_and_the_projector_only(tokenizer):
    """Exact trainable parameters of configs/lmol/balanced3_ce.yaml's comparator at the real size."""
    options = LlavaComparatorConfig(checkpoint="meta", tokenizer="unused", lora_r=8)
    model = LlavaComparator.from_model(_meta_7b(), tokenizer, options)
    counts = model.trainable_parameters()
    h, inter = 4096, 11008
    lora = 32 * 8 * (4 * (h + h) + 2 * (h + inter) + (inter + h))  # q,k,v,o; gate, up; down
    projector = (1024 * h + h) + (h * h + h)
    assert counts["lora"] == lora == 19_988_480 and counts["projector"] == projector == 20_979_712
    assert counts["trainable"] == 40_968_192 and counts["other"] == 0
    assert counts["total"] == LLAVA_15_7B_PARAMETERS + lora + projector  # peft keeps the frozen projector too
    assert model.layout.n_image_tokens == 576 and model.layout.length > 2 * 576


# ---------------------------------------------------------------------- random weights
def test_random_llava_builds_buffers_for_real_and_draws_every_parameter():
    from transformers import LlavaForConditionalGeneration

    config = tiny_llava_config()
    model = random_llava(config, torch.bfloat16, seed=3)
    reference = LlavaForConditionalGeneration(tiny_llava_config())  # built the ordinary way
    built = dict(reference.named_buffers())
    buffers = dict(model.named_buffers())
    assert set(buffers) == set(built) and any("inv_freq" in k for k in buffers)
    for name, value in buffers.items():  # rotary frequencies in float32, never rounded through bf16
        assert value.dtype == built[name].dtype and torch.equal(value, built[name]), name
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.bfloat16 and not p.is_meta and torch.isfinite(p).all() for p in params.values())
    assert torch.equal(params["model.language_model.norm.weight"], torch.ones(64, dtype=torch.bfloat16))
    assert not params["model.multi_modal_projector.linear_1.bias"].any()
    assert 0.015 < params["lm_head.weight"].float().std() < 0.025  # N(0, 0.02)
    again, other = random_llava(config, torch.bfloat16, seed=3), random_llava(config, torch.bfloat16, seed=4)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    assert not torch.equal(other.lm_head.weight, model.lm_head.weight)


def test_a_bf16_tiny_comparator_keeps_rotary_frequencies_in_float32(tokenizer):
    """``model.to(bfloat16)`` rounded inv_freq to bf16 (a real checkpoint keeps float32): fixed."""
    model = LlavaComparator.tiny(tokenizer, config=LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="bfloat16"))
    rotary = model.llava.model.language_model.rotary_emb
    exact = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float) / 16))  # head dim 64 / 4 heads
    assert rotary.inv_freq.dtype == torch.float32 and torch.equal(rotary.inv_freq, exact)
    assert next(model.llava.model.language_model.parameters()).dtype == torch.bfloat16


def test_from_model_wraps_a_built_model_as_from_config_wraps_the_saved_one(tokenizer, llama2_tokenizer_dir, tmp_path):
    """The seam: a random model wrapped in memory answers exactly as the same weights saved and loaded."""
    llava = random_llava(tiny_llava_config(), torch.float32, seed=1)
    llava.save_pretrained(tmp_path / "ckpt")
    options = LlavaComparatorConfig(checkpoint=str(tmp_path / "ckpt"), tokenizer=str(llama2_tokenizer_dir),
                                    torch_dtype="float32", lora_dropout=0.0)
    wrapped = LlavaComparator.from_model(llava, tokenizer, options).eval()
    loaded = LlavaComparator.from_config(options).eval()
    assert sorted(wrapped.checkpoint_state_dict()) == sorted(loaded.checkpoint_state_dict())
    a, b = _images(3, 32, 5), _images(3, 32, 6)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(a, b), loaded(a, b), atol=0, rtol=0)
        assert wrapped(a, b).std() > 0
    with pytest.raises(ValueError, match="image"):  # a tokenizer whose <image> is not the model's id
        LlavaComparator.from_model(random_llava(tiny_llava_config(), torch.float32), _no_image_token(tokenizer), options)


def _no_image_token(tokenizer):
    class Plain:
        def encode(self, text, add_special_tokens=False):
            return [1, 2]

    return Plain()


def test_gradient_checkpointing_switches_on_a_built_comparator(tokenizer):
    model = LlavaComparator.tiny(tokenizer)
    layers = model.llava.model.language_model.layers
    assert not model.config.gradient_checkpointing and not any(layer.gradient_checkpointing for layer in layers)
    model.set_gradient_checkpointing(True)
    assert model.config.gradient_checkpointing and all(layer.gradient_checkpointing for layer in layers)
    model.set_gradient_checkpointing(False)
    assert not model.config.gradient_checkpointing and not any(layer.gradient_checkpointing for layer in layers)
    model.set_gradient_checkpointing(False)  # off twice is fine


# ---------------------------------------------------------------------- the tokenizer is named, never guessed
def test_no_tokenizer_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"^model\.tokenizer: not set"):
        build(tiny=True)
    with pytest.raises(ConfigError, match=r"^model\.tokenizer: not set"):  # before any weights are looked for
        LlavaComparator.from_config(LlavaComparatorConfig(checkpoint="/nonexistent/llava"))
    with pytest.raises(ConfigError, match=r"^model\.tokenizer"):
        LlavaComparator.from_model(random_llava(tiny_llava_config(), torch.float32), None)


def test_the_tokenizer_comes_from_the_config(llama2_tokenizer_dir, monkeypatch, tmp_path):
    from orderlearn.config import config_from_dict

    model = build(tiny=True, tokenizer=str(llama2_tokenizer_dir))
    assert model.config.tokenizer == str(llama2_tokenizer_dir) and model.label_ids == [3824, 6440, 13999]
    with pytest.raises(ConfigError, match="tokenizer_path"):  # the old key is an unknown key now
        config_from_dict({"name": "x", "task": "comparator", "model": {"name": "llava", "tiny": True,
                                                                       "tokenizer_path": str(llama2_tokenizer_dir)}})
    with pytest.raises(CheckpointNotFoundError, match=r"^model\.tokenizer: '/nonexistent/tok' no such folder"):
        load_tokenizer("/nonexistent/tok")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match=r"^model\.tokenizer: .*HF_HUB_OFFLINE"):
        load_tokenizer("llava-hf/not-a-cached-tokenizer")


def test_library_code_names_no_path_outside_the_package():
    """The tokenizer (or anything else) never defaults to a folder beside the repository."""
    outside = re.compile(r"""/\s*["']\.\.["']|["']\.\./|/\.\./|["']shared["']\s*/|shared/models""")
    offenders = [f"{path.relative_to(REPO)}:{n}" for folder in ("comparators", "orderlearn", "scorers")
                 for path in sorted((REPO / folder).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if outside.search(line)]
    assert not offenders, offenders
