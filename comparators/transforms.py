"""Image preprocessing shared by every CNN model: PIL image -> normalised float tensor.

Augmentations are named in configs (``augment: [hflip, crop, color_jitter, rotation]``) so a
method's paper settings are data, not code. Evaluation transforms never augment.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("hflip", "crop", "color_jitter", "rotation")


def make_transform(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    train: bool = False,
    augment: Sequence[str] = ("hflip",),
) -> Callable[[object], torch.Tensor]:
    """Build a PIL -> tensor transform; ``augment`` is only applied when ``train`` is true.

    ``crop`` resizes to 1.14x and random-crops back (the ComboLoss protocol); ``rotation``
    rotates by up to ±10°; ``color_jitter`` perturbs brightness/contrast/saturation by 0.2.
    """
    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
    steps: list[Callable] = [T.Lambda(_to_rgb)]
    if train and "crop" in augment:
        steps += [T.Resize(int(round(image_size * 1.14))), T.RandomCrop(image_size)]
    else:
        steps += [T.Resize((image_size, image_size))]
    if train:
        if "hflip" in augment:
            steps.append(T.RandomHorizontalFlip())
        if "rotation" in augment:
            steps.append(T.RandomRotation(10))
        if "color_jitter" in augment:
            steps.append(T.ColorJitter(0.2, 0.2, 0.2))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def _to_rgb(image):
    return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image


class BackboneTransforms:
    """``preprocess``/``train_preprocess`` for models whose ``config`` names a timm ``backbone``,
    an ``image_size`` and its training ``augment`` list: the normalisation its weights expect."""

    def preprocess(self) -> Callable[[object], torch.Tensor]:
        from .backbones import normalisation

        mean, std = normalisation(self.config.backbone)
        return make_transform(self.config.image_size, mean, std, train=False)

    def train_preprocess(self) -> Callable[[object], torch.Tensor]:
        from .backbones import normalisation

        mean, std = normalisation(self.config.backbone)
        return make_transform(self.config.image_size, mean, std, train=True, augment=self.config.augment)
