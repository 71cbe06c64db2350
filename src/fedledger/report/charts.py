"""Charts for the HTML report, rendered in memory as PNG bytes (the page embeds them as data: URIs).

No text from results.json goes into a chart: labels are fixed strings and numbers, so a hostile
config value can neither break matplotlib's mathtext parser nor reach the page through an image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_SIZE = (7.0, 3.4)
_DPI = 100


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _rounds_axis(ax: Axes, label: str = "round") -> None:
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def accuracy_loss(
    rounds: Sequence[int],
    accuracy: Sequence[float],
    loss: Sequence[float],
    *,
    centralized: float | None = None,
) -> bytes:
    """Accuracy on the global test set (left axis) and test loss (right axis) per round."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    ax.plot(rounds, _finite(accuracy), marker="o", markersize=3, label="accuracy (global test set)")
    if centralized is not None:
        ax.axhline(centralized, color="grey", linestyle="--", label=f"centralized, same budget ({centralized:.3f})")
    _rounds_axis(ax)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(rounds, _finite(loss), color="tab:red", alpha=0.6, label="test loss")
    twin.set_ylabel("loss", color="tab:red")
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="center right", fontsize=8)
    return _png(fig)


def epsilon(rounds: Sequence[int], spent: Sequence[float | None], *, budget: float | None = None) -> bytes:
    """Privacy spent so far (epsilon at the task's delta) after each round, against the budget."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    ax.plot(rounds, _finite(spent), marker="o", markersize=3, color="tab:purple", label="epsilon spent")
    if budget is not None:
        ax.axhline(budget, color="tab:red", linestyle="--", label=f"budget ({budget:g})")
    _rounds_axis(ax)
    ax.set_ylabel("epsilon")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def participation(
    rounds: Sequence[int], participants: Sequence[int], survivors: Sequence[int], dropped: Sequence[int]
) -> bytes:
    """Per round: members who took part and those who dropped (stacked: the cohort), survivors as points."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    x = list(rounds)
    width = 0.6 if len(x) <= 60 else 1.0
    ax.bar(x, participants, width, label="took part")
    ax.bar(x, dropped, width, bottom=participants, label="dropped out", color="tab:red")
    ax.plot(x, survivors, "k_", markersize=max(2.0, min(14.0, 400 / max(1, len(x)))), markeredgewidth=2,
            linestyle="none", label="in the aggregate")
    _rounds_axis(ax)
    ax.set_ylabel("members")
    top = max((p + d for p, d in zip(participants, dropped, strict=True)), default=1)
    ax.set_ylim(0, top * 1.3 + 0.5)  # room for the legend above the bars
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    return _png(fig)


def traffic(rounds: Sequence[int], bytes_up: Sequence[int], bytes_down: Sequence[int]) -> bytes:
    """Bytes sent to and from the aggregator per round, in MB."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    ax.plot(rounds, [b / 1e6 for b in bytes_up], marker="o", markersize=3, label="up (members to aggregator)")
    ax.plot(rounds, [b / 1e6 for b in bytes_down], marker="s", markersize=3, label="down (model to members)")
    _rounds_axis(ax)
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def reputation(epochs: Sequence[int], series: Sequence[Sequence[float]], labels: Sequence[str]) -> bytes:
    """Reputation score per member over reputation epochs (members drawn as unlabelled lines past 10).

    `labels` must be report-made strings (role and pool index), never text from results.json.
    """
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    for values, label in zip(series, labels, strict=True):
        ax.plot(epochs, _finite(values), marker=".", label=label if len(series) <= 10 else None)
    _rounds_axis(ax, "reputation epoch")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    if len(series) <= 10:
        ax.legend(fontsize=7)
    return _png(fig)
