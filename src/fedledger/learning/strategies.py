"""Server-side aggregation: how a round's member updates become the next global model.

Every strategy works on the stacked updates `deltas [M, d]` (trained minus global) with member
weights, is fully vectorized, and keeps its own state (server optimizer moments) so that it can be
checkpointed with `state_dict()` / `load_state_dict()`.

References:
- FedAvg: McMahan et al., AISTATS 2017.
- FedAdagrad, FedAdam, FedYogi: Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Alg. 2
  (defaults beta1 = 0.9, beta2 = 0.99, tau = 1e-3).
- FedNova: Wang et al., NeurIPS 2020.
- Coordinate median and trimmed mean: Yin et al., ICML 2018. Multi-Krum: Blanchard et al., NeurIPS 2017.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fedledger.core.errors import ConfigError


@dataclass(frozen=True)
class RoundUpdates:
    deltas: torch.Tensor  # [M, d]
    num_samples: np.ndarray  # [M]
    normalizers: np.ndarray  # [M] FedNova a_i (local steps for plain SGD)

    @property
    def weights(self) -> torch.Tensor:
        n = torch.as_tensor(self.num_samples, dtype=torch.float64)
        return (n / n.sum()).float()


class Strategy:
    """Turns one round's updates into a global step; subclasses override `direction`."""

    name = "base"
    #: robust aggregators assume updates are visible to the server (no secure aggregation)
    needs_individual_updates = False

    def __init__(self, server_lr: float = 1.0) -> None:
        self.server_lr = server_lr

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        return updates.weights @ updates.deltas

    def step(self, global_flat: torch.Tensor, updates: RoundUpdates) -> torch.Tensor:
        return global_flat + self.server_lr * self.direction(updates)

    def linear_weights(self, updates: RoundUpdates) -> np.ndarray | None:
        """Weights w with `step(x) == x + w @ deltas`, for strategies linear in the updates; else None.

        Validators use them to recompute a round from its evidence.
        """
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        del state


class FedAvg(Strategy):
    name = "fedavg"

    def linear_weights(self, updates: RoundUpdates) -> np.ndarray | None:
        return self.server_lr * updates.weights.double().numpy()


class FedNova(Strategy):
    """Normalized averaging: each update divided by its a_i, rescaled by the effective tau."""

    name = "fednova"

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        a = torch.as_tensor(updates.normalizers, dtype=torch.float32)
        p = updates.weights
        tau_eff = float(p @ a)
        return tau_eff * ((p / a) @ updates.deltas)

    def linear_weights(self, updates: RoundUpdates) -> np.ndarray | None:
        a = torch.as_tensor(updates.normalizers, dtype=torch.float32)
        p = updates.weights
        return self.server_lr * (float(p @ a) * (p / a)).double().numpy()


@dataclass
class _Moments:
    m: torch.Tensor | None = None
    v: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class _Adaptive(Strategy):
    """Reddi et al. (2021): the averaged update is a pseudo-gradient for a server-side adaptive optimizer."""

    def __init__(self, server_lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(server_lr)
        self.beta1, self.beta2, self.tau = beta1, beta2, tau
        self._s = _Moments()

    def _second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        delta = updates.weights @ updates.deltas
        if self._s.m is None or self._s.v is None:
            self._s.m = torch.zeros_like(delta)
            self._s.v = torch.full_like(delta, self.tau**2)
        self._s.m = self.beta1 * self._s.m + (1 - self.beta1) * delta
        self._s.v = self._second_moment(self._s.v, delta * delta)
        return self._s.m / (self._s.v.sqrt() + self.tau)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self._s.m is None or self._s.v is None else {"m": self._s.m, "v": self._s.v}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._s = _Moments(state.get("m"), state.get("v"))


class FedAdagrad(_Adaptive):
    name = "fedadagrad"

    def _second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return v + d2


class FedAdam(_Adaptive):
    name = "fedadam"

    def _second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1 - self.beta2) * d2


class FedYogi(_Adaptive):
    name = "fedyogi"

    def _second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return v - (1 - self.beta2) * d2 * torch.sign(v - d2)


class CoordinateMedian(Strategy):
    name = "median"
    needs_individual_updates = True

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        return updates.deltas.median(dim=0).values


class TrimmedMean(Strategy):
    """Drops the `trim` fraction of largest and smallest values per coordinate, then averages."""

    name = "trimmed_mean"
    needs_individual_updates = True

    def __init__(self, server_lr: float = 1.0, trim: float = 0.1) -> None:
        super().__init__(server_lr)
        if not 0 <= trim < 0.5:
            raise ConfigError(f"trim fraction must be in [0, 0.5), not {trim}")
        self.trim = trim

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        m = updates.deltas.shape[0]
        k = int(self.trim * m)
        if m - 2 * k < 1:
            raise ConfigError(f"trimmed mean with trim {self.trim} leaves no update out of {m}")
        ordered = updates.deltas.sort(dim=0).values
        return ordered[k : m - k].mean(dim=0)


class MultiKrum(Strategy):
    """Averages the m updates with the smallest Krum scores (sum of squared distances to the n-f-2 nearest)."""

    name = "multikrum"
    needs_individual_updates = True

    def __init__(self, server_lr: float = 1.0, byzantine: int = 1, keep: int | None = None) -> None:
        super().__init__(server_lr)
        self.byzantine = byzantine
        self.keep = keep
        self.last_selected: torch.Tensor | None = None

    def direction(self, updates: RoundUpdates) -> torch.Tensor:
        n = updates.deltas.shape[0]
        f = self.byzantine
        neighbours = n - f - 2
        if neighbours < 1:
            raise ConfigError(f"Multi-Krum needs more than f + 2 = {f + 2} updates per round, got {n}")
        d2 = torch.cdist(updates.deltas, updates.deltas).pow(2)
        d2.fill_diagonal_(float("inf"))
        scores = d2.topk(neighbours, dim=1, largest=False).values.sum(dim=1)
        keep = self.keep if self.keep is not None else n - f
        self.last_selected = scores.topk(keep, largest=False).indices
        return updates.deltas[self.last_selected].mean(dim=0)


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s
    for s in (FedAvg, FedNova, FedAdam, FedYogi, FedAdagrad, CoordinateMedian, TrimmedMean, MultiKrum)
}


def build_strategy(
    name: str, *, server_lr: float | None = None, trim: float = 0.1, byzantine: int = 1
) -> Strategy:
    """A strategy by name; `server_lr=None` keeps the strategy's own default step size."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    strategy: Strategy
    if cls is TrimmedMean:
        strategy = TrimmedMean(trim=trim)
    elif cls is MultiKrum:
        strategy = MultiKrum(byzantine=byzantine)
    else:
        strategy = cls()
    if server_lr is not None:
        strategy.server_lr = server_lr
    return strategy
