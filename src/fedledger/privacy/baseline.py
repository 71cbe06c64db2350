"""Central DP baselines: what a trusted curator holding everything would reach under the same guarantee.

A federated DP result means little alone (issue 17, item 1): next to the non-private centralized model it
mixes the cost of privacy with the cost of federation. These baselines train centrally under the *same*
privacy unit, epsilon, delta, accountant (dp-accounting RDP) and number of noisy steps or releases:

* record level, `central_dpsgd`: DP-SGD (Abadi et al. 2016) on the pooled records with Opacus, through the
  same `train_member_dpsgd` and `MemberAccountant` as every member. Batch = the members' batch size times the
  members in a round (so one central step sees about what one federated step of all members sees), the same
  epochs per round, the same rounds: the same count of noisy steps as a member that takes part in every round.
* member level, `central_member_dp`: DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018) with the whole population
  every round and a trusted server: every member trains with the federation's recipe, clips its update to C,
  the server adds one continuous Gaussian N(0, (z C)^2) to the sum, with z calibrated by the same accountant
  (`calibrate_rounds`: `GaussianDpEvent` composed over the same releases, no amplification claimed, as the
  federation claims none). It is what distributed DP approaches when discretization, modular wrapping and
  dropouts cost nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fedledger.core.errors import TrainingError
from fedledger.learning import Cohort, LocalRecipe, RoundUpdates, Strategy, evaluate, make_trainer
from fedledger.models import get_flat, set_flat
from fedledger.privacy.accounting import MemberAccountant, calibrate_noise, calibrate_rounds, gaussian_rounds_epsilon
from fedledger.privacy.dpsgd import dpsgd_schedule, train_member_dpsgd
from fedledger.privacy.ftrl import CorrelatedNoise, Factorization, calibrate_mf, every_release, mf_epsilon


@dataclass(frozen=True)
class CentralDpResult:
    accuracy: float
    epsilon: float  # spent, by the accountant, at `delta`
    delta: float
    unit: str  # "record" | "member"
    mechanism: str
    noise_multiplier: float
    steps: int  # DP-SGD steps (record) or Gaussian releases (member)
    sample_rate: float
    batch_size: int | None = None
    members: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def central_dpsgd(model: nn.Module, X: torch.Tensor, y: torch.Tensor, test_X: torch.Tensor, test_y: torch.Tensor,
                  *, members_per_round: int, batch_size: int, epochs: float, rounds: int, lr: float, clip_norm: float,
                  epsilon: float, delta: float, generator: torch.Generator, momentum: float = 0.0) -> CentralDpResult:
    """Record-level central DP-SGD on the pooled records (module docstring); `model` is not changed."""
    central_batch = batch_size * max(1, members_per_round)
    q, steps_per_round = dpsgd_schedule(len(y), central_batch, epochs)
    steps = steps_per_round * rounds
    sigma = calibrate_noise(epsilon, delta, q, steps)
    accountant = MemberAccountant()
    batches = round(1 / q)
    trained, spent = train_member_dpsgd(  # (steps - 0.5) / batches epochs: exactly `steps` steps
        model, X, y, epochs=(steps - 0.5) / batches, batch_size=central_batch, lr=lr, noise_multiplier=sigma,
        max_grad_norm=clip_norm, generator=generator, accountant_state=accountant, delta=delta,
        epsilon_budget=epsilon, momentum=momentum)
    if accountant.steps != steps:
        raise TrainingError(f"central DP-SGD took {accountant.steps} steps, planned {steps}")
    accuracy = evaluate(trained, get_flat(trained), test_X, test_y)[0]
    return CentralDpResult(accuracy=accuracy, epsilon=spent, delta=delta, unit="record",
                           mechanism="central DP-SGD on the pooled records (Opacus, Poisson sampling)",
                           noise_multiplier=sigma, steps=steps, sample_rate=q, batch_size=central_batch)


def clip_rows(deltas: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """Each row scaled to L2 norm at most `clip_norm` (vectorized)."""
    norms = deltas.norm(dim=1, keepdim=True)
    return deltas * torch.clamp(clip_norm / norms.clamp_min(1e-12), max=1.0)


def central_member_dp(model: nn.Module, X: torch.Tensor, y: torch.Tensor, test_X: torch.Tensor,
                      test_y: torch.Tensor, *, offsets: np.ndarray, counts: np.ndarray, recipe: LocalRecipe,
                      strategy: Strategy, rounds: int, releases: int, clip_norm: float, epsilon: float,
                      delta: float, order_seed: int, noise: torch.Generator, batched: bool = True,
                      steps: np.ndarray | None = None, factorization: Factorization | None = None) -> CentralDpResult:
    """Member-level central DP: DP-FedAvg over every member every round with a trusted server's Gaussian noise,
    calibrated over `releases` (the federation's planned releases) by the same RDP accountant. With a
    `factorization` (privacy.ftrl, over `releases`) the server adds its correlated stream instead: DP-FTRL."""
    n = len(counts)
    z = calibrate_rounds(epsilon, delta, releases)
    stream = None
    if factorization is not None:
        pattern = every_release(releases)
        stream = CorrelatedNoise(factorization, calibrate_mf(factorization, pattern, epsilon, delta),
                                 get_flat(model).numel(), noise)
    trainer = make_trainer(model, replace(recipe, proximal_mu=0.0), batched=batched)
    flat = get_flat(model).clone()
    steps = recipe.full_steps(counts) if steps is None else steps
    cohort = Cohort(np.asarray(offsets), np.asarray(counts), np.asarray(steps))
    for rnd in range(1, rounds + 1):
        gen = torch.Generator()
        gen.manual_seed(order_seed + rnd)
        local = trainer.train(flat, X, y, cohort, gen)
        if not torch.isfinite(local.deltas).all():
            raise TrainingError("the central member-level DP baseline diverged (non-finite update); lower --lr")
        total = clip_rows(local.deltas, clip_norm).sum(dim=0)
        if stream is None:
            total += torch.normal(0.0, z * clip_norm, size=total.shape, generator=noise)
        else:
            total += clip_norm * stream.next()
        flat = strategy.step(flat, RoundUpdates((total / n)[None, :], np.ones(1), np.ones(1)))
    work = model
    set_flat(work, flat)
    accuracy = evaluate(work, flat, test_X, test_y)[0]
    if stream is not None:
        factorization = stream.factorization
        sens = factorization.sensitivity(every_release(releases))
        return CentralDpResult(accuracy=accuracy, epsilon=mf_epsilon(factorization, every_release(releases),
                                                                     stream.sigma, delta), delta=delta, unit="member",
                               mechanism=f"DP-FTRL, {factorization.name} factorization, every member every release, "
                               "trusted server's correlated Gaussian noise (Denisov et al. 2022)",
                               noise_multiplier=stream.sigma / sens, steps=rounds, sample_rate=1.0, members=n)
    return CentralDpResult(accuracy=accuracy, epsilon=gaussian_rounds_epsilon(z, rounds, delta), delta=delta,
                           unit="member", mechanism="DP-FedAvg, every member every round, trusted server's "
                           "Gaussian noise (McMahan et al. 2018)", noise_multiplier=z, steps=rounds,
                           sample_rate=1.0, members=n)
