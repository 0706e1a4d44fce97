"""LMOL comparator: LLaVA-1.5 with LoRA answers "First / Second / Similar" for two faces.

Architecture (paper eq. 1–5): each face goes through the frozen CLIP tower g and the
projector W (``embed``: H_v = W · g(x_v), eq. 1–2); both token sets are spliced into one
prompt (eq. 3–4) and the LoRA-adapted language model reads it; the logits of the last
prompt position restricted to the label tokens are the comparator's logits. A softmax
over those K logits *is* eq. 5's masked softmax (see :func:`masked_softmax`), so the
shared training loop applies CE / WCE / KL (eq. 6–9) to what ``forward`` returns.

Efficiency: ``embed`` runs once per image and ``compare`` only runs the language model
on ``inputs_embeds`` — identical (to float rounding) to the full LLaVA forward kept as
``forward_naive``. For a test image against a bank, :meth:`compare_one_to_many` also
shares the key/value cache of the prompt prefix that holds the test image, so only the
reference half of each sequence is recomputed.

Run ``python -m comparators.llava --benchmark --tiny`` for the cached / naive speed ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from comparators.base import Comparator
from comparators.llava_config import LlavaComparatorConfig, lora_target_regex
from comparators.llava_loading import (IMAGE_TOKEN_ID, CheckpointNotFoundError, check_image_token, load_pretrained,
                                       sentencepiece_tokenizer, tiny_llava_config, torch_dtype)
from comparators.llava_prompt import (answer_token_ids, build_prompt_ids, masked_softmax, num_image_tokens,
                                      render_prompt)
from comparators.registry import register_model

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COMPARATOR_CONFIG_FILE = "lmol_comparator.json"
DEFAULT_TOKENIZER = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "llama2-tokenizer"

__all__ = ["LlavaComparator", "LlavaComparatorConfig", "CheckpointNotFoundError", "ClipPreprocess", "build",
           "masked_softmax", "load_checkpoint_ensemble", "pairs_per_second"]


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


class LlavaComparator(Comparator):
    """LLaVA-1.5 + LoRA comparator; ``forward(a, b) -> logits[B, K]`` over the label tokens.

    Build with :meth:`from_config` (real checkpoint) or :meth:`tiny` (random toy model
    with the real tokenizer). Parameters: LoRA on the language model's projections, the
    projector when ``train_projector`` (saved with the adapter via peft's
    ``modules_to_save``, kept in float32); the CLIP tower, embeddings and LM head stay frozen.
    In the shared training loop: :meth:`parameter_groups` gives the optimizer its two learning
    rates, and per-epoch checkpoints hold only the trained tensors (:meth:`checkpoint_state_dict`).
    """

    splits = True

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

        if config.gradient_checkpointing:  # non-reentrant: works with frozen inputs, no enable_input_require_grads
            if hasattr(llava, "activation_checkpointing_enable"):  # transformers >= 5 name
                llava.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
            _keep_projector_copy_in_float32(self.llava.model.multi_modal_projector)
        # what a per-epoch checkpoint holds: fixed here, so toggling requires_grad later cannot change it
        self._checkpoint_keys = tuple(n for n, p in self.named_parameters() if p.requires_grad)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: LlavaComparatorConfig) -> "LlavaComparator":
        """Load ``config.checkpoint`` (hub id or local folder); clear error when absent."""
        llava, tokenizer = load_pretrained(config)
        return cls(llava, tokenizer, config)

    @classmethod
    def tiny(cls, tokenizer_path: str | Path | Any = DEFAULT_TOKENIZER, image_size: int = 32, patch_size: int = 16,
             config: Optional[LlavaComparatorConfig] = None, seed: int = 0, **sizes: int) -> "LlavaComparator":
        """A random toy LLaVA (LLaVA-1.5's structure and ids, tiny widths) with the real tokenizer.

        For tests and the synthetic demo only: the weights are random by construction.
        ``tokenizer_path`` is the folder of the Llama-2 ``tokenizer.model`` or a tokenizer
        already built by :func:`sentencepiece_tokenizer` (converting costs ~1 s).
        ``sizes`` go to :func:`tiny_llava_config` (vision_hidden, text_hidden, text_layers, ...).
        """
        from transformers import LlavaForConditionalGeneration

        config = config or LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype="float32")
        is_path = isinstance(tokenizer_path, (str, Path))
        tokenizer = sentencepiece_tokenizer(tokenizer_path) if is_path else tokenizer_path
        check_image_token(tokenizer, IMAGE_TOKEN_ID)
        lcfg = tiny_llava_config(image_size=image_size, patch_size=patch_size, **sizes)
        if config.attn_implementation:
            lcfg._attn_implementation = config.attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            llava = LlavaForConditionalGeneration(lcfg)
        return cls(llava.to(torch_dtype(config.torch_dtype)), tokenizer, config)

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

    def compare_one_to_many(self, emb_a: torch.Tensor, emb_refs: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """Logits [R, K] of one image a (``[P, H]`` or ``[1, P, H]``) against R references.

        The prompt up to the end of image a is the same for all R pairs, so its key/value
        cache is computed once and repeated; each reference then costs only the second
        half of the sequence (for LLaVA-1.5-7B 599 of the 1,180 prompt tokens). Inference only.
        """
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

    def compare_grid(self, emb_test: torch.Tensor, emb_refs: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """Logits [N, R, K] of every test image (first slot) against every reference (second slot).

        What a scorer needs for a test set against a bank, through :meth:`compare_one_to_many`;
        use it instead of one huge ``compare`` call, whose batch would hold N·R sequences of
        ~1,180 tokens for the real model.
        """
        return torch.stack([self.compare_one_to_many(e, emb_refs, batch=batch) for e in emb_test])

    def compare_probs(self, emb_a: torch.Tensor, emb_b: torch.Tensor, both_orders: bool = False) -> torch.Tensor:
        """Eq. 5 probabilities [B, K]; with ``both_orders`` the mean of p(a, b) and the label-swapped p(b, a).

        Querying both orders and swapping FIRST/SECOND of the reversed answer (the
        permutation M of eq. 8) cancels the model's position bias.
        """
        probs = torch.softmax(self.compare(emb_a, emb_b), dim=-1)
        if not both_orders:
            return probs
        rev = torch.softmax(self.compare(emb_b, emb_a), dim=-1)
        perm = [1, 0] + list(range(2, self.num_classes))
        return 0.5 * (probs + rev[:, perm])

    def compare_both_orders(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Position-bias-cancelled probabilities [B, K] (see :meth:`compare_probs`)."""
        return self.compare_probs(emb_a, emb_b, both_orders=True)

    # ------------------------------------------------------------------ training helpers
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

    def parameter_groups(self, lora_lr: Optional[float] = None,
                         projector_lr: Optional[float] = None) -> list[dict[str, Any]]:
        """Optimizer groups: LoRA at ``lora_lr``, projector at ``projector_lr``.

        Defaults come from the config (``lora_lr`` 2e-4, ``projector_lr`` 2e-5: LLaVA-1.5's
        LoRA recipe). The shared loop calls this with no arguments, so these rates replace
        ``optim.lr``; weight decay and the schedule still come from the experiment config.
        """
        lora_lr = self.config.lora_lr if lora_lr is None else lora_lr
        projector_lr = self.config.projector_lr if projector_lr is None else projector_lr
        lora = [p for n, p in self.named_parameters() if p.requires_grad and "multi_modal_projector" not in n]
        proj = [p for n, p in self.named_parameters() if p.requires_grad and "multi_modal_projector" in n]
        groups = [{"params": lora, "lr": lora_lr, "name": "lora"}]
        if proj:
            groups.append({"params": proj, "lr": projector_lr, "name": "projector"})
        return groups

    def head_parameters(self) -> list[nn.Parameter]:
        """Refuses ``train.frozen_backbone``: LoRA lives inside the language model, so a cache of
        image embeddings would save only the CLIP pass while holding 576 x 4096 floats per image."""
        raise ValueError("train.frozen_backbone: not supported by the llava comparator (its LoRA adapters are in "
                         "the language model, which runs per pair); set train.frozen_backbone: false")

    # ------------------------------------------------------------------ per-epoch checkpoints
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors only (LoRA A/B, the projector copy when trained), by parameter name.

        What the shared loop writes per epoch (``training.checkpoint_state``): for the 7B model
        ~80 MB instead of 14 GB, so five epochs and a checkpoint ensemble stay cheap. Tensors
        are detached views; the loop copies them to the CPU and saves them with safetensors.
        """
        params = dict(self.named_parameters())
        return {name: params[name].detach() for name in self._checkpoint_keys}

    def load_checkpoint_state_dict(self, state: dict[str, torch.Tensor]) -> None:
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

    # ------------------------------------------------------------------ adapters
    def save_adapter(self, directory: str | Path) -> Path:
        """Write the LoRA (+ projector) weights with peft, and this comparator's config beside them."""
        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        meta = {"config": self.config.to_dict(), "prompt": self.prompt, "label_ids": self.label_ids}
        (directory / COMPARATOR_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    def _check_saved_config(self, directory: Path) -> None:
        meta_file = directory / COMPARATOR_CONFIG_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"adapter dir: {directory} has no {COMPARATOR_CONFIG_FILE}; not saved by save_adapter")
        meta = json.loads(meta_file.read_text())
        saved = LlavaComparatorConfig.from_dict(meta["config"])
        for key in ("lora_r", "lora_target_modules", "train_projector", "two_class"):
            if getattr(saved, key) != getattr(self.config, key):
                raise ValueError(f"adapter dir {directory}: {key} was {getattr(saved, key)!r}, "
                                 f"this comparator has {getattr(self.config, key)!r}")
        if meta["prompt"] != self.prompt or meta["label_ids"] != self.label_ids:
            raise ValueError(f"adapter dir {directory}: trained with prompt {meta['prompt']!r} / label ids "
                             f"{meta['label_ids']}, this comparator uses {self.prompt!r} / {self.label_ids}")

    def load_adapter(self, directory: str | Path, adapter_name: str = "default") -> None:
        """Load adapter weights saved by :meth:`save_adapter`.

        ``"default"`` overwrites the active adapter's weights in place; any other name
        adds a second adapter (for checkpoint ensembles, switch with :meth:`using_adapter`).
        """
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        directory = Path(directory)
        self._check_saved_config(directory)
        if adapter_name in self.model.peft_config:
            weights = load_peft_weights(str(directory), device=str(self.device))
            result = set_peft_model_state_dict(self.model, weights, adapter_name=adapter_name)
            missing = [k for k in result.missing_keys if "lora_" in k or "modules_to_save" in k]
            if result.unexpected_keys or missing:
                raise ValueError(f"adapter dir {directory}: unexpected weights {result.unexpected_keys[:5]}, "
                                 f"missing adapter weights {missing[:5]}")
        else:
            self.model.load_adapter(str(directory), adapter_name=adapter_name)

    @contextlib.contextmanager
    def using_adapter(self, adapter_name: str) -> Iterator[None]:
        """Temporarily make ``adapter_name`` the active adapter (LoRA and projector copy)."""
        previous = self.model.active_adapter
        self.model.set_adapter(adapter_name)
        try:
            yield
        finally:
            self.model.set_adapter(previous)

    @torch.no_grad()
    def ensemble_probs(self, images_a: torch.Tensor, images_b: torch.Tensor, adapter_names: Sequence[str],
                       both_orders: bool = False) -> torch.Tensor:
        """Checkpoint ensemble: mean over adapters of eq. 5 probabilities [B, K].

        Each adapter re-embeds (its projector copy may differ). A scorer over a bank does
        the same at scale: for each adapter, embed bank and test once, build probs[N, R, K],
        then average the K adapters' probability tensors before Bradley–Terry.
        """
        total = None
        for name in adapter_names:
            with self.using_adapter(name):
                probs = self.compare_probs(self.embed(images_a), self.embed(images_b), both_orders=both_orders)
            total = probs if total is None else total + probs
        if total is None:
            raise ValueError("adapter_names: empty")
        return total / len(adapter_names)


def _keep_projector_copy_in_float32(wrapper: nn.Module) -> None:
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


@register_model("llava", kind="comparator", options=LlavaComparatorConfig)
def build(tiny: bool = False, tokenizer_path: str | Path | Any = DEFAULT_TOKENIZER, image_size: int = 32,
          patch_size: int = 16, **config: Any) -> LlavaComparator:
    """Registry factory: ``comparators.create("llava", checkpoint=..., lora_r=...)``.

    ``config`` holds :class:`LlavaComparatorConfig` fields (unknown keys are errors);
    ``tiny=True`` builds the random toy model (float32 unless ``torch_dtype`` is given)
    with the real tokenizer, for the synthetic demo.
    """
    if tiny:
        config = {"checkpoint": "tiny-random", "torch_dtype": "float32", **config}
        return LlavaComparator.tiny(tokenizer_path, image_size=image_size, patch_size=patch_size,
                                    config=LlavaComparatorConfig.from_dict(config))
    return LlavaComparator.from_config(LlavaComparatorConfig.from_dict(config))


def load_checkpoint_ensemble(base: LlavaComparatorConfig | LlavaComparator,
                             adapter_dirs: Sequence[str | Path]) -> tuple[LlavaComparator, list[str]]:
    """One base model, the adapters of the last K checkpoints loaded under names ``ckpt0..``.

    Pass a config to load the base checkpoint, or an existing comparator. Use the names with
    :meth:`LlavaComparator.ensemble_probs` or :meth:`LlavaComparator.using_adapter`.
    """
    comparator = base if isinstance(base, LlavaComparator) else LlavaComparator.from_config(base)
    names = []
    for i, d in enumerate(adapter_dirs):
        name = f"ckpt{i}"
        comparator.load_adapter(d, adapter_name=name)
        names.append(name)
    if not names:
        raise ValueError("adapter_dirs: empty")
    return comparator, names


# ---------------------------------------------------------------------- benchmark
def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.inference_mode()
def pairs_per_second(model: LlavaComparator, n_images: int = 8, n_pairs: int = 64, batch: int = 8,
                     seed: int = 0, repeats: int = 3) -> dict[str, float]:
    """Throughput of the three inference paths on the same random pairs and hardware.

    ``cached``: embed each image once, then ``compare`` per batch of pairs;
    ``naive``: full LLaVA forward per pair (vision tower twice per pair);
    ``shared_prefix``: cached, plus :meth:`compare_one_to_many` grouped by first image.
    Ratios are naive time / path time (> 1 means faster than naive); each time is the best
    of ``repeats`` runs, since shared machines add noise.
    """
    if n_images < 2 or n_pairs < 1 or batch < 1:
        raise ValueError("pairs_per_second: need n_images >= 2, n_pairs >= 1, batch >= 1")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, 3, model.image_size, model.image_size, generator=gen).to(model.device)
    a = torch.randint(0, n_images, (n_pairs,), generator=gen)
    b = (a + torch.randint(1, n_images, (n_pairs,), generator=gen)) % n_images
    order = torch.argsort(a, stable=True)
    a, b = a[order], b[order]

    def embed_all() -> torch.Tensor:
        return torch.cat([model.embed(images[i: i + batch]) for i in range(0, n_images, batch)])

    def cached() -> None:
        emb = embed_all()
        for i in range(0, n_pairs, batch):
            model.compare(emb[a[i: i + batch]], emb[b[i: i + batch]])

    def naive() -> None:
        for i in range(0, n_pairs, batch):
            model.forward_naive(images[a[i: i + batch]], images[b[i: i + batch]])

    def shared() -> None:
        emb = embed_all()
        for first in a.unique().tolist():
            model.compare_one_to_many(emb[first], emb[b[a == first]], batch=batch)

    naive()  # warm-up (allocator, kernels)
    t_naive, t_cached, t_shared = (min(_timed(fn) for _ in range(max(1, repeats))) for fn in (naive, cached, shared))
    return {"naive_pairs_per_s": n_pairs / t_naive, "cached_pairs_per_s": n_pairs / t_cached,
            "shared_prefix_pairs_per_s": n_pairs / t_shared, "cached_vs_naive": t_naive / t_cached,
            "shared_prefix_vs_naive": t_naive / t_shared}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="LMOL LLaVA comparator utilities")
    parser.add_argument("--benchmark", action="store_true", help="cached vs naive pairs per second")
    parser.add_argument("--tiny", action="store_true", help="random tiny model + the real tokenizer")
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="folder with tokenizer.model (--tiny)")
    parser.add_argument("--checkpoint", default=None, help="real checkpoint (without --tiny)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--vision-hidden", type=int, default=32)
    parser.add_argument("--vision-layers", type=int, default=2)
    parser.add_argument("--text-hidden", type=int, default=64)
    parser.add_argument("--text-layers", type=int, default=2)
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    args = parser.parse_args(argv)
    if not args.benchmark:
        parser.error("nothing to do: pass --benchmark")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        model = LlavaComparator.tiny(args.tokenizer, image_size=args.image_size, patch_size=args.patch_size,
                                     vision_hidden=args.vision_hidden, vision_layers=args.vision_layers,
                                     text_hidden=args.text_hidden, text_layers=args.text_layers,
                                     intermediate=2 * args.text_hidden)
    else:
        cfg = LlavaComparatorConfig() if args.checkpoint is None else LlavaComparatorConfig(checkpoint=args.checkpoint)
        model = LlavaComparator.from_config(replace(cfg, torch_dtype="bfloat16" if torch.cuda.is_available() else "float32"))
        if torch.cuda.is_available():
            model.cuda()
    res = pairs_per_second(model, args.n_images, args.n_pairs, args.batch)
    print(f"device={model.device} image_tokens={model.layout.n_image_tokens} prompt_len={model.layout.length}")
    for key, value in res.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
