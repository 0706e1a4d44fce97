"""LMOL comparator: LLaVA-1.5 with LoRA answers "First / Second / Similar" for two faces.

Architecture (paper eq. 1–5): each face goes through the frozen CLIP tower g and the
projector W (``embed``: H_v = W · g(x_v), eq. 1–2); both token sets are spliced into one
prompt (eq. 3–4) and the LoRA-adapted language model reads it; the logits of the last
prompt position restricted to the label tokens are the comparator's logits. A softmax
over those K logits *is* eq. 5's masked softmax (see :func:`masked_softmax`), so the
shared training loop applies CE / WCE / KL (eq. 6–9) to what ``forward`` returns.

Efficiency: ``embed`` runs once per image and ``compare`` only runs the language model
on ``inputs_embeds`` — identical (to float rounding) to the full LLaVA forward kept as
``forward_naive``. For a test image against a bank, :meth:`compare_grid` (through
:meth:`compare_one_to_many`) also shares the key/value cache of the prompt prefix that holds
the test image, so only the reference half of each sequence is recomputed.

``python benchmarks/llava.py`` measures the three paths' pairs/s at the real token layout.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from comparators.base import Comparator
from comparators.llava_config import LlavaComparatorConfig, lora_target_regex
from comparators.llava_loading import (CheckpointNotFoundError, cast_parameters, check_image_token, load_pretrained,
                                       load_tokenizer, require_tokenizer, tiny_llava_config, torch_dtype)
from comparators.llava_modules import keep_projector_copy_in_float32, set_checkpointing
from comparators.llava_prompt import (answer_token_ids, build_prompt_ids, masked_softmax, num_image_tokens,
                                      render_prompt)
from comparators.registry import register_model
from orderlearn.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

__all__ = ["LlavaComparator", "LlavaComparatorConfig", "CheckpointNotFoundError", "ClipPreprocess", "build",
           "masked_softmax"]


class ClipPreprocess:
    """PIL -> [3, S, S]: RGB, shortest side to S (bicubic), center crop S, CLIP mean/std.

    Wraps transformers' PIL-backed ``CLIPImageProcessorPil`` rather than a torchvision
    Compose: torchvision's CenterCrop rounds an odd margin up where CLIP's floors it, a
    one-pixel shift on portrait images. A class, not a lambda, so DataLoader workers can
    pickle it.
    """

    def __init__(self, image_size: int) -> None:
        from transformers import CLIPImageProcessorPil

        self.image_size = image_size
        self.processor = CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3, do_convert_rgb=True)

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        """Everything that changes the output tensor: the feature cache keys on this string."""
        return (f"ClipPreprocess(shortest_edge={self.image_size}, resample=bicubic, center_crop={self.image_size}, "
                f"mean={list(CLIP_MEAN)}, std={list(CLIP_STD)})")


class LlavaComparator(Comparator):
    """LLaVA-1.5 + LoRA comparator; ``forward(a, b) -> logits[B, K]`` over the label tokens.

    Build with :meth:`from_config` (real checkpoint), :meth:`from_model` (a model already built,
    e.g. LLaVA-1.5-7B's architecture with random weights) or :meth:`tiny` (random toy model with
    the real tokenizer); all three end in :meth:`from_model`. Parameters: LoRA on the language model's projections, the
    projector when ``train_projector`` (saved with the adapter via peft's
    ``modules_to_save``, kept in float32); the CLIP tower, embeddings and LM head stay frozen.
    In the shared training loop: :meth:`parameter_groups` gives the optimizer its two learning
    rates, and per-epoch checkpoints hold only the trained tensors (:meth:`checkpoint_state_dict`).
    """

    splits = True
    pair_batch_size = 32  # sequences per language-model call: ~1,180 tokens each for LLaVA-1.5-7B

    def __init__(self, llava: Any, tokenizer: Any, config: LlavaComparatorConfig) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        self.config = config
        self.num_classes = len(config.active_labels)
        self.tokenizer = tokenizer
        mcfg = llava.config
        vcfg = mcfg.vision_config
        self.image_size = int(vcfg.image_size)
        self.vision_feature_layer = mcfg.vision_feature_layer
        self.select_strategy = mcfg.vision_feature_select_strategy
        self.prompt = render_prompt(config.prompt_template, config.question, config.active_labels)
        n_tokens = num_image_tokens(self.image_size, int(vcfg.patch_size), self.select_strategy)
        self.layout = build_prompt_ids(tokenizer, self.prompt, n_tokens, int(mcfg.image_token_id))
        self.label_ids = answer_token_ids(tokenizer, self.prompt, config.active_labels, config.answer_separator)
        device = llava.get_input_embeddings().weight.device  # a quantised model is already placed
        self.register_buffer("prompt_ids", self.layout.input_ids.to(device), persistent=False)
        self.register_buffer("label_index", torch.tensor(self.label_ids, dtype=torch.long, device=device),
                             persistent=False)

        if config.gradient_checkpointing:
            set_checkpointing(llava, True)
        if getattr(llava, "is_quantized", False):
            llava = prepare_model_for_kbit_training(llava, use_gradient_checkpointing=config.gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=lora_target_regex(config.lora_target_modules), bias="none",
                          modules_to_save=["multi_modal_projector"] if config.train_projector else None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = get_peft_model(llava, lora)  # freezes every base weight, adds LoRA A/B
        if config.train_projector:
            keep_projector_copy_in_float32(self.llava.model.multi_modal_projector)
        # what a per-epoch checkpoint holds: fixed here, so toggling requires_grad later cannot change it
        self._checkpoint_keys = tuple(n for n, p in self.named_parameters() if p.requires_grad)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: LlavaComparatorConfig, tokenizer: Any = None) -> "LlavaComparator":
        """Load ``config.checkpoint`` (hub id or local folder) and ``config.tokenizer`` (or the
        ``tokenizer`` passed in); clear error when either is absent."""
        llava, tokenizer = load_pretrained(config, tokenizer)
        return cls.from_model(llava, tokenizer, config)

    @classmethod
    def from_model(cls, llava: Any, tokenizer: Any, config: Optional[LlavaComparatorConfig] = None) -> "LlavaComparator":
        """Wrap a ``LlavaForConditionalGeneration`` that is already built, as a loaded checkpoint is wrapped.

        The one seam every constructor goes through, so a model built another way (LLaVA-1.5-7B's
        architecture with random weights, :func:`~comparators.llava_loading.random_llava`) meets
        exactly the code a real checkpoint meets: LoRA, the float32 projector copy, the prompt and
        label ids. ``tokenizer``: a tokenizer, or a ``model.tokenizer`` source (hub id or folder).
        Its ``<image>`` id must be the model's ``image_token_id`` (ValueError otherwise).
        """
        if isinstance(tokenizer, (str, Path)):
            source = str(tokenizer)
            tokenizer = load_tokenizer(require_tokenizer(source))
            config = config or LlavaComparatorConfig(checkpoint="in-memory", tokenizer=source)
        elif tokenizer is None:
            require_tokenizer(None)
        config = config or LlavaComparatorConfig(checkpoint="in-memory")
        check_image_token(tokenizer, int(llava.config.image_token_id))
        return cls(llava, tokenizer, config)

    @classmethod
    def tiny(cls, tokenizer: Any, image_size: int = 32, patch_size: int = 16,
             config: Optional[LlavaComparatorConfig] = None, seed: int = 0, **sizes: int) -> "LlavaComparator":
        """A random toy LLaVA (LLaVA-1.5's structure and ids, tiny widths) with the real tokenizer.

        For tests and the synthetic demo only: the weights are random by construction.
        ``tokenizer``: a tokenizer (e.g. from :func:`~comparators.llava_loading.sentencepiece_tokenizer`;
        converting costs ~1 s) or a ``model.tokenizer`` source: the folder of the Llama-2
        ``tokenizer.model``, or a hub id. ``sizes`` go to :func:`tiny_llava_config`
        (vision_hidden, text_hidden, text_layers, ...).
        """
        from transformers import LlavaForConditionalGeneration

        if tokenizer is None:
            require_tokenizer(None)
        source = str(tokenizer) if isinstance(tokenizer, (str, Path)) else None
        config = config or LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="float32", tokenizer=source)
        lcfg = tiny_llava_config(image_size=image_size, patch_size=patch_size, **sizes)
        if config.attn_implementation:
            lcfg._attn_implementation = config.attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            llava = LlavaForConditionalGeneration(lcfg)
        return cls.from_model(cast_parameters(llava, torch_dtype(config.torch_dtype)), tokenizer, config)

    # ------------------------------------------------------------------ sub-modules
    @property
    def llava(self) -> nn.Module:
        """The ``LlavaForConditionalGeneration`` inside peft (LoRA layers are injected in place)."""
        return self.model.get_base_model()

    @property
    def device(self) -> torch.device:
        return self.prompt_ids.device

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """PIL -> [3, S, S] exactly as the -hf checkpoints' ``CLIPImageProcessor`` (see :class:`ClipPreprocess`)."""
        return ClipPreprocess(self.image_size)

    # ------------------------------------------------------------------ the split forward
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, P, hidden]: H_v = W · g(x_v) (eq. 1–2), CLS dropped by "default".

        The CLIP tower g is frozen, so it runs without autograd; the projector W keeps its
        graph when it is trained.
        """
        vt = self.llava.model.vision_tower
        px = images.to(device=self.device, dtype=next(vt.parameters()).dtype)
        with torch.no_grad():
            hidden = vt(px, output_hidden_states=True).hidden_states
        layers = self.vision_feature_layer
        feats = [hidden[i] for i in ([layers] if isinstance(layers, int) else layers)]
        if self.select_strategy == "default":
            feats = [f[:, 1:] for f in feats]
        return self.llava.model.multi_modal_projector(torch.cat(feats, dim=-1))

    def _text_embeds(self) -> torch.Tensor:
        return self.llava.get_input_embeddings()(self.prompt_ids)

    def _check_emb(self, emb: torch.Tensor, name: str) -> None:
        n = self.layout.n_image_tokens
        if emb.dim() != 3 or emb.shape[1] != n:
            raise ValueError(f"{name}: expected [B, {n}, hidden] image embeddings from embed(), got {tuple(emb.shape)}")

    def inputs_embeds(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden]: the prompt's text embeddings with H_v1, H_v2 at the image positions (eq. 3)."""
        self._check_emb(emb_a, "emb_a")
        self._check_emb(emb_b, "emb_b")
        if emb_a.shape[0] != emb_b.shape[0]:
            raise ValueError(f"emb_a/emb_b: batch sizes differ ({emb_a.shape[0]} vs {emb_b.shape[0]})")
        text = self._text_embeds()
        lay, n, bsz = self.layout, self.layout.n_image_tokens, emb_a.shape[0]
        pieces = [text[: lay.a_start], emb_a, text[lay.a_start + n: lay.b_start], emb_b, text[lay.b_start + n:]]
        return torch.cat([p if p.dim() == 3 else p.unsqueeze(0).expand(bsz, -1, -1) for p in
                          (x.to(text.dtype) for x in pieces)], dim=1)

    def _label_logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """Logits t_c of the label tokens at the answer position (the set C of eq. 5), float32."""
        return self.llava.lm_head(last_hidden)[..., self.label_index].float()

    def compare(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Label logits [B, K] for pairs of embedded images; runs only the language model."""
        out = self.llava.model.language_model(inputs_embeds=self.inputs_embeds(emb_a, emb_b), use_cache=False)
        return self._label_logits(out.last_hidden_state[:, -1])

    def forward_naive(self, pixel_a: torch.Tensor, pixel_b: torch.Tensor) -> torch.Tensor:
        """Reference path: the full ``LlavaForConditionalGeneration`` forward, two images per sample.

        ``pixel_values`` is ordered a0, b0, a1, b1, ... because LLaVA fills the image tokens
        of the batch in reading order. Same logits as ``compare(embed(a), embed(b))``.
        """
        bsz = pixel_a.shape[0]
        vt_dtype = next(self.llava.model.vision_tower.parameters()).dtype
        px = torch.stack([pixel_a, pixel_b], dim=1).flatten(0, 1).to(self.device, vt_dtype)
        ids = self.prompt_ids.unsqueeze(0).expand(bsz, -1)
        out = self.llava(input_ids=ids, pixel_values=px, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, self.label_index].float()

    def compare_one_to_many(self, emb_a: torch.Tensor, emb_refs: torch.Tensor,
                            batch: Optional[int] = None) -> torch.Tensor:
        """Logits [R, K] of one image a (``[P, H]`` or ``[1, P, H]``) against R references.

        The prompt up to the end of image a is the same for all R pairs, so its key/value
        cache is computed once and repeated; each reference then costs only the second
        half of the sequence (for LLaVA-1.5-7B 599 of the 1,180 prompt tokens). Inference only.
        ``batch``: references per language-model call (default :attr:`pair_batch_size`).
        """
        batch = self.pair_batch_size if batch is None else batch
        if batch < 1:
            raise ValueError(f"batch: must be >= 1, got {batch}")
        emb_a = emb_a.unsqueeze(0) if emb_a.dim() == 2 else emb_a
        self._check_emb(emb_a, "emb_a")
        self._check_emb(emb_refs, "emb_refs")
        if emb_a.shape[0] != 1:
            raise ValueError(f"emb_a: expected one image, got a batch of {emb_a.shape[0]}")
        from transformers import DynamicCache

        lm = self.llava.model.language_model
        cut = self.layout.a_start + self.layout.n_image_tokens
        full = self.inputs_embeds(emb_a, emb_refs[:1])
        prefix = [(k, v) for k, v, *_ in lm(inputs_embeds=full[:, :cut], use_cache=True).past_key_values]
        out = []
        for start in range(0, emb_refs.shape[0], batch):
            refs = emb_refs[start: start + batch]
            n = refs.shape[0]  # a fresh cache per chunk: the forward appends to it
            cache = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix])
            rest = self.inputs_embeds(emb_a.expand(refs.shape[0], -1, -1), refs)[:, cut:]
            hidden = lm(inputs_embeds=rest, past_key_values=cache, use_cache=True).last_hidden_state
            out.append(self._label_logits(hidden[:, -1]))
        return torch.cat(out, dim=0)

    def compare_grid(self, emb_test: torch.Tensor, emb_refs: torch.Tensor,
                     batch: Optional[int] = None) -> torch.Tensor:
        """Logits [n, R, K] of every test image (first slot) against every reference (second slot).

        The base contract's hook, overridden to share each test image's prompt prefix across its
        references (:meth:`compare_one_to_many`); ``batch`` references per language-model call
        (default :attr:`pair_batch_size`) instead of one ``compare`` call whose batch would hold
        n·R sequences of ~1,180 tokens for the real model.
        """
        self._check_emb(emb_test, "emb_test")
        return torch.stack([self.compare_one_to_many(e, emb_refs, batch=batch) for e in emb_test])

    # ------------------------------------------------------------------ training helpers
    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each decoder layer's activations in the backward pass (on) or keep them (off).

        ``config.gradient_checkpointing`` sets it at construction; this switches it on a built
        comparator (a benchmark measures both on one model) and records the choice in the config.
        Non-reentrant checkpointing: it works with frozen inputs and LoRA dropout.
        """
        set_checkpointing(self.llava, enabled)
        if self.config.gradient_checkpointing != enabled:
            self.config = dataclasses.replace(self.config, gradient_checkpointing=enabled)

    def trainable_parameters(self) -> dict[str, int]:
        """Counts of trainable parameters by kind (lora / projector / other) plus totals."""
        counts = {"lora": 0, "projector": 0, "other": 0}
        total = 0
        for name, p in self.named_parameters():
            total += p.numel()
            if p.requires_grad:
                kind = "lora" if "lora_" in name else "projector" if "multi_modal_projector" in name else "other"
                counts[kind] += p.numel()
        return {**counts, "trainable": sum(counts.values()), "total": total}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: LoRA at ``config.lora_lr``, the projector at ``config.projector_lr``.

        Defaults 2e-4 / 2e-5 (LLaVA-1.5's LoRA recipe). These rates replace ``optim.lr``;
        weight decay and the schedule still come from the experiment config.
        """
        lora = [p for n, p in self.named_parameters() if p.requires_grad and "multi_modal_projector" not in n]
        proj = [p for n, p in self.named_parameters() if p.requires_grad and "multi_modal_projector" in n]
        groups = [{"params": lora, "lr": self.config.lora_lr, "name": "lora"}]
        if proj:
            groups.append({"params": proj, "lr": self.config.projector_lr, "name": "projector"})
        return groups

    def feature_modules(self) -> list[nn.Module]:
        """The CLIP tower and the projector: together they determine :meth:`embed` (H_v = W · g(x))."""
        return [self.llava.model.vision_tower, self.llava.model.multi_modal_projector]

    def head_parameters(self) -> list[nn.Parameter]:
        """Refuses ``train.frozen_backbone``: LoRA lives inside the language model, so a cache of
        image embeddings would save only the CLIP pass while holding 576 x 4096 floats per image."""
        raise ConfigError("train.frozen_backbone: not supported by the llava comparator (its LoRA adapters are in "
                          "the language model, which runs per pair); set train.frozen_backbone: false")

    # ------------------------------------------------------------------ per-epoch checkpoints
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors only (LoRA A/B, the projector copy when trained), by parameter name.

        What the shared loop writes per epoch (through ``CheckpointStore.save_epoch``): for the 7B model
        ~80 MB instead of 14 GB, so five epochs and a checkpoint ensemble stay cheap. Tensors
        are detached views; the loop copies them to the CPU and saves them with safetensors.
        """
        params = dict(self.named_parameters())
        return {name: params[name].detach() for name in self._checkpoint_keys}

    def load_checkpoint_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`checkpoint_state_dict` exactly (strict: same names and shapes).

        The base weights are not in the file: they must be the ones this comparator was
        built from (same ``checkpoint``, or for :meth:`tiny` the same seed and sizes).
        Raises ValueError naming missing / unexpected / mis-shaped tensors.
        """
        params = dict(self.named_parameters())
        expected = set(self._checkpoint_keys)
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"checkpoint: missing {len(missing)} tensor(s) {missing[:3]}, unexpected "
                             f"{len(unexpected)} {unexpected[:3]} (saved with another lora_r / lora_target_modules "
                             f"/ train_projector?)")
        bad = [f"{n}: {tuple(state[n].shape)} vs {tuple(params[n].shape)}" for n in self._checkpoint_keys
               if state[n].shape != params[n].shape]
        if bad:
            raise ValueError(f"checkpoint: shape mismatch for {len(bad)} tensor(s), e.g. {bad[:3]}")
        with torch.no_grad():
            for name in self._checkpoint_keys:
                params[name].copy_(state[name])


@register_model("llava", kind="comparator", options=LlavaComparatorConfig,
                paper="LMOL: LLaVA-1.5 with LoRA compares two faces (First / Second / Similar)",
                backbone="LLaVA-1.5 (model.checkpoint)")
def build(tiny: bool = False, image_size: int = 32, patch_size: int = 16, **config: Any) -> LlavaComparator:
    """Registry factory: ``comparators.create("llava", checkpoint=..., tokenizer=..., lora_r=...)``.

    ``config`` holds :class:`LlavaComparatorConfig` fields (unknown keys are errors);
    ``tokenizer`` is required (``model.tokenizer``: a hub id or a folder; code may pass a
    tokenizer object instead). ``tiny=True`` builds the random toy model (float32 unless
    ``torch_dtype`` is given) with the real tokenizer, for the synthetic demo.

    ``tiny``: build the random toy LLaVA (CPU tests and the synthetic demo) instead of loading ``checkpoint``
    ``image_size``: tiny only: the toy vision tower's input side in px
    ``patch_size``: tiny only: the toy vision tower's patch side in px
    """
    tokenizer = config.pop("tokenizer", None)
    if isinstance(tokenizer, (str, Path)):  # a config value: kept in the config the run saves
        config["tokenizer"] = tokenizer = str(tokenizer)
    if tiny:
        config = {"checkpoint": "tiny-random", "torch_dtype": "float32", **config}
        return LlavaComparator.tiny(tokenizer, image_size=image_size, patch_size=patch_size,
                                    config=LlavaComparatorConfig.from_dict(config))
    return LlavaComparator.from_config(LlavaComparatorConfig.from_dict(config), tokenizer)
