"""Local training: the batched trainer must do exactly what one-member-at-a-time training does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.learning import BatchedTrainer, Cohort, LocalRecipe, SequentialTrainer, budget_steps, make_trainer
from fedledger.models import MODELS, build_model, get_flat, num_params, set_flat


def _toy(n: int = 240, features: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, features, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    return X, y


COHORT = Cohort(np.array([0, 100, 130]), np.array([100, 30, 110]), np.array([7, 2, 9]))


@pytest.mark.parametrize(
    "recipe",
    [
        LocalRecipe(lr=0.1, batch_size=16),
        LocalRecipe(lr=0.05, batch_size=16, momentum=0.9, weight_decay=1e-3),
        LocalRecipe(lr=0.05, batch_size=50, proximal_mu=0.5),
        LocalRecipe(optimizer="adam", lr=0.01, batch_size=16),
    ],
    ids=["sgd", "momentum+wd", "fedprox", "adam"],
)
def test_batched_equals_sequential(recipe: LocalRecipe) -> None:
    X, y = _toy()
    model = build_model("mlp", (6,), 2, seed=1)
    start = get_flat(model)
    a = BatchedTrainer(model, recipe).train(start, X, y, COHORT, torch.Generator().manual_seed(5))
    b = SequentialTrainer(model, recipe).train(start, X, y, COHORT, torch.Generator().manual_seed(5))
    tolerance = 2e-3 if recipe.optimizer == "adam" else 1e-5  # Adam amplifies float rounding of tiny gradients
    assert torch.allclose(a.deltas, b.deltas, atol=tolerance)
    assert a.deltas.shape == (3, num_params(model))


def test_members_only_use_their_own_rows() -> None:
    X, y = _toy()
    model = build_model("logreg", (6,), 2, seed=0)
    start = get_flat(model)
    recipe = LocalRecipe(lr=0.1, batch_size=8)
    one = Cohort(np.array([100]), np.array([30]), np.array([4]))
    alone = BatchedTrainer(model, recipe).train(start, X, y, one, torch.Generator().manual_seed(2))
    X2 = X.clone()
    X2[:100] = 1e6  # poison rows that belong to another member
    again = BatchedTrainer(model, recipe).train(start, X2, y, one, torch.Generator().manual_seed(2))
    assert torch.equal(alone.deltas, again.deltas)


def test_training_reduces_loss() -> None:
    X, y = _toy()
    model = build_model("mlp", (6,), 2, seed=0)
    start = get_flat(model)
    recipe = LocalRecipe(lr=0.2, batch_size=16, local_epochs=5)
    counts = np.array([240])
    cohort = Cohort(np.array([0]), counts, recipe.full_steps(counts))
    res = BatchedTrainer(model, recipe).train(start, X, y, cohort, torch.Generator().manual_seed(0))
    set_flat(model, start + res.deltas[0])
    acc = float((model(X).argmax(1) == y).float().mean())
    assert acc > 0.9


def test_budgets_limit_steps_but_never_below_one() -> None:
    steps = budget_steps(np.array([10, 10, 3]), np.array([1.0, 0.25, 0.01]))
    assert steps.tolist() == [10, 3, 1]


def test_nova_normalizer_matches_closed_forms() -> None:
    tau = np.array([1, 5, 20])
    assert np.allclose(LocalRecipe().nova_normalizer(tau), tau)
    rho = 0.9
    expected = (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)
    assert np.allclose(LocalRecipe(momentum=rho).nova_normalizer(tau), expected)


def test_models_with_buffers_fall_back_to_sequential() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    assert isinstance(make_trainer(model, LocalRecipe()), SequentialTrainer)
    assert isinstance(make_trainer(build_model("mlp", (4,), 2), LocalRecipe()), BatchedTrainer)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_trains_batched(name: str) -> None:
    image = (1, 28, 28)
    square = (16,)  # the low-pass models take square images
    shapes = {"cnn": image, "tanh_cnn": image, "logreg-lowpass": square, "logreg-lowpass-nobias": square}
    shape = shapes.get(name, (12,))
    model = build_model(name, shape, 3, seed=0)
    X = torch.randn(20, *shape)
    y = torch.randint(0, 3, (20,))
    cohort = Cohort(np.array([0, 10]), np.array([10, 10]), np.array([2, 1]))
    res = BatchedTrainer(model, LocalRecipe(batch_size=4)).train(get_flat(model), X, y, cohort, torch.Generator())
    assert torch.isfinite(res.deltas).all() and res.deltas.abs().sum() > 0


def test_same_seed_same_initial_model() -> None:
    assert torch.equal(get_flat(build_model("cnn", (1, 28, 28), 10, seed=4)),
                       get_flat(build_model("cnn", (1, 28, 28), 10, seed=4)))
