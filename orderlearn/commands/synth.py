"""``orderlearn synth --out DIR``: write the synthetic dataset (:mod:`orderlearn.data.synthetic`).

The SCUT-FBP5500 layout by default, the age-estimation variant (a ``manifest.csv``) with
``--ages``; the same seed writes the same images. Sizes the generator cannot write are usage
errors of the parser (``orderlearn.cli``), checked against the same limits as
``data.synthetic_*``. A folder that holds another dataset is refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse

from orderlearn.errors import ConfigError


def main(args: argparse.Namespace) -> int:
    from orderlearn.data import synthetic
    from orderlearn.data.synthetic.cache import REPLACE_HINT

    generate = synthetic.generate_synthetic_ages if args.ages else synthetic.generate_synthetic_scut
    try:
        root = generate(args.out, n_images=args.images, image_size=args.size, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as exc:  # the library's advice names its keyword; say the option instead
        message = str(exc).replace(REPLACE_HINT, "Pass --overwrite to replace it, or choose another --out.")
        raise ConfigError(f"--out: {message}") from None
    print(f"wrote {root}")
    return 0
