"""Where an LMOL comparator's LLaVA weights and tokenizer come from.

Two sources, never mixed silently: a real checkpoint (hub id or local folder), or a tiny
random LLaVA built from configs with the real Llama-2 tokenizer (tests, synthetic demo).
When the real checkpoint cannot be found the error says how to point the config at a
local copy — a silent random initialisation would train a useless comparator.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from comparators.llava_config import LlavaComparatorConfig
from comparators.llava_prompt import IMAGE_TOKEN
from orderlearn.errors import ConfigError

IMAGE_TOKEN_ID = 32000  # llava-hf: <image>
PAD_TOKEN = "<pad>"
PAD_TOKEN_ID = 32001  # llava-hf: <pad>
LLAVA_VOCAB = 32064  # the -hf embedding matrix is padded to 32,064 rows


class CheckpointNotFoundError(OSError):
    """The configured LLaVA checkpoint is neither a local folder nor reachable on the hub."""


def torch_dtype(name: str) -> torch.dtype:
    """"bfloat16" -> torch.bfloat16 (names validated by the config)."""
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def quantization_config(config: LlavaComparatorConfig) -> Optional[Any]:
    """A ``BitsAndBytesConfig`` for QLoRA (4-bit NF4, double quantisation) or 8-bit; None if off.

    The vision tower, projector and LM head stay unquantised: the projector may be trained
    and the head's rows are read as label logits. Raises ValueError (naming the option)
    when bitsandbytes or CUDA is missing, before any download starts.
    """
    if not (config.load_in_4bit or config.load_in_8bit):
        return None
    option = "load_in_4bit" if config.load_in_4bit else "load_in_8bit"
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{option}: needs the bitsandbytes package (`pip install bitsandbytes`); "
                         f"or set {option}: false to load in {config.torch_dtype}")
    if not torch.cuda.is_available():
        raise ValueError(f"{option}: bitsandbytes quantisation needs a CUDA GPU and none is visible; "
                         f"set {option}: false to load in {config.torch_dtype}")
    from transformers import BitsAndBytesConfig

    skip = ["vision_tower", "multi_modal_projector", "lm_head"]
    if config.load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch_dtype(config.torch_dtype),
                                  llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def quantised_device_map(local_process_index: Optional[int] = None) -> dict[str, int]:
    """``device_map`` of a quantised model: the whole model on this process's own GPU.

    bitsandbytes places the weights while loading, so the device cannot be changed afterwards
    (``.to()`` on a 4-bit model is refused). Under ``accelerate launch`` with N processes each
    process loads its copy onto GPU ``local_process_index`` (QLoRA + DDP, one device per
    process); ``device_map="auto"`` would instead spread one copy over every visible GPU in
    every process. ``local_process_index`` defaults to accelerate's (0 in a single process).
    """
    if local_process_index is None:
        from accelerate import PartialState

        local_process_index = PartialState().local_process_index
    if local_process_index < 0:
        raise ValueError(f"local_process_index: must be >= 0, got {local_process_index}")
    return {"": int(local_process_index)}


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them at import)."""
    from huggingface_hub import constants

    env = any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def _looks_like_path(checkpoint: str) -> bool:
    return checkpoint.startswith(("/", ".", "~")) or checkpoint.count("/") > 1 or os.sep != "/" and os.sep in checkpoint


def missing_checkpoint_message(checkpoint: str, reason: str) -> str:
    """The instructions a user needs when the weights are not here."""
    return (
        f"model.checkpoint: cannot load LLaVA checkpoint {checkpoint!r} ({reason}). "
        f"Point the config at a local copy, e.g. `model.checkpoint: /path/to/llava-1.5-7b-hf` "
        f"(a folder with config.json, the *.safetensors weights and the tokenizer files). "
        f"To get one, on a machine with hub access run "
        f"`huggingface-cli download llava-hf/llava-1.5-7b-hf --local-dir /path/to/llava-1.5-7b-hf` "
        f"and copy the folder here, or set HF_HOME to a cache that already holds it. "
        f"No random weights are used in its place (LlavaComparator.tiny() builds a tiny random model on purpose).")


def load_pretrained(config: LlavaComparatorConfig, tokenizer: Any = None) -> tuple[Any, Any]:
    """Load ``LlavaForConditionalGeneration`` from ``config.checkpoint`` and the tokenizer ``config.tokenizer``
    (unless a ``tokenizer`` object is passed in).

    The tokenizer comes first: a config without ``model.tokenizer`` fails before 14 GB of weights
    are read. Local folders are checked first; a hub id is looked up only in the local cache when
    HF_HUB_OFFLINE is set. Raises :class:`CheckpointNotFoundError` with the fix when neither
    works; ValueError when the tokenizer's ``<image>`` id disagrees with the model.
    """
    from transformers import LlavaForConditionalGeneration

    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(require_tokenizer(config.tokenizer if tokenizer is None else str(tokenizer)))
    quant = quantization_config(config)
    ckpt = config.checkpoint
    local = Path(ckpt).expanduser()
    if local.exists():
        source, local_only = str(local), True
    elif _looks_like_path(ckpt):
        raise CheckpointNotFoundError(missing_checkpoint_message(ckpt, "no such local folder"))
    else:
        source, local_only = ckpt, _hub_offline()
    kwargs: dict[str, Any] = {"dtype": torch_dtype(config.torch_dtype), "local_files_only": local_only}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map=quantised_device_map())
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        model = LlavaForConditionalGeneration.from_pretrained(source, **kwargs)
    except OSError as err:  # huggingface_hub's not-found / offline errors are OSErrors
        from_hub_cache_only = local_only and not local.exists()
        reason = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if from_hub_cache_only
                  else str(err).strip().splitlines()[0])
        raise CheckpointNotFoundError(missing_checkpoint_message(ckpt, reason)) from err
    check_image_token(tokenizer, int(model.config.image_token_id))
    return model, tokenizer


def require_tokenizer(tokenizer: Optional[str]) -> str:
    """``model.tokenizer`` or a one-line ConfigError naming the key.

    Never a default: the project ships no tokenizer, and a path guessed beside the repository
    exists on no user's machine. A checkpoint folder usually holds its own tokenizer, so
    ``model.tokenizer`` is then the same folder (or the hub id ``llava-hf/llava-1.5-7b-hf``).
    """
    if tokenizer is None or (isinstance(tokenizer, str) and not tokenizer.strip()):
        raise ConfigError("model.tokenizer: not set; name the LLaVA tokenizer by hub id (llava-hf/llava-1.5-7b-hf) "
                          "or a local folder (a tokenizer folder, or one holding the Llama-2 tokenizer.model)")
    return tokenizer


def load_tokenizer(source: str | Path) -> Any:
    """The tokenizer of ``model.tokenizer``: a hub id, a tokenizer folder, or a Llama-2 ``tokenizer.model`` folder.

    A folder holding only ``tokenizer.model`` (no ``tokenizer_config.json``) is the bare
    SentencePiece model: :func:`sentencepiece_tokenizer` adds llava-hf's two tokens. Anything
    else goes to ``AutoTokenizer`` (the hub only when HF_HUB_OFFLINE is unset). Checked: ``<image>``
    is one token, id 32000. Raises :class:`CheckpointNotFoundError` naming ``model.tokenizer``.
    """
    from transformers import AutoTokenizer

    text = str(source)
    local = Path(text).expanduser()
    if local.is_dir() and (local / "tokenizer.model").is_file() and not (local / "tokenizer_config.json").is_file():
        tokenizer = sentencepiece_tokenizer(local)
    elif local.exists() or _looks_like_path(text):
        if not local.is_dir():
            what = "is not a folder" if local.exists() else "no such folder"
            raise CheckpointNotFoundError(f"model.tokenizer: {text!r} {what} (give a tokenizer folder or a hub id)")
        tokenizer = _auto_tokenizer(AutoTokenizer, str(local), True)
    else:
        tokenizer = _auto_tokenizer(AutoTokenizer, text, _hub_offline())
    check_image_token(tokenizer, IMAGE_TOKEN_ID)
    return tokenizer


def _auto_tokenizer(auto: Any, source: str, local_only: bool) -> Any:
    try:
        return auto.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:  # not found / offline (OSError); no tokenizer class in a folder (ValueError)
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if local_only and not Path(source).exists() \
            else str(err).strip().splitlines()[0]
        raise CheckpointNotFoundError(f"model.tokenizer: cannot load tokenizer {source!r} ({why}); name a local "
                                      f"tokenizer folder (or one holding the Llama-2 tokenizer.model), or the hub id "
                                      f"llava-hf/llava-1.5-7b-hf on a machine that reaches the hub") from err


def check_image_token(tokenizer: Any, expected: int) -> None:
    """Raise ValueError unless ``<image>`` is one token with the model's image_token_id."""
    ids = tokenizer.encode(IMAGE_TOKEN, add_special_tokens=False)
    if ids != [expected]:
        raise ValueError(f"tokenizer: {IMAGE_TOKEN!r} encodes to {ids}, the model expects [{expected}]")


def sentencepiece_tokenizer(path: str | Path) -> Any:
    """The Llama-2 tokenizer from ``tokenizer.model`` plus llava-hf's two added tokens.

    ``<image>`` = 32000 and ``<pad>`` = 32001 are appended after the 32,000 pieces, as in
    the llava-hf checkpoints; BOS is added like theirs. Raises ValueError if the ids differ.
    Converting the SentencePiece model costs 1–5 s, so the result is cached per file
    (path, size, mtime): every tiny comparator of a process shares one read-only tokenizer.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    model_file = folder / "tokenizer.model"
    if not model_file.is_file():
        raise FileNotFoundError(f"model.tokenizer: no tokenizer.model in {folder}")
    st = model_file.stat()
    return _converted_tokenizer(str(folder.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _converted_tokenizer(folder: str, size: int, mtime_ns: int) -> Any:
    """The uncached body of :func:`sentencepiece_tokenizer`; ``size``/``mtime_ns`` key the cache."""
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, add_eos_token=False, legacy=False)
    tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tok.add_special_tokens({"pad_token": PAD_TOKEN})
    got = tok.convert_tokens_to_ids([IMAGE_TOKEN, PAD_TOKEN])
    if got != [IMAGE_TOKEN_ID, PAD_TOKEN_ID]:
        raise ValueError(f"model.tokenizer: <image>/<pad> got ids {got}, expected [{IMAGE_TOKEN_ID}, {PAD_TOKEN_ID}] "
                         f"(is {folder}/tokenizer.model the 32,000-piece Llama-2 model?)")
    return tok


def tiny_llava_config(image_size: int = 32, patch_size: int = 16, vision_hidden: int = 32, vision_layers: int = 2,
                      text_hidden: int = 64, text_layers: int = 2, heads: int = 4, intermediate: int = 128) -> Any:
    """A ``LlavaConfig`` with LLaVA-1.5's structure and special ids but toy widths.

    Same vocab (32,064), ``<image>`` 32000, pad 32001, feature layer −2, "default"
    select strategy and a 2-layer GELU projector; (image_size / patch)^2 image tokens.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=max(1, heads // 2),
                              image_size=image_size, patch_size=patch_size, projection_dim=vision_hidden)
    text = LlamaConfig(vocab_size=LLAVA_VOCAB, hidden_size=text_hidden, intermediate_size=intermediate,
                       num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=PAD_TOKEN_ID,
                       bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    n_patches = (image_size // patch_size) ** 2
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_ID,
                       image_seq_length=n_patches, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", projector_hidden_act="gelu")


LLAVA_15_7B_PARAMETERS = 7_063_427_072  # llava-hf/llava-1.5-7b-hf: every tensor of its state dict


def llava_15_7b_config() -> Any:
    """``llava-hf/llava-1.5-7b-hf``'s architecture (its config.json; weights not needed).

    CLIP ViT-L/14 at 336 px (1024 wide, 24 layers, 16 heads: 576 patch tokens), feature layer −2
    with the CLS token dropped, a 2-layer GELU projector 1024 -> 4096 -> 4096, and Vicuna-7B v1.5
    (Llama: 4096 wide, 32 layers, 32 heads, MLP 11008, RMSNorm eps 1e-5, 4096 positions) with the
    vocabulary padded to 32,064 rows; ``<image>`` 32000, pad 32001, untied LM head.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                              layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=LLAVA_VOCAB, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                       pad_token_id=PAD_TOKEN_ID, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_ID, image_seq_length=576,
                       vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                       pad_token_id=PAD_TOKEN_ID, ignore_index=-100, tie_word_embeddings=False)


def cast_parameters(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the floating-point *parameters* to ``dtype`` and leave every buffer as built.

    ``model.to(torch.bfloat16)`` would also round the rotary ``inv_freq`` (built in float32, as
    ``from_pretrained(dtype=bfloat16)`` keeps it) to bf16: position 1,000 of the 1,180-token
    prompt would then turn by an angle off by up to ~2 radians in the slowest-decaying pairs.
    """
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


def random_llava(config: Any, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                 seed: int = 0) -> Any:
    """A ``LlavaForConditionalGeneration`` of ``config`` with random weights, built without a float32 copy.

    The parameters are created on the meta device (no memory), then allocated once on ``device``
    in ``dtype`` and drawn there: N(0, initializer_range) for matrices, embeddings and CLIP's class
    embedding, zeros for biases, ones for norm weights. The buffers are built for real by the
    modules' own constructors — rotary ``inv_freq`` in float32 (never rounded through ``dtype``),
    CLIP's ``position_ids`` — exactly what loading a real checkpoint leaves in them. Deterministic
    for one ``seed`` and device. The 7B model needs ~14 GB in bf16 and never more.
    """
    from accelerate import init_empty_weights
    from transformers import LlavaForConditionalGeneration

    with init_empty_weights(include_buffers=False):
        model = LlavaForConditionalGeneration(config)
    device = torch.device(device)
    std = float(getattr(config.text_config, "initializer_range", 0.02) or 0.02)
    gen = torch.Generator(device=device).manual_seed(seed)
    done: dict[int, nn.Parameter] = {}
    with torch.no_grad():
        for module in model.modules():
            norm = "Norm" in type(module).__name__
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) not in done:  # a tied parameter is drawn once
                    kind = param.dtype if not param.is_floating_point() else dtype
                    fresh = torch.empty(param.shape, dtype=kind, device=device)
                    if name == "bias":
                        fresh.zero_()
                    elif norm:
                        fresh.fill_(1.0)
                    else:
                        fresh.normal_(0.0, std, generator=gen)
                    done[id(param)] = nn.Parameter(fresh, requires_grad=param.requires_grad)
                module._parameters[name] = done[id(param)]
            for name, buf in list(module._buffers.items()):
                if buf is not None and buf.device != device:
                    module._buffers[name] = buf.to(device)
    meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if meta:
        raise RuntimeError(f"random_llava: {len(meta)} tensor(s) left on the meta device, e.g. {meta[:3]}")
    return model.eval()
