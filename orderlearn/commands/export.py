"""``orderlearn export RUN --out BUNDLE [--push-to-hub OWNER/NAME]``: a self-contained model folder.

The bundle (safetensors weights, JSON settings, the bank, a model card) is written by
:mod:`orderlearn.runs.bundle`; it scores photos like the run with no other file, and can be
uploaded as a hub model repository.
"""
from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from orderlearn.runs.bundle import check_thumbnail_size, export_bundle, push_bundle

    out = export_bundle(args.run, args.out, check_thumbnail_size(args.thumbnail_size), args.template_faces,
                        args.references)
    print(f"wrote {out}")
    if args.push_to_hub:
        print(f"pushed to {push_bundle(out, args.push_to_hub)}")
    return 0
