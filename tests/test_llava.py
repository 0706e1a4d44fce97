"""Tests of the LMOL LLaVA comparator on a tiny random LLaVA with the real Llama-2 tokenizer.

The tokenizer facts (prompt ids, label ids 3824/6440/13999) are checked against the real
SentencePiece model and transformers' own ``LlavaProcessor``; the model facts (cached ==
naive, masked softmax, LoRA placement, checkpoint round trip, the base contract's hooks) on a 4M-parameter
LLaVA with LLaVA-1.5's structure and special ids.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import scorers
from comparators.base import Comparator
from comparators.llava import (CheckpointNotFoundError, ClipPreprocess, LlavaComparator,
                               LlavaComparatorConfig, build, masked_softmax)
from comparators.llava_loading import IMAGE_TOKEN_ID, PAD_TOKEN_ID, sentencepiece_tokenizer
from comparators.llava_prompt import (answer_token_ids, build_prompt_ids, num_image_tokens,
                                      render_prompt)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention

PATCHES = 4  # tiny model: 32 px images, patch 16 -> 2 x 2 patches per image
PROMPT = ("USER: <image>\n<image>\nWhich face looks more attractive? Answer with First, Second or Similar. "
          "ASSISTANT:")


@pytest.fixture(scope="module")
def tokenizer(llama2_tokenizer_dir):
    """The converted tokenizer (converting from SentencePiece costs ~1 s; cached per file)."""
    return sentencepiece_tokenizer(llama2_tokenizer_dir)


@pytest.fixture(scope="module")
def tiny(tokenizer) -> LlavaComparator:
    torch.manual_seed(0)
    return LlavaComparator.tiny(tokenizer).eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- tokenizer / prompt
def test_added_token_ids(tokenizer):
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_TOKEN_ID, PAD_TOKEN_ID] == [32000, 32001]
    assert len(tokenizer) == 32002


def test_label_ids_are_the_answer_pieces(tokenizer):
    assert answer_token_ids(tokenizer, PROMPT, ["First", "Second", "Similar"]) == [3824, 6440, 13999]
    assert tokenizer.convert_ids_to_tokens([3824, 6440, 13999]) == ["▁First", "▁Second", "▁Similar"]


def test_leading_space_trap_is_real_and_avoided(tokenizer, llama2_tokenizer_dir):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_dir / "tokenizer.model"))
    naive = [sp.encode(" " + w)[0] for w in ("First", "Second", "Similar")]
    assert naive == [29871, 29871, 29871]  # the public re-implementation's bug
    assert len(set(answer_token_ids(tokenizer, PROMPT, ["First", "Second", "Similar"]))) == 3


def test_non_distinct_labels_raise(tokenizer):
    with pytest.raises(ValueError, match="non-distinct first answer tokens"):
        answer_token_ids(tokenizer, PROMPT, ["First", "Firstly", "Similar"])  # both start with ▁First


def test_trailing_space_template_raises(tokenizer):
    with pytest.raises(ValueError, match="whitespace"):
        answer_token_ids(tokenizer, PROMPT + " ", ["First", "Second", "Similar"])


def test_prompt_expansion_two_images(tokenizer):
    prompt = render_prompt(LlavaComparatorConfig().prompt_template, "Which face looks more attractive?",
                           ("First", "Second", "Similar"))
    assert prompt == PROMPT
    layout = build_prompt_ids(tokenizer, prompt, PATCHES, IMAGE_TOKEN_ID)
    ids = layout.input_ids.tolist()
    assert ids.count(32000) == 2 * PATCHES
    assert (layout.a_start, layout.b_start) == (5, 10)
    assert ids[:5] == [1, 3148, 1001, 29901, 29871]  # <s> ▁US ER : ▁
    assert ids[9] == ids[14] == 13  # "\n" after each image
    assert tokenizer.decode(ids[15:]) == ("Which face looks more attractive? Answer with First, Second or Similar. "
                                          "ASSISTANT:")
    # the real model: 336 px, patch 14 -> 576 tokens per image, 1152 in the prompt
    assert num_image_tokens(336, 14, "default") == 576
    big = build_prompt_ids(tokenizer, prompt, 576, IMAGE_TOKEN_ID)
    assert int((big.input_ids == 32000).sum()) == 1152 and big.length == len(ids) - 2 * PATCHES + 1152


def test_prompt_matches_transformers_llava_processor(tiny):
    from PIL import Image
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),  # landscape
           Image.fromarray(rng.integers(0, 256, (64, 41, 3), dtype=np.uint8))]  # portrait, odd crop margin
    proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                crop_size={"height": 32, "width": 32}),
                          tokenizer=tiny.tokenizer, patch_size=16, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)
    out = proc(images=ims, text=tiny.prompt, return_tensors="pt")
    assert out["input_ids"][0].tolist() == tiny.prompt_ids.tolist()
    mine = torch.stack([tiny.preprocess()(im) for im in ims])
    assert mine.shape == (2, 3, 32, 32)
    torch.testing.assert_close(mine, out["pixel_values"], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- model
def test_masked_softmax_equals_softmax_over_label_logits(tiny):
    ids = [3824, 6440, 13999]
    vocab = torch.randn(4, 32064, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(masked_softmax(vocab, ids), torch.softmax(vocab[:, ids], -1))
    # on the model: full-vocabulary logits of the last prompt position, masked (eq. 5)
    a, b = _images(2, 2), _images(2, 3)
    with torch.no_grad():
        full = tiny.llava(input_ids=tiny.prompt_ids.expand(2, -1),
                          pixel_values=torch.stack([a, b], 1).flatten(0, 1)).logits[:, -1]
        probs = torch.softmax(tiny(a, b), -1)
    torch.testing.assert_close(masked_softmax(full, tiny.label_ids), probs, atol=1e-6, rtol=1e-5)


def test_cached_equals_naive(tiny):
    a, b = _images(3, 4), _images(3, 5)
    with torch.no_grad():
        naive = tiny.forward_naive(a, b)
        cached = tiny.compare(tiny.embed(a), tiny.embed(b))
        fwd = tiny(a, b)
        ea, eb = tiny.embed(a), tiny.embed(b)
        one_to_many = tiny.compare_one_to_many(ea[0], eb, batch=2)
        one_fixed = tiny.compare(ea[:1].expand(3, -1, -1), eb)
        grid = tiny.compare_grid(ea[:2], eb, batch=2)
        grid_ref = torch.stack([tiny.compare(ea[i: i + 1].expand(3, -1, -1), eb) for i in range(2)])
    assert naive.shape == (3, 3) and ea.shape == (3, PATCHES, 64)
    assert naive.std() > 1e-3  # not a degenerate constant
    torch.testing.assert_close(cached, naive, atol=1e-5, rtol=0)
    torch.testing.assert_close(fwd, naive, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_to_many, one_fixed, atol=1e-5, rtol=0)
    assert grid.shape == (2, 3, 3)
    torch.testing.assert_close(grid, grid_ref, atol=1e-5, rtol=0)
    # swapping the images changes the answer (the two image slots are distinct)
    assert not torch.allclose(tiny.compare(eb, ea), cached, atol=1e-4)


def test_label_order_fits_the_projects_both_order_rule(tiny):
    """The comparator's logits are in PairLabel order (FIRST, SECOND, SIMILAR), so the project's one
    both-order rule (scorers.combine_orders) applies as is: swapping the images swaps the result."""
    a, b = _images(2, 6), _images(2, 7)
    with torch.no_grad():
        ea, eb = tiny.embed(a), tiny.embed(b)
        p_ab, p_ba = torch.softmax(tiny.compare(ea, eb), -1), torch.softmax(tiny.compare(eb, ea), -1)
    assert tiny.label_ids == [3824, 6440, 13999]  # ▁First ▁Second ▁Similar, in PairLabel order
    both, swapped = scorers.combine_orders(p_ab, p_ba), scorers.combine_orders(p_ba, p_ab)
    torch.testing.assert_close(both, swapped[:, [1, 0, 2]])
    torch.testing.assert_close(both.sum(-1), torch.ones(2))
    assert not torch.allclose(p_ab, p_ba[:, [1, 0, 2]], atol=1e-4)  # a real position effect to cancel


def test_no_second_both_order_rule_or_test_helpers_in_the_comparator():
    """One both-order rule (scorers.combine_orders), one checkpoint ensemble (the pipeline's
    ensemble_last), benchmarks in benchmarks/llava.py: none of them on the comparator."""
    import comparators.llava as module

    for name in ("compare_probs", "compare_both_orders", "ensemble_probs", "using_adapter", "save_adapter",
                 "load_adapter"):
        assert name not in vars(LlavaComparator), name
    for name in ("pairs_per_second", "load_checkpoint_ensemble", "main"):
        assert name not in vars(module), name


# ---------------------------------------------------------------------- the base contract
def test_pair_batch_size_and_compare_grid_default_batch(tiny):
    assert LlavaComparator.pair_batch_size == 32 < Comparator.pair_batch_size
    ea, eb = tiny.embed(_images(2, 30)), tiny.embed(_images(5, 31))
    with torch.no_grad():
        shared = tiny.compare_grid(ea, eb)  # the base signature: no batch argument
        base = Comparator.compare_grid(tiny, ea, eb)  # the default: compare on every repeated pair
        chunked = tiny.compare_grid(ea, eb, batch=2)
    assert shared.shape == (2, 5, 3)
    torch.testing.assert_close(shared, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked, base, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch"):
        tiny.compare_grid(ea, eb, batch=0)


def test_feature_modules_are_what_embed_reads(tiny, tokenizer):
    """The vision tower and the projector decide embed(); the language model (with LoRA) does not."""
    modules = tiny.feature_modules()
    assert modules == [tiny.llava.model.vision_tower, tiny.llava.model.multi_modal_projector]
    feature_ids = {id(p) for m in modules for p in m.parameters()}
    lm_ids = {id(p) for p in tiny.llava.model.language_model.parameters()}
    assert feature_ids and not feature_ids & lm_ids
    model = LlavaComparator.tiny(tokenizer, seed=2).eval()
    x = _images(2, 32)
    with torch.no_grad():
        before = model.embed(x)
        next(model.llava.model.language_model.parameters()).add_(1.0)
        torch.testing.assert_close(model.embed(x), before, atol=0, rtol=0)
        for p in model.feature_modules()[1].parameters():
            p.add_(0.1)
        assert not torch.allclose(model.embed(x), before)


def test_clip_preprocess_repr_states_size_and_normalisation():
    """The feature cache keys on the transform's repr: it must be stable and say what changes the tensor."""
    one, same, other = ClipPreprocess(32), ClipPreprocess(32), ClipPreprocess(336)
    assert repr(one) == repr(same) != repr(other)
    assert "0x" not in repr(one)  # not an address
    assert "336" in repr(other) and "0.48145466" in repr(one) and "0.26862954" in repr(one)


def test_only_lora_and_projector_train(tiny, tokenizer):
    trainable = [n for n, p in tiny.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "multi_modal_projector.modules_to_save" in n for n in trainable)
    assert all("language_model" in n for n in trainable if "lora_" in n)  # no LoRA in the vision tower
    assert not any(p.requires_grad for p in tiny.llava.model.vision_tower.parameters())
    # hand count, r = 8: per layer q,k,v,o 4*8*(64+64) + gate,up 2*8*(64+128) + down 8*(128+64) = 8704; 2 layers
    # projector: (32*64 + 64) + (64*64 + 64) = 6272
    assert tiny.trainable_parameters() | {"total": 0} == {"lora": 17408, "projector": 6272, "other": 0,
                                                          "trainable": 23680, "total": 0}
    frozen_proj = LlavaComparator.tiny(tokenizer, config=LlavaComparatorConfig(
        checkpoint="tiny-random", torch_dtype="float32", train_projector=False, lora_target_modules=("q_proj",)))
    assert frozen_proj.trainable_parameters()["projector"] == 0
    assert frozen_proj.trainable_parameters()["lora"] == 2 * 8 * (64 + 64)


def _fast(tokenizer, seed: int, **options) -> LlavaComparator:
    """A tiny comparator whose parameter groups carry lr 1e-2 (a few steps must move the loss)."""
    config = LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="float32", lora_lr=1e-2, projector_lr=1e-2,
                                   **options)
    return LlavaComparator.tiny(tokenizer, seed=seed, config=config)


def _train_steps(model: LlavaComparator, steps: int, seed: int = 8) -> list[float]:
    a, b = _images(4, seed), _images(4, seed + 1)
    labels = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.AdamW(model.parameter_groups(), weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(a, b), labels)  # eq. 6 on the comparator's logits
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def test_a_few_steps_lower_the_ce_loss(tokenizer):
    model = _fast(tokenizer, seed=1)
    losses = _train_steps(model, 8)
    assert losses[0] == pytest.approx(np.log(3), abs=0.1)  # random init: near-uniform over 3 labels
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_state_round_trip_through_the_loop_files(tmp_path, tokenizer):
    """What the shared loop saves per epoch: adapter tensors only; loading restores the logits exactly."""
    from safetensors.torch import save_file

    from orderlearn.engine.checkpoints import load_weights

    trained = _fast(tokenizer, seed=5)
    _train_steps(trained, 3)
    state = trained.checkpoint_state_dict()
    assert len(state) == 2 * 7 * 2 + 4  # 2 layers x 7 projections x (A, B) + projector weights and biases
    assert all("lora_" in k or "multi_modal_projector.modules_to_save" in k for k in state)
    assert sum(t.numel() for t in state.values()) == 23680  # = trainable_parameters()["trainable"]
    file = tmp_path / "model.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(file))  # as save_epoch does
    a, b = _images(3, 20), _images(3, 21)
    with torch.no_grad():
        want = trained(a, b)
    fresh = _fast(tokenizer, seed=5).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(a, b), want, atol=1e-4)
        load_weights(fresh, file)
        torch.testing.assert_close(fresh(a, b), want, atol=0, rtol=0)
    # strict: a missing tensor or another rank is refused with the names
    partial = dict(state)
    partial.pop(next(iter(partial)))
    with pytest.raises(ValueError, match="missing 1 tensor"):
        fresh.load_checkpoint_state_dict(partial)
    rank4 = LlavaComparator.tiny(tokenizer, config=LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="float32",
                                                                      lora_r=4))
    with pytest.raises(ValueError, match="shape mismatch"):
        rank4.load_checkpoint_state_dict(state)


def test_checkpoint_without_projector_holds_lora_only(tokenizer):
    model = LlavaComparator.tiny(tokenizer, config=LlavaComparatorConfig(
        checkpoint="tiny-random", torch_dtype="float32", train_projector=False))
    state = model.checkpoint_state_dict()
    assert len(state) == 28 and all("lora_" in k for k in state)


def test_parameter_groups_follow_the_config(tokenizer):
    default = build(tiny=True, tokenizer=tokenizer)
    assert [(g["name"], g["lr"]) for g in default.parameter_groups()] == [("lora", 2e-4), ("projector", 2e-5)]
    model = build(tiny=True, tokenizer=tokenizer, lora_lr="5e-4", projector_lr=1e-5)  # YAML gives "5e-4" as text
    groups = model.parameter_groups()
    assert [(g["name"], g["lr"]) for g in groups] == [("lora", 5e-4), ("projector", 1e-5)]
    assert sum(p.numel() for g in groups for p in g["params"]) == 23680
    with pytest.raises(ValueError, match="lora_lr"):
        LlavaComparatorConfig(lora_lr=0)
    with pytest.raises(ValueError, match="projector_lr"):
        LlavaComparatorConfig(projector_lr="fast")


def test_bf16_model_still_trains_its_projector(tokenizer):
    """A bf16 projector copy would drop AdamW steps of 2e-5 (below half a bf16 ulp at |w| ~ 0.02)."""
    model = build(tiny=True, tokenizer=tokenizer, torch_dtype="bfloat16")
    proj = {k: v.clone() for k, v in model.checkpoint_state_dict().items() if "multi_modal_projector" in k}
    assert proj and all(v.dtype == torch.float32 for v in proj.values())
    a, b = _images(2, 22), _images(2, 23)
    with torch.no_grad():  # the fused (naive) LLaVA forward still accepts the float32 projector
        torch.testing.assert_close(model.forward_naive(a, b), model(a, b), atol=2e-2, rtol=0)
    opt = torch.optim.AdamW(model.parameter_groups(), weight_decay=0.0)
    torch.nn.functional.cross_entropy(model(a, b), torch.tensor([0, 2])).backward()
    opt.step()
    after = model.checkpoint_state_dict()
    moved = [(after[k] != v).float().mean().item() for k, v in proj.items() if v.dim() == 2]
    assert min(moved) > 0.9, moved


def test_frozen_backbone_mode_is_refused_clearly(tiny):
    from orderlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="train.frozen_backbone"):
        tiny.head_parameters()


def test_two_class_variant_through_the_registry_factory(tokenizer):
    model = build(tiny=True, tokenizer=tokenizer, two_class=True).eval()
    assert model.num_classes == 2 and model.label_ids == [3824, 6440]
    assert model.prompt.endswith("Answer with First or Second. ASSISTANT:")
    with torch.no_grad():
        out = model(_images(3, 12), _images(3, 13))
    assert out.shape == (3, 2)


def test_gradient_checkpointing_gives_same_gradients(tokenizer):
    a, b, y = _images(2, 14), _images(2, 15), torch.tensor([0, 2])
    grads = []
    for gc in (False, True):
        model = LlavaComparator.tiny(tokenizer, seed=4, config=LlavaComparatorConfig(
            checkpoint="tiny-random", torch_dtype="float32", gradient_checkpointing=gc, lora_dropout=0.0)).train()
        torch.nn.functional.cross_entropy(model(a, b), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_benchmark_figures_are_measured_on_the_model(tiny):
    """benchmarks/llava.py's two measurements on the 4-token model: positive rates, and the active
    scorer's forwards per face counted on the comparator itself (budget 8 of a 20-face bank)."""
    from benchmarks.llava import forwards_per_face, pairs_per_second

    speed = pairs_per_second(tiny, n_test=2, n_refs=4, batch=2, repeats=1)
    assert set(speed) == {"naive_pairs_per_s", "cached_pairs_per_s", "shared_prefix_pairs_per_s", "cached_vs_naive",
                          "shared_prefix_vs_naive"}
    assert all(v > 0 for v in speed.values())
    forwards = forwards_per_face(tiny, bank_size=20, budget=8, n_test=3)
    assert forwards["active_forwards_per_face"] == 8 and forwards["full_bank_forwards_per_face"] == 20


# ---------------------------------------------------------------------- config / loading errors
def test_missing_local_checkpoint_message(llama2_tokenizer_dir):
    cfg = LlavaComparatorConfig(checkpoint="/nonexistent/llava-1.5-7b-hf", tokenizer=str(llama2_tokenizer_dir))
    with pytest.raises(CheckpointNotFoundError) as err:
        LlavaComparator.from_config(cfg)
    msg = str(err.value)
    assert "/nonexistent/llava-1.5-7b-hf" in msg and "no such local folder" in msg
    assert "model.checkpoint: /path/to/llava-1.5-7b-hf" in msg and "huggingface-cli download" in msg


def test_offline_hub_id_message(monkeypatch, tmp_path, llama2_tokenizer_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as err:
        LlavaComparator.from_config(LlavaComparatorConfig(checkpoint="llava-hf/llava-1.5-7b-hf-not-cached",
                                                          tokenizer=str(llama2_tokenizer_dir)))
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "model.checkpoint: /path/to/llava-1.5-7b-hf" in msg and "HF_HOME" in msg


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available(),
                    reason="bitsandbytes and CUDA present: quantised loading would be attempted")
def test_quantisation_without_bitsandbytes_or_cuda_is_a_clear_error(llama2_tokenizer_dir):
    with pytest.raises(ValueError, match="load_in_4bit"):
        LlavaComparator.from_config(LlavaComparatorConfig(checkpoint="/nonexistent", load_in_4bit=True,
                                                          tokenizer=str(llama2_tokenizer_dir)))


@pytest.mark.parametrize("bad, key", [
    ({"torch_dtype": "fp8"}, "torch_dtype"),
    ({"load_in_4bit": True, "load_in_8bit": True}, "load_in_4bit"),
    ({"labels": ("First", "First", "Similar")}, "labels"),
    ({"prompt_template": "USER: <image>\n{question} ASSISTANT:"}, "prompt_template"),
    ({"lora_r": 0}, "lora_r"),
])
def test_config_validation(bad, key):
    with pytest.raises(ValueError, match=key):
        LlavaComparatorConfig(**bad)


def test_config_round_trip_and_unknown_key():
    cfg = LlavaComparatorConfig(lora_r=4, labels=["First", "Second", "Same"])
    assert LlavaComparatorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="lora_rank"):
        LlavaComparatorConfig.from_dict({"lora_rank": 4})


@pytest.mark.slow  # two processes under torch.distributed.run
def test_quantised_model_goes_to_this_processes_gpu(tmp_path):
    """QLoRA under N processes: each process loads its 4-bit copy whole onto its own device
    ({"": local_process_index}), not spread over all GPUs. Checked with 2 CPU processes (gloo)."""
    import os
    import subprocess
    import sys

    from comparators.llava_loading import quantised_device_map

    assert quantised_device_map(3) == {"": 3}
    with pytest.raises(ValueError, match="local_process_index"):
        quantised_device_map(-1)
    script = tmp_path / "where.py"
    # the accelerator first, as in the pipeline (it reads ACCELERATE_USE_CPU: gloo on CPU)
    # each process writes its own file: two processes printing to one pipe can interleave their lines
    script.write_text("from pathlib import Path\n"
                      "from accelerate import Accelerator\n"
                      "from comparators.llava_loading import quantised_device_map\n"
                      "state = Accelerator()\n"
                      "Path(f'map{state.process_index}.txt').write_text("
                      "f\"{state.process_index} {state.num_processes} {quantised_device_map()['']}\")\n")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = sorted(path.read_text().split() for path in tmp_path.glob("map*.txt"))
    assert lines == [["0", "2", "0"], ["1", "2", "1"]], done.stdout
