"""Privacy accounting, all through dp-accounting's RDP accountant.

Record-level (DP-SGD): each step is a Poisson-sampled Gaussian (Abadi et al. 2016; Mironov,
Talwar, Zhang 2019 for the RDP of the sampled Gaussian). `MemberAccountant` keeps the run-length
history (noise multiplier, sample rate, steps) of one member and answers its epsilon at the task's
delta; `calibrate_noise` finds the smallest noise multiplier meeting a target.

Member-level (distributed discrete Gaussian, Kairouz, Liu, Steinke 2021, "The Distributed
Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation", Thm. 2): the sum of
n independent N_Z(0, s2) shares on an integer vector of L2 sensitivity D2 and L1 sensitivity D1
is rho-zCDP with sqrt(2 rho) = min( sqrt(D2^2/(n s2) + tau D1 / 2), D2/sqrt(n s2) + tau D1 ),
tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s2 k/(k+1)). Rounds compose as `ZCDpEvent`s; when sampling
is secret, the amplified bound treats the summed noise as the continuous Gaussian of the same
variance (the tau term is then negligible, which `DdpPlan` records).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import dp_accounting as dpa
from dp_accounting.rdp import RdpAccountant

from fedledger.core.errors import ConfigError, PrivacyBudgetExceeded

# dp-accounting's default RDP orders (1.1 .. 1024), so our figures are dp-accounting's figures
RDP_ORDERS: tuple[float, ...] = tuple(float(o) for o in RdpAccountant()._orders)


class _DropConvergenceNotes(logging.Filter):
    """dp-accounting logs (and then skips) fractional orders whose series does not converge."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in str(record.msg)


logging.getLogger("absl").addFilter(_DropConvergenceNotes())


def dpsgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> dpa.DpEvent:
    """The DpEvent of `steps` DP-SGD steps: Poisson sampling at `sample_rate`, Gaussian noise."""
    if noise_multiplier <= 0 or not 0 < sample_rate <= 1 or steps < 0:
        raise ConfigError("need noise_multiplier > 0, 0 < sample_rate <= 1, steps >= 0")
    inner: dpa.DpEvent = dpa.GaussianDpEvent(noise_multiplier)
    if sample_rate < 1:
        inner = dpa.PoissonSampledDpEvent(sample_rate, inner)
    return dpa.SelfComposedDpEvent(inner, steps)


def epsilon_of(event: dpa.DpEvent, delta: float) -> float:
    acc = RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(event)
    return float(acc.get_epsilon(delta))


@dataclass
class MemberAccountant:
    """One member's record-level privacy ledger: run-length history of (sigma, q, steps)."""

    history: list[tuple[float, float, int]] = field(default_factory=list)
    mechanism: str = "dpsgd-rdp"

    def event(self) -> dpa.DpEvent:
        return dpa.ComposedDpEvent([dpsgd_event(z, q, s) for z, q, s in self.history if s > 0])

    def epsilon(self, delta: float) -> float:
        if not self.history:
            return 0.0
        return epsilon_of(self.event(), delta)

    def epsilon_if(self, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
        """Epsilon after also spending `steps` more steps (a dry run: nothing is recorded)."""
        trial = MemberAccountant(history=[*self.history, (noise_multiplier, sample_rate, steps)])
        return trial.epsilon(delta)

    def can_spend(self, noise_multiplier: float, sample_rate: float, steps: int, budget: float,
                  delta: float) -> bool:
        return self.epsilon_if(noise_multiplier, sample_rate, steps, delta) <= budget

    def spend(self, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        if steps <= 0:
            return
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            z, q, s = self.history[-1]
            self.history[-1] = (z, q, s + steps)
        else:
            self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    @property
    def steps(self) -> int:
        return sum(s for _, _, s in self.history)

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "history": [list(h) for h in self.history]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> MemberAccountant:
        if state.get("mechanism") != "dpsgd-rdp":
            raise ConfigError(f"accountant state is for mechanism {state.get('mechanism')!r}, not dpsgd-rdp")
        return cls(history=[(float(z), float(q), int(s)) for z, q, s in state["history"]])


@functools.lru_cache(maxsize=256)  # pure; the simulation, the outlook and the baseline ask the same
def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                    *, tolerance: float = 1e-3) -> float:
    """Smallest noise multiplier (to `tolerance` relative) with epsilon <= target after `steps` steps."""
    if target_epsilon <= 0 or not 0 < delta < 1:
        raise ConfigError("target epsilon must be > 0 and delta in (0, 1)")
    def eps(z: float) -> float:
        return epsilon_of(dpsgd_event(z, sample_rate, steps), delta)

    lo, hi = 0.5, 1.0
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            raise ConfigError(f"epsilon {target_epsilon} is out of reach for {steps} steps at rate {sample_rate}")
    while eps(lo) <= target_epsilon:
        lo, hi = lo / 2, lo
        if lo < 1e-6:
            return hi
    while hi - lo > tolerance * hi:
        mid = math.sqrt(lo * hi)
        if eps(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi


# ---- member-level: distributed discrete Gaussian -------------------------------------------------


def ddg_tau(sigma_sq: float, n: int) -> float:
    """KLS21's tau: how far a sum of n discrete Gaussians is from one discrete Gaussian."""
    total = 0.0
    for k in range(1, n):
        term = math.exp(-2 * math.pi**2 * sigma_sq * k / (k + 1))
        total += term
        if term < 1e-300:
            break
    return 10.0 * total


def ddg_rho(l2: float, l1: float, sigma_sq: float, n: int) -> tuple[float, float]:
    """(rho, tau): zCDP of one round of the n-party distributed discrete Gaussian (KLS21 Thm. 2)."""
    tau = ddg_tau(sigma_sq, n)
    eps = min(math.sqrt(l2**2 / (n * sigma_sq) + 0.5 * tau * l1), l2 / math.sqrt(n * sigma_sq) + tau * l1)
    return 0.5 * eps**2, tau


def zcdp_epsilon(rho: float, rounds: int, delta: float) -> float:
    acc = RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(dpa.ZCDpEvent(rho), rounds)
    return float(acc.get_epsilon(delta))


def gaussian_rounds_epsilon(noise_multiplier: float, rounds: int, delta: float, sample_rate: float = 1.0) -> float:
    return epsilon_of(dpsgd_event(noise_multiplier, sample_rate, rounds), delta)


def calibrate_rounds(target_epsilon: float, delta: float, rounds: int, sample_rate: float = 1.0) -> float:
    """Noise multiplier (std / L2 sensitivity) of a Gaussian sum meeting the target over `rounds`."""
    return calibrate_noise(target_epsilon, delta, sample_rate, rounds, tolerance=1e-4)


def check_budget(epsilon: float, budget: float) -> None:
    if epsilon > budget * (1 + 1e-9):
        raise PrivacyBudgetExceeded(f"privacy budget exceeded: epsilon {epsilon:.4g} > budget {budget:.4g}")
