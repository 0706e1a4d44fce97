"""``orderlearn models [--json]``: the registered models, scorers and backbones.

The entries are library code in :mod:`orderlearn.report.catalog` (read from the registries, so
a new model is listed as soon as it registers); this command prints them, as text or as JSON
for a program (the docs' model table is rendered from the same data).
"""
from __future__ import annotations

import argparse
import json


def main(args: argparse.Namespace) -> int:
    from orderlearn.report.catalog import catalog, catalog_text

    data = catalog()
    print(json.dumps(data, indent=2) if args.json else catalog_text(data))
    return 0
