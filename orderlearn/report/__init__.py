"""Report: metrics, tables and plots.

Score and comparator metrics (:mod:`.metrics`), the ``scores.csv`` format
(:mod:`.scores_csv`), the direct-vs-order-learned table over runs (:mod:`.tables`) and the
decision plots of a scored photo (:mod:`.decision_plots`).

Import order: above :mod:`orderlearn.bank.references`; below the runs and the commands.
"""
