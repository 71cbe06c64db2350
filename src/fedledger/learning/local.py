"""Local training for many members at once.

`BatchedTrainer` trains a whole cohort in one batched computation: the members' parameters are
one `[members, d]` tensor, and each step computes every active member's minibatch gradient with
`torch.func.vmap(grad(...))` over a stateless `functional_call` of the model. One Python loop runs
over *steps*, never over members or parameters, so simulating 1,000 members costs about as much
as the same local work done centrally.

Memory is bounded by a block, not the cohort. Each step runs one vmap call per *block* of at most
`block` members (by default as many as fit in `block_bytes` of working memory), and `train_chunks`
trains the cohort in consecutive *chunks* of whole blocks, yielding each chunk's results as soon as
they are ready for callers that reduce them on the fly (`fedledger.learning.stream`). The chunk size
never changes a bit of any member's update: the random sample orders are drawn from the generator in
member order (torch's CPU generator fills a tensor serially, so drawing [a, w] then [b, w] gives the
rows of one [a + b, w] draw), and every kernel call sees the same block of members with the same
inputs. The block size may change the last bits (BLAS picks its kernels and thread split by shape);
a cohort that fits in one block is computed exactly as by one vmap call over all of it.

A minibatch is `min(batch_size, largest count in the cohort)` rows wide: when every member has fewer
samples than a batch, the rows past the largest count would all have weight zero.

`SequentialTrainer` is the fallback for models with buffers (BatchNorm) that vmap cannot batch,
and the reference the batched trainer is tested against.

Members have compute budgets: a member with budget b in (0, 1] does ceil(b * full_steps) local
steps. The trainer reports each member's FedNova normalizer a_i (Wang et al., NeurIPS 2020,
"Tackling the Objective Inconsistency Problem in Heterogeneous Federated Optimization", eq. 7)
so that `FedNova` can undo the bias toward members that did more steps.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def _positions(counts: torch.Tensor, gen: torch.Generator, width: int | None = None) -> torch.Tensor:
    """One random order of each member's own samples, padded rows never chosen: int64 [M, width].

    `width` (default: the largest count) must be the same for every chunk of a cohort, so that the
    chunks consume the generator exactly as the whole cohort would.
    """
    width = int(counts.max()) if width is None else width
    keys = torch.rand((len(counts), width), generator=gen)
    keys[torch.arange(width)[None, :] >= counts[:, None]] = 2.0
    return torch.argsort(keys, dim=1)


#: working memory one block of the batched trainer may use (parameters, optimizer state, gradients, inputs);
#: `--train-memory-mib` sets it. Chosen by measurement (15,000 Fashion-MNIST logistic-regression members, one
#: round, 2 shared cores): 64 / 128 / 256 / 512 / 1,024 MiB gave 4.0-5.7 / 2.3-2.7 / 2.1-2.2 / 2.9-3.0 /
#: 2.9 CPU s per round and 915 / 971 / 1,102 / 1,035 / 1,257 MiB peak: smaller blocks pay per-call overhead,
#: larger ones leave the cache
DEFAULT_BLOCK_BYTES = 256 * 2**20


class BatchedTrainer:
    """Trains a cohort of members together with vmap, block by block; see the module docstring.

    `block`: members per vmap call (None: as many as fit in `block_bytes`). The block fixes the
    floating-point rounding (one batched kernel call of that shape per block and step); how many blocks
    a chunk of `train_chunks` holds never changes a bit.
    """

    def __init__(
        self, model: nn.Module, recipe: LocalRecipe, *, block: int | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        if block is not None and block < 1:
            raise ValueError(f"a block holds at least one member, not {block}")
        self.model = model
        self.recipe = recipe
        self.block = block
        self.block_bytes = block_bytes
        self.layout = ParamLayout.of(dict(model.named_parameters()))
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self._step_grad = vmap(grad_and_value(self._loss), in_dims=(0, 0, 0, 0))

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """vmap needs a stateless forward pass: no buffers that training would update."""
        return not any(True for _ in model.buffers())

    def block_members(self, width: int, features: int) -> int:
        """Members per vmap call: `block`, or an estimate of how many fit in `block_bytes`.

        Per member: parameters, two optimizer moments, gradients and about four temporaries of d
        floats, and the gathered minibatch with two copies inside the vmapped forward and backward.
        It depends on the model and the cohort's minibatch width, never on the chunk size.
        """
        if self.block is not None:
            return self.block
        per_member = 4 * (8 * self.layout.dim + 3 * width * features)
        return max(1, self.block_bytes // per_member)

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
        *,
        keys_width: int | None = None,
    ) -> LocalResult:
        """The whole cohort's results at once (memory grows with the cohort: deltas [M, d]).

        `keys_width` (None: the cohort's largest count) is the width of each member's row of the sample-order
        draw and caps the minibatch width: a member training alone (a node) passes its whole cohort's, with
        `gen` advanced past the rows of the members before it, to get the bits the whole cohort's call gives it."""
        parts = [part for _, part in self.train_chunks(global_flat, X, y, cohort, gen, keys_width=keys_width)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return LocalResult(torch.zeros(0, self.layout.dim), torch.zeros(0), cohort.steps,
                               self.recipe.nova_normalizer(cohort.steps))
        return LocalResult(torch.cat([p.deltas for p in parts]), torch.cat([p.losses for p in parts]),
                           cohort.steps, self.recipe.nova_normalizer(cohort.steps))

    def train_chunks(
        self,
        global_flat: torch.Tensor,
        X: torch.Tensor,
        y: torch.Tensor,
        cohort: Cohort,
        gen: torch.Generator,
        *,
        chunk: int | None = None,
        keys_width: int | None = None,
    ) -> Iterator[tuple[int, LocalResult]]:
        """(first member's index in the cohort, results of the members from there), chunk after chunk in
        member order. A chunk is `chunk` members rounded up to whole blocks (None: one block); the caller
        may drop a chunk's tensors once it has used them, so memory is bounded by the chunk."""
        members = len(cohort.counts)
        if members == 0:
            return
        counts = torch.as_tensor(cohort.counts)
        keys_width = int(counts.max()) if keys_width is None else keys_width
        width = min(self.recipe.batch_size, keys_width)
        block = self.block_members(width, int(np.prod(X.shape[1:])))
        size = block if chunk is None else block * max(1, -(-chunk // block))
        start = global_flat.detach().float()
        for lo in range(0, members, size):
            hi = min(members, lo + size)
            order = _positions(counts[lo:hi], gen, keys_width)
            part = Cohort(cohort.offsets[lo:hi], cohort.counts[lo:hi], cohort.steps[lo:hi])
            yield lo, self._train_chunk(start, X, y, part, order, width, block)

    def _train_chunk(
        self, start: torch.Tensor, X: torch.Tensor, y: torch.Tensor, cohort: Cohort, order: torch.Tensor,
        width: int, block: int,
    ) -> LocalResult:
        """Every step of the chunk's members, one vmap call per block of `block` members and step; chunks
        start at multiples of the block, so each call sees the same members whatever the chunk size."""
        r = self.recipe
        members = len(cohort.counts)
        counts = torch.as_tensor(cohort.counts)
        offsets = torch.as_tensor(cohort.offsets)
        steps = torch.as_tensor(cohort.steps)
        batch = r.batch_size
        in_batch = torch.arange(width)
        weights_all = (in_batch[None, :] < counts[:, None]).float()  # members with fewer samples than a batch

        w = start.expand(members, -1).clone()
        state = _OptimizerState(r, w.shape)
        loss_sum = torch.zeros(members)
        everyone = torch.arange(members)
        for k in range(int(steps.max())):
            for lo in range(0, members, block):
                hi = min(members, lo + block)
                active = torch.nonzero(steps[lo:hi] > k).squeeze(1)
                if len(active) == 0:
                    continue
                # every member of the block active (the common case): a slice, not a gathered copy
                rows: torch.Tensor | slice = slice(lo, hi) if len(active) == hi - lo else active + lo
                # step k uses the member's samples k * batch_size, ... in its random order, wrapping around
                pos = (k * batch + in_batch[None, :]) % counts[rows, None]
                idx = offsets[rows, None] + torch.gather(order[rows], 1, pos)
                grads, losses = self._step_grad(w[rows], X[idx], y[idx], weights_all[rows])
                if r.weight_decay:
                    grads = grads + r.weight_decay * w[rows]
                if r.proximal_mu:
                    grads = grads + r.proximal_mu * (w[rows] - start)
                w[rows] -= state.direction(everyone[rows], grads, k)
                loss_sum[rows] += losses.detach()
                del grads, losses, idx
        mean_loss = loss_sum / steps.float()
        return LocalResult(w.sub_(start), mean_loss, cohort.steps, r.nova_normalizer(cohort.steps))


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
                return g.mul_(r.lr)  # g is this step's own gradient tensor: scaled in place, the same bits
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
        *,
        keys_width: int | None = None,
    ) -> LocalResult:
        r = self.recipe
        counts = torch.as_tensor(cohort.counts)
        order = _positions(counts, gen, keys_width)
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


def make_trainer(
    model: nn.Module, recipe: LocalRecipe, *, batched: bool = True, block: int | None = None,
    block_bytes: int | None = None,
) -> BatchedTrainer | SequentialTrainer:
    """The batched trainer when the model allows it; `block_bytes` None: DEFAULT_BLOCK_BYTES."""
    if batched and BatchedTrainer.supports(model):
        return BatchedTrainer(model, recipe, block=block,
                              block_bytes=DEFAULT_BLOCK_BYTES if block_bytes is None else block_bytes)
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
    "DEFAULT_BLOCK_BYTES",
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
