"""Engine: training a model and computing its features, with nothing of run folders.

The training loop and its samplers (:mod:`.training`), the in-batch pair objective
(:mod:`.in_batch`), what each kind of model is fitted on (:mod:`.fitting`), epoch checkpoints
and resume states (:mod:`.checkpoints`), the per-image feature cache (:mod:`.features`).

Import order: above :mod:`orderlearn.data.splits`; below :mod:`orderlearn.bank.references` and the runs.
"""
