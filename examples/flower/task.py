"""The Flower app's model and data: a small MLP on scikit-learn's digits, one shard per Flower node."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model factory (fedledger's `--model file.py:factory` form): the ledger's task spec names it."""
    return nn.Sequential(nn.Linear(input_shape[0], 32), nn.ReLU(), nn.Linear(32, num_classes))


def load_partition(partition_id: int, num_partitions: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(train, test) of one node: the digits, standardized, shuffled under a fixed seed, split evenly."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    cut = int(0.8 * len(part))
    tr, te = part[:cut], part[cut:]
    return ((torch.from_numpy(X[tr]), torch.from_numpy(y[tr])), (torch.from_numpy(X[te]), torch.from_numpy(y[te])))


def train(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], epochs: int, lr: float) -> float:
    X, y = data
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(y), 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[i:i + 16]), y[i:i + 16])
            loss.backward()
            opt.step()
    return float(loss.detach())


def test(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    X, y = data
    model.eval()
    with torch.no_grad():
        logits = model(X)
    return float(nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
