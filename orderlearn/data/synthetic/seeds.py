"""Every random stream of the generator, named in one place.

Why: the generated files must be byte-identical for the same arguments, and image ``i``
must not change when ``n_images`` grows. So no stream is shared across images: each one
is a fresh ``SeedSequence`` keyed by ``(seed, mode, key, count-or-index)``. Image streams
use the image's group number (0..3) as key; the two dataset-wide streams use keys no group
number reaches (``RATER_STREAM``, ``ORDER_STREAM``). Changing any key changes the data.
"""
from __future__ import annotations

import numpy as np

MODE_TAGS = {"scut": 1, "ages": 2}
RATER_STREAM = 99  # the raters' personal biases (beauty mode)
ORDER_STREAM = 7  # the order of list files and split/fold assignment


def image_rng(seed: int, mode: str, group: int, index: int) -> np.random.Generator:
    """The stream of one image: its traits, its look and its raters' noise."""
    return np.random.default_rng(np.random.SeedSequence([seed, MODE_TAGS[mode], group, index]))


def rater_rng(seed: int, n_raters: int) -> np.random.Generator:
    """The stream that draws each simulated rater's bias, once per beauty dataset."""
    return np.random.default_rng(np.random.SeedSequence([seed, MODE_TAGS["scut"], RATER_STREAM, n_raters]))


def order_rng(seed: int, mode: str, n_images: int) -> np.random.Generator:
    """The stream that shuffles list files and assigns splits and folds, once per dataset."""
    return np.random.default_rng(np.random.SeedSequence([seed, MODE_TAGS[mode], ORDER_STREAM, n_images]))
