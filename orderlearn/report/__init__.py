"""Report: metrics, tables and plots.

Score and comparator metrics (:mod:`.metrics`) and how they are shown: markdown tables
(:mod:`.markdown`) and score plots (:mod:`.plots`); the ``scores.csv`` format
(:mod:`.scores_csv`); the direct-vs-order-learned table over runs (:mod:`.tables`, reading run
folders with :mod:`.run_folders`) and the decision plots of a scored photo (:mod:`.decision_plots`).

Import order: above :mod:`orderlearn.bank.references`; below the runs and the commands.
"""
