"""Files inside installed distributions: how offline weights are found without a model hub.

Several backbones' pretrained weights ship inside ordinary packages of the registry (see the
README's offline weights): MobileNetV2's and EfficientNet-Lite0's ImageNet weights, dlib's face
recognition network and its 5-point landmark model. Each is found by distribution name and file
name, never by a path on this machine.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Optional


def find_package_file(package: str, filename: str) -> Optional[Path]:
    """Path of ``filename`` inside installed distribution ``package``, or None."""
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == filename:
            path = Path(f.locate())
            if path.is_file():
                return path
    return None
