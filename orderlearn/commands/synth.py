"""``orderlearn synth --out DIR``: write the synthetic dataset (:mod:`orderlearn.data.synthetic`).

The SCUT-FBP5500 layout by default, the age-estimation variant (a ``manifest.csv``) with
``--ages``; the same seed writes the same images. Sizes the generator cannot write are a
one-line error naming the option, checked against the same limits as ``data.synthetic_*``.
"""
from __future__ import annotations

import argparse

from orderlearn.errors import ConfigError


def main(args: argparse.Namespace) -> int:
    from orderlearn.config_checks import SYNTHETIC_MIN_IMAGES, SYNTHETIC_MIN_SIZE
    from orderlearn.data import synthetic

    for option, value, minimum in (("--images", args.images, SYNTHETIC_MIN_IMAGES), ("--size", args.size, SYNTHETIC_MIN_SIZE),
                                   ("--seed", args.seed, 0)):
        if value < minimum:
            raise ConfigError(f"{option}: expected at least {minimum}, got {value}")
    if args.ages:
        root = synthetic.generate_synthetic_ages(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    else:
        root = synthetic.generate_synthetic_scut(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    print(f"wrote {root}")
    return 0
