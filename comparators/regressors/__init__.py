"""Direct methods of the literature as :class:`~comparators.base.Regressor` modules.

Each module holds one method: its config dataclass, its ``PAPER_RECIPE`` and a ``build`` factory.
"""
from comparators.regressors import comboloss
from comparators.regressors import dual_label_distribution
from comparators.regressors import plain
from comparators.regressors import adashare_aff
from comparators.regressors import relative_position
