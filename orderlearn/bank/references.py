"""The reference bank: training images with known scores that test images are compared with.

Selection follows the LMOL protocol: bin the training scores by width 0.1 and keep at most
10 images per bin (seeded), which gives ~350 references spread evenly over the score range
(rare extreme scores are all kept, the crowded middle is thinned). Saved as JSON with its
selection parameters. A reference's features live in the per-image feature cache
(:mod:`orderlearn.engine.features`), not here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json
from orderlearn.types import ScoredImage

BANK_FORMAT = 1


@dataclass
class ReferenceBank:
    """Reference samples, their scores, and how they were chosen."""

    samples: list[ScoredImage]
    bin_width: float = 0.1
    per_bin: int = 10
    seed: int = 0

    @property
    def scores(self) -> torch.Tensor:
        return torch.tensor([s.score for s in self.samples], dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def select(
        cls, samples: Sequence[ScoredImage], bin_width: float = 0.1, per_bin: int = 10, seed: int = 0
    ) -> "ReferenceBank":
        """Choose at most ``per_bin`` samples from each score bin of width ``bin_width``."""
        if not samples:
            raise DataError("cannot build a reference bank from an empty training split")
        chosen = select_reference_indices([s.score for s in samples], bin_width, per_bin, seed)
        return cls([samples[i] for i in chosen], bin_width, per_bin, seed)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the bank as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": BANK_FORMAT,
            "bin_width": self.bin_width,
            "per_bin": self.per_bin,
            "seed": self.seed,
            "references": [
                {"path": str(s.path.resolve()), "score": s.score, "std": s.std, "group": s.group}
                for s in self.samples
            ],
        }
        atomic_write_json(path, payload, default=None)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ReferenceBank":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"reference bank {path} does not exist")
        try:
            payload = json.loads(path.read_text())
            refs = payload["references"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path} is not a reference bank file ({exc})") from None
        samples = []
        for i, ref in enumerate(refs):
            try:
                image, score = Path(ref["path"]), float(ref["score"])
            except (KeyError, TypeError, ValueError) as exc:  # a bundle's references.json has names, not paths
                raise DataError(f"{path}: reference {i} is not {{path, score}} ({type(exc).__name__}: {exc})") from None
            if not image.is_file():
                raise DataError(f"{path}: reference {i} image {image} does not exist")
            samples.append(ScoredImage(path=image, score=score, std=ref.get("std"), group=ref.get("group")))
        return cls(samples, payload.get("bin_width", math.nan), payload.get("per_bin", 0), payload.get("seed", 0))



def select_reference_indices(scores: Sequence[float], bin_width: float = 0.1, per_bin: int = 10, seed: int = 0) -> list[int]:
    """LMOL's bank rule, the one owner of it: bins of ``bin_width`` anchored at 0 (so a bank does
    not depend on the sample that happens to score lowest), at most ``per_bin`` seeded random
    members of each; returned in order of score (then index)."""
    if bin_width <= 0 or per_bin <= 0:
        raise ValueError(f"bin_width and per_bin must be positive, got {bin_width}, {per_bin}")
    values = np.asarray(scores, dtype=np.float64)
    bins = np.floor(values / bin_width + 1e-9).astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        chosen.extend(sorted(rng.choice(members, size=min(per_bin, len(members)), replace=False).tolist()))
    chosen.sort(key=lambda i: (values[i], i))
    return chosen
