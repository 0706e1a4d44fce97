"""The picture of a learned AdaShare policy: which residual block each task executes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def policy_plot(path: Path, p_execute: torch.Tensor, tasks: Sequence[str], layers: Sequence[int]) -> Path:
    """A tasks × blocks heat map of P(execute), each cell labelled with its probability and the
    decision the evaluation runs ("run" or "skip"); blocks named stage.block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = p_execute.detach().float().cpu().numpy()
    names = [f"{stage + 1}.{block + 1}" for stage, count in enumerate(layers) for block in range(count)]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1.5), 0.9 * len(tasks) + 1.4))
    image = ax.imshow(probs, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for t in range(probs.shape[0]):
        for b in range(probs.shape[1]):
            mark = "run" if probs[t, b] >= 0.5 else "skip"
            ax.text(b, t, f"{probs[t, b]:.2f}\n{mark}", ha="center", va="center", fontsize=8,
                    color="black" if probs[t, b] > 0.6 else "white")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(tasks)), list(tasks))
    ax.set(xlabel="residual block (stage.block)", title="learned sharing policy: P(execute)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
