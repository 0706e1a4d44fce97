"""Metric rows as a markdown table: what run reports, ``compare`` and the model card show."""
from __future__ import annotations

from typing import Sequence


def markdown_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A markdown table; floats with 4 decimals; ``mean ± std`` strings pass through."""
    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
