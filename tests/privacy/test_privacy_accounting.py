"""Accountant values match dp-accounting and an independent implementation (Opacus' RDP analysis)
for published parameter sets; calibration; the distributed discrete Gaussian bound."""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from fedledger.core.errors import ConfigError
from fedledger.privacy.accounting import (
    RDP_ORDERS,
    MemberAccountant,
    calibrate_noise,
    ddg_rho,
    ddg_tau,
    zcdp_epsilon,
)

# Abadi et al. 2016 (MNIST: lot 600 of 60,000, sigma 2 / 4 / 8, up to 100+ epochs) and the
# TF Privacy MNIST tutorial (batch 256 of 60,000, sigma 1.1, 60 epochs).
PUBLISHED = [
    (0.01, 4.0, 10_000, 1e-5),
    (0.01, 2.0, 10_000, 1e-5),
    (0.01, 8.0, 70_000, 1e-5),
    (256 / 60_000, 1.1, 60 * 60_000 // 256, 1e-5),
]


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), PUBLISHED)
def test_member_accountant_matches_dp_accounting(q: float, sigma: float, steps: int, delta: float) -> None:
    acc = MemberAccountant()
    # split over rounds, as members spend it
    for _ in range(4):
        acc.spend(sigma, q, steps // 4)
    acc.spend(sigma, q, steps - 4 * (steps // 4))
    ours = acc.epsilon(delta)
    ref = dpa.rdp.RdpAccountant(orders=list(RDP_ORDERS))
    ref.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    assert ours == pytest.approx(ref.get_epsilon(delta), rel=1e-9)
    default = dpa.rdp.RdpAccountant()
    default.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    # more orders can only tighten the bound, and not by much
    assert ours <= default.get_epsilon(delta) + 1e-9
    assert ours == pytest.approx(default.get_epsilon(delta), rel=0.05)


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), PUBLISHED)
def test_member_accountant_matches_opacus_independent_rdp(q: float, sigma: float, steps: int, delta: float) -> None:
    acc = MemberAccountant()
    acc.spend(sigma, q, steps)
    orders = [o for o in RDP_ORDERS]
    rdp = compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)
    eps_opacus, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    assert acc.epsilon(delta) == pytest.approx(eps_opacus, rel=1e-3)


def test_calibrate_noise_meets_the_target_tightly() -> None:
    q, steps, delta = 0.01, 5000, 1e-5
    for target in (1.0, 3.0, 8.0):
        z = calibrate_noise(target, delta, q, steps)
        acc = MemberAccountant()
        acc.spend(z, q, steps)
        assert acc.epsilon(delta) <= target
        loose = MemberAccountant()
        loose.spend(z * 0.99, q, steps)
        assert loose.epsilon(delta) > target


def test_budget_dry_run_and_state_roundtrip() -> None:
    acc = MemberAccountant()
    acc.spend(1.0, 0.05, 100)
    eps = acc.epsilon(1e-5)
    assert acc.can_spend(1.0, 0.05, 10, eps * 1.5, 1e-5)
    assert not acc.can_spend(1.0, 0.05, 10_000, eps * 1.5, 1e-5)
    assert acc.epsilon(1e-5) == eps  # dry runs record nothing
    again = MemberAccountant.from_state_dict(acc.state_dict())
    assert again.epsilon(1e-5) == eps and again.steps == 100
    with pytest.raises(ConfigError):
        MemberAccountant.from_state_dict({"mechanism": "pld", "history": []})


def test_distributed_discrete_gaussian_bound() -> None:
    # large variance: tau vanishes and rho is the Gaussian value D2^2 / (2 n s2)
    rho, tau = ddg_rho(100.0, 1000.0, 400.0, 10)
    assert tau < 1e-100
    assert rho == pytest.approx(100.0**2 / (2 * 10 * 400.0))
    # tiny variance: the sum is not a discrete Gaussian; tau makes the bound strictly worse
    rho_small, tau_small = ddg_rho(1.0, 1.0, 0.05, 10)
    assert tau_small > 0 and rho_small > 1.0 / (2 * 10 * 0.05)
    assert ddg_tau(0.05, 10) == pytest.approx(10 * sum(math.exp(-2 * math.pi**2 * 0.05 * k / (k + 1))
                                                       for k in range(1, 10)))
    # composition over rounds goes through dp-accounting's zCDP event
    ref = dpa.rdp.RdpAccountant(orders=list(RDP_ORDERS))
    ref.compose(dpa.ZCDpEvent(rho), 30)
    assert zcdp_epsilon(rho, 30, 1e-5) == pytest.approx(ref.get_epsilon(1e-5))
