"""A round trained and aggregated chunk by chunk: memory bounded by the chunk, not the cohort.

`train_and_aggregate` trains a cohort with the batched trainer's `train_chunks` and adds each
chunk's updates to the strategy's weighted sum (`Strategy.coefficients`, `weighted_sum`) as soon as
the chunk is done, then drops them. The new global model is the same, bit for bit, as
`strategy.step(global, RoundUpdates(trainer.train(...).deltas, ...))` over the stacked updates, and
the same for every chunk size.

Robust aggregators (coordinate median, trimmed mean, Multi-Krum) need every update at once; they
keep the materialized path (`coefficients()` is None for them, and `streams()` says so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fedledger.learning.local import BatchedTrainer, Cohort, LocalResult, SequentialTrainer
from fedledger.learning.strategies import Strategy, weighted_sum


class RoundSum:
    """The running `c @ deltas` of one round, fed chunk by chunk in member order."""

    def __init__(self, strategy: Strategy, num_samples: np.ndarray, normalizers: np.ndarray, dim: int) -> None:
        c = strategy.coefficients(num_samples, normalizers)
        if c is None:
            raise ValueError(f"strategy {strategy.name} needs every update at once; it cannot be streamed")
        self.strategy = strategy
        self.coefficients = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float64))
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.added = 0

    def add(self, first: int, deltas: torch.Tensor) -> None:
        if first != self.added:
            raise ValueError(f"chunks must come in member order: expected member {self.added}, got {first}")
        rows = len(deltas)
        if first + rows > len(self.coefficients):
            raise ValueError(f"{first + rows} updates for a round of {len(self.coefficients)} members")
        weighted_sum(self.coefficients[first : first + rows], deltas, self.total)
        self.added += rows

    def step(self, global_flat: torch.Tensor) -> torch.Tensor:
        """The new global model; every member's update must have been added."""
        if self.added != len(self.coefficients):
            raise ValueError(f"only {self.added} of {len(self.coefficients)} updates were added")
        return self.strategy.step_from_sum(global_flat, self.total.float())


@dataclass(frozen=True)
class StreamedRound:
    model: torch.Tensor  # the new global model
    losses: torch.Tensor  # float32 [M]: each member's mean training loss
    steps: np.ndarray  # int64 [M]


#: called on every chunk before it is summed: (first member's index in the cohort, the chunk's results) ->
#: the deltas to sum (checks may raise; a simulation's attacks may tamper with the rows)
ChunkHook = Callable[[int, LocalResult], torch.Tensor]


def streams(trainer: BatchedTrainer | SequentialTrainer, strategy: Strategy) -> bool:
    """Whether `train_and_aggregate` applies: a batched trainer and a strategy linear in one weighted sum."""
    return isinstance(trainer, BatchedTrainer) and not strategy.needs_individual_updates


def train_and_aggregate(
    trainer: BatchedTrainer | SequentialTrainer,
    strategy: Strategy,
    global_flat: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    cohort: Cohort,
    gen: torch.Generator,
    *,
    num_samples: np.ndarray | None = None,
    chunk: int | None = None,
    on_chunk: ChunkHook | None = None,
) -> StreamedRound:
    """Train `cohort` from `global_flat` and take the strategy's step, one chunk of members at a time.

    `num_samples` are the aggregation weights' sample counts (default: the cohort's counts); `chunk`
    is passed to `train_chunks` (None: one block per chunk).
    """
    if not isinstance(trainer, BatchedTrainer):
        raise ValueError("streamed rounds need the batched trainer (see streams())")
    samples = cohort.counts if num_samples is None else num_samples
    total = RoundSum(strategy, samples, trainer.recipe.nova_normalizer(cohort.steps), trainer.layout.dim)
    losses = torch.zeros(len(cohort.counts))
    for first, part in trainer.train_chunks(global_flat, X, y, cohort, gen, chunk=chunk):
        deltas = part.deltas if on_chunk is None else on_chunk(first, part)
        total.add(first, deltas)
        losses[first : first + len(part.losses)] = part.losses
        del part, deltas
    return StreamedRound(total.step(global_flat), losses, cohort.steps)


__all__ = ["ChunkHook", "RoundSum", "StreamedRound", "streams", "train_and_aggregate"]
