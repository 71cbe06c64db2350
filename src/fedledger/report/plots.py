"""Static plots written next to results.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def accuracy_plot(
    path: Path,
    rounds: Sequence[int],
    accuracy: Sequence[float],
    loss: Sequence[float],
    *,
    centralized: float | None = None,
    title: str = "",
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(rounds, accuracy, marker="o", markersize=3, label="federated (global test set)")
    if centralized is not None:
        ax.axhline(centralized, color="grey", linestyle="--", label=f"centralized, same budget ({centralized:.3f})")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(rounds, loss, color="tab:red", alpha=0.5, label="test loss")
    twin.set_ylabel("loss", color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
