"""The predicted-vs-actual plot logged with every run."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def predicted_vs_actual(
    actual: np.ndarray, predicted: np.ndarray, path: Path, *, title: str, ylabel: str = "predicted"
) -> Path:
    """Scatter of the test rows against their actual progression.

    For a regression the diagonal marks a perfect prediction; for the classifier the y axis is a
    probability, so there is no diagonal to draw.
    """
    # Figure without pyplot: no global state, no GUI backend, safe in any process.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(actual, predicted, s=14, alpha=0.7)
    if ylabel == "predicted":
        low = float(min(np.min(actual), np.min(predicted)))
        high = float(max(np.max(actual), np.max(predicted)))
        ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
