"""Bank: from comparisons with scored references to scores.

The reference bank and its selection (:mod:`.references`), a model's comparisons of images
with the bank (:mod:`.comparisons`), and the scoring recipe saved with each run as
``scorer.json`` — scorer, link, interval scale, checkpoints — with its calibration on
validation (:mod:`.evaluator`).

Import order: above :mod:`orderlearn.engine`; below the report and the runs.
"""
