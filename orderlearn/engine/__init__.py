"""Engine: training a model and computing its features, with nothing of run folders.

The accelerator and resume into prepared objects (:mod:`.runtime`), the training loop
(:mod:`.training`) with its samplers (:mod:`.samplers`), objectives and losses
(:mod:`.objectives`) and the wrappers it trains (:mod:`.heads`), the datasets it reads
(:mod:`.datasets`), what each kind of model is fitted on (:mod:`.fitting`), epoch checkpoints
and resume states behind one :class:`~.checkpoints.CheckpointStore` (:mod:`.checkpoints`), the
per-image feature cache (:mod:`.features`), work split over processes (:mod:`.parallel`).

Import order inside: heads, samplers, datasets, parallel < checkpoints, objectives, features
< runtime < training < fitting. Above :mod:`orderlearn.data`; below :mod:`orderlearn.bank` and
:mod:`orderlearn.runs` (nothing here imports them).
"""
