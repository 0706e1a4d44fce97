"""Bank: from comparisons with scored references to scores.

The reference bank and its selection (:mod:`.references`); the scoring recipe saved with each
run as ``scorer.json`` — scorer, link, interval scale, checkpoints (:mod:`.scoring_recipe`); a
model's comparisons of images with the bank (:mod:`.comparisons`) and the route from faces ×
bank to scores under a recipe (:mod:`.route`); what is fitted on validation, each step a new
recipe (:mod:`.calibration`); and the run's bank phase that puts these together (:mod:`.phase`).

Import order: above :mod:`orderlearn.engine`; below the report and the runs.
"""
