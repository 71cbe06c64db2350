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
    # below the axes: inside them the legend hid the loss curve
    ax.legend(handles + h2, labels + l2, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8,
              frameon=False)
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
    if len(epochs) == 1:  # one epoch: a line of one point per member is a dot; bars show the scores
        ax.bar(range(len(series)), [_finite(v)[-1] for v in series], color="tab:blue")
        ax.set_xticks(range(len(series)))
        ax.set_xticklabels(labels if len(series) <= 20 else [str(i) for i in range(len(series))], rotation=60,
                           fontsize=7, ha="right")
        ax.set_ylabel(f"score after epoch {epochs[0]}")
        ax.grid(alpha=0.3, axis="y")
        return _png(fig)
    for values, label in zip(series, labels, strict=True):
        ax.plot(epochs, _finite(values), marker=".", label=label if len(series) <= 10 else None)
    _rounds_axis(ax, "reputation epoch")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    if len(series) <= 10:
        ax.legend(fontsize=7)
    return _png(fig)


STAGES = ("training", "privacy", "proofs", "secagg", "chain", "validation")


def stages(rounds: Sequence[int], seconds: Sequence[dict[str, float]]) -> bytes:
    """Wall seconds per round, stacked by stage (training, privacy, proofs, secagg, chain, validation)."""
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    x = list(rounds)
    width = 0.6 if len(x) <= 60 else 1.0
    bottom = [0.0] * len(x)
    for name in STAGES:
        values = [float(s.get(name, 0.0)) for s in seconds]
        if any(values):
            ax.bar(x, values, width, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    _rounds_axis(ax)
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=6, frameon=False)
    return _png(fig)
