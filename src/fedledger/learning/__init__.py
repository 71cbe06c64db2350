"""Layer 2: local training, evaluation, server strategies, the centralized baseline."""

from fedledger.learning.local import (
    BatchedTrainer,
    Cohort,
    LocalRecipe,
    LocalResult,
    SequentialTrainer,
    budget_steps,
    evaluate,
    make_trainer,
)
from fedledger.learning.strategies import STRATEGIES, RoundUpdates, Strategy, build_strategy, weighted_sum
from fedledger.learning.stream import RoundSum, StreamedRound, streams, train_and_aggregate

__all__ = [
    "STRATEGIES",
    "BatchedTrainer",
    "Cohort",
    "LocalRecipe",
    "LocalResult",
    "RoundSum",
    "RoundUpdates",
    "SequentialTrainer",
    "Strategy",
    "StreamedRound",
    "budget_steps",
    "build_strategy",
    "evaluate",
    "make_trainer",
    "streams",
    "train_and_aggregate",
    "weighted_sum",
]
