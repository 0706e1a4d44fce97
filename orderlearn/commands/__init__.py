"""Commands: the work behind each ``orderlearn`` sub-command, one module per command.

``score`` (:mod:`.score`), ``active`` (:mod:`.active`, with its evidence, factorial and report in
:mod:`.active_evidence`, :mod:`.active_variants` and :mod:`.active_report`), ``predict``
(:mod:`.predict`) and ``serve`` (:mod:`.serve`); ``orderlearn.cli`` parses the command line and
dispatches here. Each starts from a :class:`~orderlearn.runs.loaded.LoadedRun`.

Import order: the top of the package; nothing in it imports a command.
"""
