"""Record-level DP for cross-silo members: DP-SGD with Opacus and a per-member accountant.

`train_member_dpsgd` trains a copy of the model with Poisson-sampled batches, per-example
clipping and Gaussian noise (Abadi et al. 2016) through Opacus, then records the steps in the
member's own `MemberAccountant` (dp-accounting RDP). Before training it dry-runs the spend: if
the member's budget would be exceeded it raises `PrivacyBudgetExceeded` and trains nothing, which
is how a member stops contributing once its own budget is spent.

Randomness: noise and Poisson sampling come from the `generator` passed in, which the caller draws from its
`Entropy` (fedledger.core.rng), fresh per member, round and attempt: a secret 64-bit seed (torch's limit)
from the OS unless the run is deterministic. Opacus' `secure_mode` stays off: it needs `torchcsprng`
(unmaintained, not built for current torch); see docs/privacy.md, "Randomness", for what that leaves.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedledger.core.errors import ConfigError, PrivacyBudgetExceeded, TrainingError
from fedledger.privacy.accounting import MemberAccountant


def dpsgd_schedule(n_records: int, batch_size: int, epochs: float) -> tuple[float, int]:
    """(sample rate, steps) that `train_member_dpsgd` will use: Opacus' q = 1 / batches per epoch."""
    if n_records < 1 or batch_size < 1 or epochs <= 0:
        raise ConfigError("need records, a positive batch size and positive epochs")
    batches = math.ceil(n_records / batch_size)
    return 1.0 / batches, max(1, math.ceil(epochs * batches))


def train_member_dpsgd(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: float,
    batch_size: int,
    lr: float,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: torch.Generator,
    accountant_state: MemberAccountant,
    delta: float,
    epsilon_budget: float | None = None,
    momentum: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[nn.Module, float]:
    """Train a copy of `model` with DP-SGD; return (trained model, member epsilon at `delta`).

    `accountant_state` is updated in place with the steps taken. Raises PrivacyBudgetExceeded
    (before any training) when the steps would take the member past `epsilon_budget`.
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    if noise_multiplier <= 0 or max_grad_norm <= 0 or lr <= 0:
        raise ConfigError("noise_multiplier, max_grad_norm and lr must be positive")
    if len(X) != len(y) or len(X) == 0:
        raise ConfigError("X and y must be non-empty and of equal length")
    q, steps = dpsgd_schedule(len(X), batch_size, epochs)
    if epsilon_budget is not None and not accountant_state.can_spend(noise_multiplier, q, steps, epsilon_budget,
                                                                      delta):
        spent = accountant_state.epsilon(delta)
        raise PrivacyBudgetExceeded(
            f"member budget {epsilon_budget:g} would be exceeded (spent {spent:.3g}; {steps} more steps at "
            f"sigma={noise_multiplier:g}, q={q:.3g} would pass it)"
        )
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise TrainingError(f"model is not compatible with DP-SGD: {errors[0]} (replace BatchNorm by GroupNorm)")
    work = copy.deepcopy(model)
    work.train()
    optimizer = torch.optim.SGD(work.parameters(), lr=lr, momentum=momentum)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True, generator=generator)
    criterion = loss_fn or nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns that secure_mode is off (see the module docstring)
        engine = PrivacyEngine(accountant="rdp")
        pmodel, popt, ploader = engine.make_private(
            module=work, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, noise_generator=generator, poisson_sampling=True,
        )
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = _run_steps(pmodel, popt, ploader, criterion, steps)
    trained = pmodel.to_standard_module()
    accountant_state.spend(noise_multiplier, q, done)
    return trained, accountant_state.epsilon(delta)


def _run_steps(pmodel: nn.Module, popt: torch.optim.Optimizer, ploader: DataLoader,
               criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int) -> int:
    done = 0
    while done < steps:
        for xb, yb in ploader:
            if done >= steps:
                break
            popt.zero_grad(set_to_none=True)
            if len(xb) == 0:
                # an empty Poisson batch still releases a noisy (zero-gradient) step
                for p in pmodel.parameters():
                    p.grad_sample = torch.zeros((0, *p.shape))  # type: ignore[attr-defined]
                popt.step()
                done += 1
                continue
            loss = criterion(pmodel(xb), yb)
            if not torch.isfinite(loss):
                raise TrainingError("DP-SGD loss is not finite (lower the learning rate)")
            loss.backward()
            popt.step()
            done += 1
    return done
