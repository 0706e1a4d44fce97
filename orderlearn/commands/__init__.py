"""Commands: one module per ``orderlearn`` sub-command, named like the command.

``run``, ``demo``, ``score``, ``evaluate``, ``synth``, ``compare``, ``active`` (with its
evidence, factorial and report in :mod:`.active_evidence`, :mod:`.active_variants` and
:mod:`.active_report`), ``predict``, ``export`` and ``serve``. Each module has
``main(args: argparse.Namespace) -> int`` (the exit status); :mod:`orderlearn.cli` declares
every command's options and imports the chosen command's module only after parsing, so a
module may import torch at its top and ``orderlearn --help`` still imports none of it. A
command turns the parsed line into calls of library code (``runs/``, ``report/``, ``data/``)
and prints; the work it names lives in the library, so the same functions serve scripts,
tests and benchmarks. The commands that use a trained model start from a loaded run.

Import order: the top of the package; nothing in it imports a command.
"""
