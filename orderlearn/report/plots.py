"""Plots of scores: predicted against true (one panel per scoring route or method), and the
PC of each method and route over folds (``orderlearn compare``)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from orderlearn.report.metrics import score_metrics


def scatter_plot(path: Path, truth: Sequence[float], series: dict[str, Sequence[float]], title: str = "") -> Path:
    """Predicted against true scores, one panel per method, identity line for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 4.2), squeeze=False)
    t = np.asarray(truth)
    everything = np.concatenate([t, *[np.asarray(v, dtype=np.float64) for v in series.values()]])
    everything = everything[np.isfinite(everything)]
    lo, hi = float(everything.min()) - 0.2, float(everything.max()) + 0.2
    for ax, (name, values) in zip(axes[0], series.items()):
        m = score_metrics(values, t)
        ax.scatter(t, values, s=6, alpha=0.5)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="true score", ylabel="predicted score",
               title=f"{name}\nPC {m['pc']:.3f}  MAE {m['mae']:.3f}  RMSE {m['rmse']:.3f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pc_plot(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """PC (mean ± std over folds) of each method, one marker per route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    # names wrapped at their hyphens: a blend is named after all its runs, too long for one tick
    labels = [textwrap.fill(m, 26) for m in methods]
    lines = max(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.9 * len(methods) + 1.5), 3.4 + 0.17 * lines))
    for offset, route, marker in ((-0.12, "direct", "o"), (0.12, "order-learned", "s")):
        xs, ys, es = [], [], []
        for i, method in enumerate(methods):
            for r in rows:
                if r["method"] == method and r["route"] == route:
                    xs.append(i + offset)
                    ys.append(r["pc_mean"])
                    es.append(0.0 if math.isnan(r["pc_std"]) else r["pc_std"])
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt=marker, capsize=3, label=route)
    ax.set_xticks(range(len(methods)), labels, fontsize=8)
    ax.set(ylabel="PC (Pearson)", title="PC per method and route")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
