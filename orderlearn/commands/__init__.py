"""Commands: the work behind each ``orderlearn`` sub-command, one module per command.

``score`` (:mod:`.score`), ``active`` (:mod:`.active`), ``predict`` (:mod:`.predict`) and
``serve`` (:mod:`.serve`); ``orderlearn.cli`` parses the command line and dispatches here.

Import order: the top of the package; nothing in it imports a command.
"""
