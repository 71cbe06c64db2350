"""Record-level DP through SecAgg+ and SecAgg+ without DP (privacy/record_secagg.py, sim/secure_paths.py)."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.rng import DeterministicEntropy, Purpose
from fedledger.privacy import DistributedDP, InsufficientSurvivors, encode_members
from fedledger.privacy.accounting import calibrate_noise
from fedledger.privacy.record_secagg import (
    batch_cap,
    clipped_batch_sums,
    plain_secagg_plan,
    plan_record_secagg,
)
from fedledger.privacy.rotation import Rotation


def _plan(**kw):
    args = dict(epsilon=3.0, delta=1e-5, steps_per_round=4, rounds=10, sample_rate=0.25, d=650, n=5,
                min_survivors=4, max_records=290, clip_norm=0.25)
    return plan_record_secagg(**(args | kw))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 30), drop=st.floats(0.0, 0.6), eps=st.sampled_from([1.0, 3.0, 8.0]),
       bits=st.sampled_from([20, 24, 32]))
def test_noise_shares_of_min_survivors_carry_the_planned_variance(n, drop, eps, bits):
    m = max(1, int(n * (1 - drop)))
    plan = _plan(n=n, min_survivors=m, epsilon=eps, bits=bits)
    z = calibrate_noise(eps, 1e-5, 0.25, 40)
    # the sum of m shares has variance m s^2 >= (z Delta)^2: central DP-SGD's noise on the per-record sensitivity
    assert m * plan.member_variance >= (z * plan.l2_sensitivity) ** 2
    assert plan.noise_multiplier_actual >= z
    assert plan.noise_multiplier_actual <= z * (1 + 1e-3) + 1 / plan.l2_sensitivity  # ceil only
    assert plan.l2_sensitivity == pytest.approx(plan.scale * plan.record_clip + math.sqrt(plan.padded))


def test_sampled_shares_sum_to_the_planned_variance():
    plan = _plan(d=2000, n=6, min_survivors=6)
    rot = Rotation.for_round(plan.d, b"seed", 1, plan.block)
    zero = torch.zeros(plan.n, plan.d)
    enc = encode_members(plan, zero, plan.batch_clip, rot, DeterministicEntropy(1).stream(Purpose.DP_NOISE, round=1))
    total = enc.noise.sum(axis=0).astype(np.float64)
    planned = plan.min_survivors * plan.member_variance
    # sample variance of ~2000 coordinates: within 4 standard errors (sqrt(2/k))
    assert abs(total.var() / planned - 1) < 4 * math.sqrt(2 / total.size)
    assert abs(total.mean()) < 4 * math.sqrt(planned / total.size)


@pytest.mark.parametrize(("sigma_q_steps"), [(1.1, 256 / 60000, 14060), (2.0, 0.01, 10000), (0.8, 0.05, 400)])
def test_accountant_matches_dp_accounting(sigma_q_steps):
    """epsilon of the plan = dp-accounting's for Poisson-sampled Gaussian steps at the shares' noise multiplier."""
    sigma, q, steps = sigma_q_steps
    acc = RdpAccountant()
    acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    target = acc.get_epsilon(1e-5)
    plan = plan_record_secagg(epsilon=target, delta=1e-5, steps_per_round=steps, rounds=1, sample_rate=q, d=650,
                              n=5, min_survivors=5, max_records=12000, clip_norm=1.0)
    assert plan.noise_multiplier == pytest.approx(sigma, rel=2e-3)
    ref = RdpAccountant()
    ref.compose(dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(plan.noise_multiplier_actual)), steps))
    assert plan.epsilon_after(steps) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9)
    assert plan.epsilon_total <= target * (1 + 1e-9)


def test_batch_sum_clip_never_binds_in_expectation_and_rounding_never_redraws():
    plan = _plan()
    assert plan.batch_clip == batch_cap(290, 0.25) * plan.record_clip
    # worst rounding of a vector at the batch clip stays within the bound: conditional rounding accepts at once
    rot = Rotation.for_round(plan.d, b"s", 1, plan.block)
    big = torch.randn(plan.n, plan.d)
    big = big / big.norm(dim=1, keepdim=True) * plan.batch_clip
    enc = encode_members(plan, big, plan.batch_clip, rot, DeterministicEntropy(2).stream(Purpose.DP_NOISE, round=1))
    assert (np.sqrt((enc.values.astype(np.float64) ** 2).sum(axis=1)) <= plan.rounding_bound).all()


def test_clipped_batch_sums_are_per_example_clipped_sums():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    from fedledger.models import get_flat
    flat = get_flat(model)
    X, y = torch.randn(20, 4) * 5, torch.randint(0, 3, (20,))
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    sums, sizes = clipped_batch_sums(model, flat, X, y, np.array([0, 10]), np.array([10, 10]), 1.0, 0.5, gens)
    assert sizes.tolist() == [10, 10]
    for j in range(2):
        want = torch.zeros_like(flat)
        for i in range(10 * j, 10 * j + 10):
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(X[i : i + 1]), y[i : i + 1]).backward()
            g = torch.cat([p.grad.flatten() for p in model.parameters()])
            want += g * min(1.0, 0.5 / float(g.norm()))
        assert torch.allclose(sums[j], want, atol=1e-5)


@pytest.mark.parametrize("bits", [16, 32])
def test_plain_secagg_sum_is_exact_under_dropouts(bits):
    """No DP: the decoded SecAgg+ sum is the survivors' clipped updates (to the rounding), the modular sum exact."""
    n, d = 8, 300
    plan = plain_secagg_plan(d=d, n=n, min_survivors=3, bits=bits)
    ddp = DistributedDP(epsilon=1.0, delta=1e-5, clip_norm=2.0, d=d, n=n, rounds=plan.rounds, min_survivors=3,
                        bits=bits, public_seed=b"p", secagg_dropout=0.38, keep_encoding=True, plan=plan)
    x = torch.randn(n, d) * 0.2
    x[0] *= 50  # clipped
    survivors = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
    res = ddp.aggregate(x, 1, survivors, entropy=DeterministicEntropy(3))
    enc = res.encoding
    assert enc is not None and not enc.noise.any()
    exact = (enc.wrapped[survivors].astype(np.uint64).sum(axis=0) % (1 << bits)).astype(np.uint32)
    assert res.total is None  # no binding: check through the decoded sum
    clipped = torch.from_numpy(enc.clipped[survivors]).sum(dim=0).float()
    tol = math.sqrt(plan.padded) / (plan.int_norm / 2.0) * survivors.sum()
    assert float((res.sum - clipped).norm()) <= tol
    assert res.epsilon_so_far == math.inf
    from fedledger.privacy.distributed import decode_sum
    assert torch.allclose(decode_sum(plan, exact, 2.0, ddp.rotation(1)).total, res.sum)
    with pytest.raises(InsufficientSurvivors):
        ddp.aggregate(x, 2, np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=bool), entropy=DeterministicEntropy(4))


def test_tanh_cnn_is_the_published_dpsgd_architecture():
    from fedledger.models import build_model

    model = build_model("tanh_cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 26010  # Papernot et al. 2021's MNIST CNN
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
