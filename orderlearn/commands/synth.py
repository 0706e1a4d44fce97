"""``orderlearn synth --out DIR``: write the synthetic dataset (:mod:`orderlearn.data.synthetic`).

The SCUT-FBP5500 layout by default, the age-estimation variant (a ``manifest.csv``) with
``--ages``; the same seed writes the same images.
"""
from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from orderlearn.data import synthetic

    if args.ages:
        root = synthetic.generate_synthetic_ages(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    else:
        root = synthetic.generate_synthetic_scut(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    print(f"wrote {root}")
    return 0
