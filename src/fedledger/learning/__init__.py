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
from fedledger.learning.strategies import STRATEGIES, RoundUpdates, Strategy, build_strategy

__all__ = [
    "STRATEGIES",
    "BatchedTrainer",
    "Cohort",
    "LocalRecipe",
    "LocalResult",
    "RoundUpdates",
    "SequentialTrainer",
    "Strategy",
    "budget_steps",
    "build_strategy",
    "evaluate",
    "make_trainer",
]
