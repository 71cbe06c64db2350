"""Local training for many members at once.

`BatchedTrainer` trains a whole cohort in one batched computation: the members' parameters are
one `[members, d]` tensor, and each step computes every active member's minibatch gradient with
`torch.func.vmap(grad(...))` over a stateless `functional_call` of the model. One Python loop runs
over *steps*, never over members or parameters, so simulating 1,000 members costs about as much
as the same local work done centrally.

`SequentialTrainer` is the fallback for models with buffers (BatchNorm) that vmap cannot batch,
and the reference the batched trainer is tested against.

Members have compute budgets: a member with budget b in (0, 1] does ceil(b * full_steps) local
steps. The trainer reports each member's FedNova normalizer a_i (Wang et al., NeurIPS 2020,
"Tackling the Objective Inconsistency Problem in Heterogeneous Federated Optimization", eq. 7)
so that `FedNova` can undo the bias toward members that did more steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fedledger.core.vectors import ParamLayout


@dataclass(frozen=True, kw_only=True)
class LocalRecipe:
    """How every member trains locally; one recipe per task."""

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 32
    local_epochs: float = 1.0
    local_steps: int | None = None
    proximal_mu: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, not {self.optimizer!r}")

    def full_steps(self, num_samples: np.ndarray) -> np.ndarray:
        """Local steps a member with full compute budget takes in one round."""
        if self.local_steps is not None:
            return np.full(len(num_samples), self.local_steps, dtype=np.int64)
        return np.maximum(1, np.ceil(self.local_epochs * num_samples / self.batch_size)).astype(np.int64)

    def nova_normalizer(self, steps: np.ndarray) -> np.ndarray:
        """FedNova's a_i: the effective number of steps each member's update stands for."""
        tau = steps.astype(np.float64)
        if self.optimizer == "sgd" and self.momentum > 0:
            rho = self.momentum
            return (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)
        if self.optimizer == "sgd" and self.proximal_mu > 0:
            shrink = self.lr * self.proximal_mu
            return (1 - (1 - shrink) ** tau) / shrink
        return tau


@dataclass(frozen=True)
class Cohort:
    """The members one round trains: where their samples lie in the pooled arrays and their budgets."""

    offsets: np.ndarray  # int64 [M]: start of each member's samples in the pool
    counts: np.ndarray  # int64 [M]: number of training samples
    steps: np.ndarray  # int64 [M]: local steps each member takes this round

    def __post_init__(self) -> None:
        if not (len(self.offsets) == len(self.counts) == len(self.steps)):
            raise ValueError("offsets, counts and steps must have one entry per member")
        if len(self.counts) and self.counts.min() < 1:
            raise ValueError("every member of a cohort needs at least one training sample")


@dataclass(frozen=True)
class LocalResult:
    deltas: torch.Tensor  # float32 [M, d]: trained minus global parameters
    losses: torch.Tensor  # float32 [M]: mean training loss over each member's steps
    steps: np.ndarray  # int64 [M]
    normalizers: np.ndarray  # float64 [M]: FedNova a_i


def _positions(counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random order of each member's own samples, padded rows never chosen: int64 [M, max count]."""
    width = int(counts.max())
    keys = torch.rand((len(counts), width), generator=gen)
    keys[torch.arange(width)[None, :] >= counts[:, None]] = 2.0
    return torch.argsort(keys, dim=1)


class BatchedTrainer:
    """Trains a cohort of members together with vmap; see the module docstring."""

    def __init__(self, model: nn.Module, recipe: LocalRecipe) -> None:
        self.model = model
        self.recipe = recipe
        self.layout = ParamLayout.of(dict(model.named_parameters()))
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self._step_grad = vmap(grad_and_value(self._loss), in_dims=(0, 0, 0, 0))

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """vmap needs a stateless forward pass: no buffers that training would update."""
        return not any(True for _ in model.buffers())

    def _loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        params = self.layout.unflatten(flat)
        logits = functional_call(self.model, (params, self.buffers), (x,))
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return (per_sample * w).sum() / w.sum()

    def train(
        self,
        global_flat: torch.Tensor,
        X: torch.Tensor,
        y: torch.Tensor,
        cohort: Cohort,
        gen: torch.Generator,
    ) -> LocalResult:
        r = self.recipe
        members = len(cohort.counts)
        counts = torch.as_tensor(cohort.counts)
        offsets = torch.as_tensor(cohort.offsets)
        steps = torch.as_tensor(cohort.steps)
        order = _positions(counts, gen)
        batch = r.batch_size
        in_batch = torch.arange(batch)
        weights_all = (in_batch[None, :] < counts[:, None]).float()  # members with fewer samples than a batch

        start = global_flat.detach().float()
        w = start.expand(members, -1).clone()
        state = _OptimizerState(r, w.shape)
        loss_sum = torch.zeros(members)
        for k in range(int(steps.max())):
            active = torch.nonzero(steps > k).squeeze(1)
            pos = (k * batch + in_batch[None, :]) % counts[active, None]
            idx = offsets[active, None] + torch.gather(order[active], 1, pos)
            grads, losses = self._step_grad(w[active], X[idx], y[idx], weights_all[active])
            if r.weight_decay:
                grads = grads + r.weight_decay * w[active]
            if r.proximal_mu:
                grads = grads + r.proximal_mu * (w[active] - start)
            w[active] -= state.direction(active, grads, k)
            loss_sum[active] += losses.detach()
        mean_loss = loss_sum / steps.float()
        return LocalResult(w - start, mean_loss, cohort.steps, r.nova_normalizer(cohort.steps))


class _OptimizerState:
    """SGD (with momentum) or Adam state for stacked members, updated only on the active rows."""

    def __init__(self, recipe: LocalRecipe, shape: torch.Size) -> None:
        self.r = recipe
        self.m = torch.zeros(shape) if recipe.optimizer == "adam" or recipe.momentum else None
        self.v = torch.zeros(shape) if recipe.optimizer == "adam" else None

    def direction(self, rows: torch.Tensor, g: torch.Tensor, k: int) -> torch.Tensor:
        r = self.r
        if r.optimizer == "sgd":
            if self.m is None:
                return r.lr * g
            self.m[rows] = r.momentum * self.m[rows] + g
            return r.lr * self.m[rows]
        assert self.m is not None and self.v is not None
        b1, b2 = r.adam_betas
        self.m[rows] = b1 * self.m[rows] + (1 - b1) * g
        self.v[rows] = b2 * self.v[rows] + (1 - b2) * g * g
        t = k + 1  # every active member has taken exactly k + 1 steps
        m_hat = self.m[rows] / (1 - b1**t)
        v_hat = self.v[rows] / (1 - b2**t)
        return r.lr * m_hat / (v_hat.sqrt() + r.adam_eps)


class SequentialTrainer:
    """One member at a time with a torch optimizer: for models vmap cannot batch."""

    def __init__(self, model: nn.Module, recipe: LocalRecipe) -> None:
        self.model = model
        self.recipe = recipe

    def _optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        r = self.recipe
        if r.optimizer == "adam":
            return torch.optim.Adam(params, lr=r.lr, betas=r.adam_betas, eps=r.adam_eps, weight_decay=r.weight_decay)
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)

    def train(
        self,
        global_flat: torch.Tensor,
        X: torch.Tensor,
        y: torch.Tensor,
        cohort: Cohort,
        gen: torch.Generator,
    ) -> LocalResult:
        r = self.recipe
        counts = torch.as_tensor(cohort.counts)
        order = _positions(counts, gen)
        start = global_flat.detach().float()
        buffers0 = [b.detach().clone() for b in self.model.buffers()]
        deltas, losses = [], []
        for i in range(len(counts)):
            torch.nn.utils.vector_to_parameters(start.clone(), self.model.parameters())
            for b, b0 in zip(self.model.buffers(), buffers0, strict=True):
                b.copy_(b0)
            opt = self._optimizer(list(self.model.parameters()))
            total = 0.0
            n = int(counts[i])
            for k in range(int(cohort.steps[i])):
                pos = (k * r.batch_size + torch.arange(min(r.batch_size, n))) % n
                idx = int(cohort.offsets[i]) + order[i, pos]
                opt.zero_grad()
                loss = F.cross_entropy(self.model(X[idx]), y[idx])
                if r.proximal_mu:
                    flat = torch.nn.utils.parameters_to_vector(self.model.parameters())
                    loss = loss + 0.5 * r.proximal_mu * (flat - start).pow(2).sum()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            flat = torch.nn.utils.parameters_to_vector(self.model.parameters()).detach()
            deltas.append(flat - start)
            losses.append(total / max(1, int(cohort.steps[i])))
        return LocalResult(
            torch.stack(deltas), torch.tensor(losses), cohort.steps, r.nova_normalizer(cohort.steps)
        )


def make_trainer(model: nn.Module, recipe: LocalRecipe, *, batched: bool = True) -> BatchedTrainer | SequentialTrainer:
    if batched and BatchedTrainer.supports(model):
        return BatchedTrainer(model, recipe)
    return SequentialTrainer(model, recipe)


def budget_steps(full_steps: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Steps a member affords with compute budget in (0, 1]: at least one."""
    return np.maximum(1, np.ceil(full_steps * budgets - 1e-9)).astype(np.int64)


def evaluate(
    model: nn.Module, flat: torch.Tensor, X: torch.Tensor, y: torch.Tensor, batch: int = 4096
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model with parameters `flat` on (X, y)."""
    layout = ParamLayout.of(dict(model.named_parameters()))
    params = layout.unflatten(flat.float())
    buffers = dict(model.named_buffers())
    correct, loss = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            logits = functional_call(model, (params, buffers), (X[s : s + batch],))
            loss += float(F.cross_entropy(logits, y[s : s + batch], reduction="sum"))
            correct += int((logits.argmax(1) == y[s : s + batch]).sum())
    n = max(1, len(y))
    return correct / n, loss / n


def probabilities(model: nn.Module, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    layout = ParamLayout.of(dict(model.named_parameters()))
    with torch.no_grad():
        logits = functional_call(model, (layout.unflatten(flat.float()), dict(model.named_buffers())), (X,))
    return torch.softmax(logits, dim=1)


__all__ = [
    "BatchedTrainer",
    "Cohort",
    "LocalRecipe",
    "LocalResult",
    "SequentialTrainer",
    "budget_steps",
    "evaluate",
    "make_trainer",
    "probabilities",
]
