"""Check that the configs of the working tree resolve to the same runs as the flat configs of an
earlier commit, path by path through the old -> new table of configs/README.md.

When configs/ moved into folders and its variants became differences of a base (``base:``), every
new file had to resolve to exactly the old file's config. This re-runs that proof, e.g. after a
merge that touched a config on one side:

    python benchmarks/config_equality.py 7b08bf8      # the last commit with the flat configs/

It prints each pair that differs (with the differing keys) and exits 1 if any does.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orderlearn.config import load_config  # noqa: E402

ROW = re.compile(r"^\| `(configs/[^`]+\.yaml)` \| `(configs/[^`]+\.yaml)` \|")


def path_table(readme: Path) -> dict[str, str]:
    """Old path -> new path, from the table in configs/README.md."""
    return dict(m.groups() for line in readme.read_text().splitlines() if (m := ROW.match(line)))


def old_config(revision: str, path: str, folder: Path) -> dict[str, Any]:
    """The config ``path`` held at ``revision``, resolved by today's loader (a flat file has no base)."""
    text = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    copy = folder / Path(path).name
    copy.write_text(text)
    return load_config(copy).to_dict()


def differences(old: Any, new: Any, key: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(old.keys() | new.keys(), key=str)
                for d in differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{key}.{k}".lstrip("."))]
    return [] if old == new else [f"{key}: {old!r} -> {new!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="a commit whose configs/ holds the old flat paths")
    args = parser.parse_args()
    table = path_table(REPO / "configs" / "README.md")
    differing = 0
    with tempfile.TemporaryDirectory() as tmp:
        for old, new in sorted(table.items()):
            found = differences(old_config(args.revision, old, Path(tmp)), load_config(REPO / new).to_dict())
            if found:
                differing += 1
                print(f"{old} -> {new}:", *found, sep="\n  ")
    print(f"{len(table)} configs compared, {differing} differ")
    return 1 if differing or not table else 0


if __name__ == "__main__":
    sys.exit(main())
