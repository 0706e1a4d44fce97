"""IR-50: the ArcFace "improved residual" ResNet-50 for 112x112 faces, as a timm model.

Why our own module: no timm model is IR-50, and the relative-age-position paper
(Amirullaeva & Han, IEEE Access 2024) fine-tunes exactly this network, pretrained for face
recognition on MS-Celeb-1M. Registering it in timm's registry (``ir50``, ``ir50_poster``)
lets every config name it like any other backbone:
``comparators.backbones.create_backbone("ir50", weights="random" | "/path/ir50.pth")``.

Architecture (ArcFace [Deng et al.], the face.evoLVe / InsightFace_Pytorch ``IR_50``):

* input layer: 3x3 conv (stride 1, no bias), BN, PReLU - no max-pool, because faces are
  only 112 px and every pixel of the aligned crop matters;
* 4 stages of "improved residual" units with (3, 4, 14, 3) units and widths
  (64, 128, 256, 512); a unit is ``BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN`` plus a
  shortcut (``MaxPool2d(1, stride)`` = subsampling when the width is unchanged, else
  1x1 conv + BN). The stride sits in the *second* conv and the first unit of every stage
  halves the resolution: 112 -> 56 -> 28 -> 14 -> 7, so ``forward_features`` of ``ir50``
  gives ``[B, 512, 7, 7]`` at 112 px;
* head (timm convention): global average pooling -> ``[B, num_features]``, then an
  optional linear classifier (``num_classes=0`` gives the pooled features). ArcFace's
  own embedding layer (BN, dropout, flatten, FC 25088->512, BN) is not built: it is tied
  to a 7x7 map and the age paper pools the feature map instead (its Sec. III-A).

``ir50_poster`` is the variant the age paper uses (Sec. III-A, taken from POSTER++
[Mao et al.]): IR-50 with its last block (the 512-wide stage) removed, so ``c = 256``
feature channels (at 14x14 for a 112 px input).

``widths`` / ``depths`` override the stage layout (e.g. ``widths=(8, 8, 16, 16),
depths=(1, 1, 1, 1)``): a reduced model with the same structure, for fast tests.

Checkpoints: :meth:`IR50.load_state_dict` accepts face.evoLVe / InsightFace_Pytorch
files (``input_layer.*``, ``body.N.*``, ``output_layer.*``) and POSTER++ files
(``body1.N.*``, ``body2.N.*``, ``body3.N.*``); see :func:`convert_state_dict`.

Input normalisation: ArcFace-style models are trained on ``(x - 0.5) / 0.5`` inputs, so the
pretrained cfg says mean = std = (0.5, 0.5, 0.5) (read by ``backbones.normalisation``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from timm.layers import create_classifier
from timm.models import build_model_with_cfg
from timm.models._manipulate import checkpoint_seq
from torch import nn

from .backbone_registry import register_backbone

__all__ = ["IR50", "ImprovedResidualUnit", "convert_state_dict", "ir50", "ir50_poster"]

IR50_WIDTHS = (64, 128, 256, 512)
IR50_DEPTHS = (3, 4, 14, 3)


class ImprovedResidualUnit(nn.Module):
    """ArcFace's improved residual unit: ``BN-conv3x3-PReLU-conv3x3(stride)-BN`` + shortcut.

    The leading BN and the absence of a final activation are what distinguish it from a
    plain ResNet basic block (ArcFace, Sec. "improved residual unit"); the stride on the
    second conv keeps the first conv at full resolution. Module names (``shortcut_layer``,
    ``res_layer``) match face.evoLVe / InsightFace_Pytorch so their checkpoints load by name.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IR50(nn.Module):
    """The IR-50 feature extractor with timm's model interface.

    ``forward_features(x)`` -> feature map ``[B, widths[-1], H/2**len(depths), W/2**len(depths)]``;
    ``forward_head(f, pre_logits)`` -> pooled ``[B, num_features]`` or logits;
    ``reset_classifier(0)`` turns it into a pure feature extractor.
    """

    def __init__(
        self,
        widths: Sequence[int] = IR50_WIDTHS,
        depths: Sequence[int] = IR50_DEPTHS,
        num_classes: int = 0,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        if not widths or len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} must be non-empty and of equal length")
        if min(widths) < 1 or min(depths) < 1:
            raise ValueError(f"every width and depth must be >= 1, got widths {widths}, depths {depths}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.widths, self.depths = widths, depths
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.num_features = self.head_hidden_size = widths[-1]

        self.input_layer = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        units: list[nn.Module] = []
        # timm's features_only taps: the stem, then the end of every stage
        self.feature_info: list[dict[str, Any]] = [dict(num_chs=widths[0], reduction=1, module="input_layer.2")]
        in_ch = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for i in range(depth):
                units.append(ImprovedResidualUnit(in_ch, width, 2 if i == 0 else 1))
                in_ch = width
            self.feature_info.append(
                dict(num_chs=width, reduction=2 ** (stage + 1), module=f"body.{len(units) - 1}")
            )
        self.body = nn.Sequential(*units)
        self.global_pool, self.head = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs (fan-out), BN = identity: the initialisation of ArcFace's backbones."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --- timm interface -------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return dict(stem=r"^input_layer", blocks=r"^body\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return "head" if name_only else self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        self.global_pool, self.head = create_classifier(self.num_features, num_classes, pool_type=pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.body, x)
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # --- checkpoints ----------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load our own, face.evoLVe or POSTER++ IR-50 checkpoints (see :func:`convert_state_dict`)."""
        return super().load_state_dict(convert_state_dict(state_dict, self.depths), strict=strict, assign=assign)


_POSTER_BODY = re.compile(r"^body([1-9])\.(\d+)\.(.*)$")
_BODY = re.compile(r"^body\.(\d+)\.")


def convert_state_dict(state_dict: Mapping[str, Any], depths: Sequence[int]) -> "OrderedDict[str, Any]":
    """Map a face-recognition IR-50 checkpoint onto :class:`IR50` with stage ``depths``.

    * POSTER++ splits the body into ``body1``/``body2``/``body3`` (one per stage); unit
      ``bodyS.i`` becomes ``body.(sum(depths[:S-1]) + i)``.
    * ``output_layer.*`` (ArcFace's embedding layer, not part of the feature extractor) and
      units ``body.N`` with ``N >= sum(depths)`` (stages a truncated variant removes, as the
      age paper removes IR-50's last block) are dropped: they are the parts this variant
      does not build. Everything else is passed on unchanged, so shape mismatches of a
      different architecture still fail in ``load_state_dict``.
    """
    offsets = [sum(depths[:s]) for s in range(len(depths))]
    total = sum(depths)
    out: "OrderedDict[str, Any]" = OrderedDict()
    for key, value in state_dict.items():
        match = _POSTER_BODY.match(key)
        if match:
            stage, unit, rest = int(match.group(1)) - 1, int(match.group(2)), match.group(3)
            if stage >= len(depths):
                continue
            key = f"body.{offsets[stage] + unit}.{rest}"
        if key.startswith("output_layer."):
            continue
        body = _BODY.match(key)
        if body and int(body.group(1)) >= total:
            continue
        out[key] = value
    return out


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 112, 112),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "input_layer.0",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = {"ir50": _cfg(), "ir50_poster": _cfg(pool_size=(14, 14))}


def _create(variant: str, pretrained: bool, **kwargs: Any) -> IR50:
    if pretrained:
        # timm would fall back to a silent random init: there is no downloadable IR-50.
        raise RuntimeError(
            f"no downloadable weights for {variant!r}: give a face-recognition checkpoint "
            f"(face.evoLVe/InsightFace or POSTER++ ir50.pth) as a weights path, or use weights='random'"
        )
    taps = tuple(range(len(kwargs["depths"]) + 1))  # stem + one per stage
    feature_cfg = dict(out_indices=taps, flatten_sequential=True)
    return build_model_with_cfg(IR50, variant, pretrained=False, feature_cfg=feature_cfg, **kwargs)


@register_backbone
def ir50(pretrained: bool = False, **kwargs: Any) -> IR50:
    """ArcFace IR-50: 4 stages (3, 4, 14, 3) x (64, 128, 256, 512); ``[B, 512, 7, 7]`` at 112 px."""
    kwargs.setdefault("widths", IR50_WIDTHS)
    kwargs.setdefault("depths", IR50_DEPTHS)
    return _create("ir50", pretrained, **kwargs)


@register_backbone
def ir50_poster(pretrained: bool = False, **kwargs: Any) -> IR50:
    """IR-50 without its last block (POSTER++; the age paper's backbone, c = 256)."""
    kwargs.setdefault("widths", IR50_WIDTHS[:3])
    kwargs.setdefault("depths", IR50_DEPTHS[:3])
    return _create("ir50_poster", pretrained, **kwargs)
