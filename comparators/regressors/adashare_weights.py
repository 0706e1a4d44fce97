"""ImageNet ResNet-18 weights for the AdaShare + AFF network, mapped by name.

The paper transfers an ImageNet ResNet-18 into its network (Sec. 2.1, "pretrained network
module"). Our blocks are written by hand (to gate them and give each task its own BN), so
timm's ``resnet18`` keys are translated: every task-specific BN copy receives the same
pretrained BN (AdaShare does the same), the AFF modules, heads and policy logits have no
pretrained counterpart and keep their initialisation, and timm's ``fc`` is dropped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from comparators.backbones import WeightsNotFoundError, read_state_dict

_TASK_COPY = re.compile(r"\.bns\.\d+\.")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^stem\.conv\.(\w+)$"), r"conv1.\1"),
    (re.compile(r"^stem\.bn\.(\w+)$"), r"bn1.\1"),
    (re.compile(r"^layers\.(\d+)\.(\d+)\.downsample\.conv\.(\w+)$"), r"layer{S}.\2.downsample.0.\3"),
    (re.compile(r"^layers\.(\d+)\.(\d+)\.downsample\.bn\.(\w+)$"), r"layer{S}.\2.downsample.1.\3"),
    (re.compile(r"^layers\.(\d+)\.(\d+)\.((?:conv|bn)[12])\.(\w+)$"), r"layer{S}.\2.\3.\4"),
)


def timm_key(key: str) -> Optional[str]:
    """timm ``resnet18`` key of one of our state-dict keys, or None (AFF, heads, policy)."""
    plain = _TASK_COPY.sub(".", key)
    for pattern, template in _RULES:
        match = pattern.match(plain)
        if match:
            stage = int(match.group(1)) + 1 if plain.startswith("layers.") else 0
            return match.expand(template.replace("{S}", str(stage)))
    return None


def load_resnet_state(model: nn.Module, source: Mapping[str, torch.Tensor], origin: str = "weights") -> None:
    """Copy a timm/torchvision ResNet state dict into ``model`` by name; fail loudly on mismatch.

    Every convolution and BN of ours must find a tensor of the same shape, and every
    backbone tensor of the source (all but ``fc``) must be used, so a ResNet-34 file or a
    reduced-width model cannot be half-loaded in silence. ``num_batches_tracked`` may be
    absent (older torchvision files).
    """
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for key, tensor in target.items():
        src = timm_key(key)
        if src is None:
            continue
        if src not in source:
            if not key.endswith("num_batches_tracked"):
                missing.append(src)
            continue
        if source[src].shape != tensor.shape:
            raise WeightsNotFoundError(
                f"{origin}: tensor {src} {tuple(source[src].shape)} does not fit {key} {tuple(tensor.shape)}"
            )
        mapped[key] = source[src]
        used.add(src)
    unused = [k for k in source if k not in used and not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    if missing or unused:
        raise WeightsNotFoundError(
            f"{origin} is not a ResNet of this shape: missing {missing[:5]}, unused {unused[:5]}"
        )
    model.load_state_dict(mapped, strict=False)


def load_resnet_weights(model: nn.Module, weights: str) -> None:
    """Load ``weights`` (``"imagenet"`` via timm's cache/hub, or a checkpoint path) into ``model``."""
    if weights == "imagenet":
        import timm

        try:
            source = timm.create_model("resnet18", pretrained=True).state_dict()
        except Exception as exc:  # no hub and no cache on this machine
            raise WeightsNotFoundError(
                "no ImageNet resnet18 weights available offline: give a timm/torchvision resnet18 "
                f"checkpoint as `weights: /path/to/resnet18.pth`, or `weights: random` "
                f"(hub error: {type(exc).__name__}: {exc})"
            ) from exc
        load_resnet_state(model, source, "timm resnet18")
        return
    load_resnet_state(model, read_state_dict(Path(weights)), str(weights))
