"""Plots of scores: predicted against true, one panel per scoring route or method."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

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
