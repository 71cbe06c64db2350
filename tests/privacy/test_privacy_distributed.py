"""The member-level pipeline: exact integer path through SecAgg+, no wrap-around, sensitivity
bounds that hold, accounting that stops at the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedledger.core.config import PrivacyConfig
from fedledger.core.errors import ConfigError, PrivacyBudgetExceeded
from fedledger.core.rng import DeterministicEntropy, Purpose
from fedledger.privacy import (
    DistributedDP,
    InsufficientSurvivors,
    Rotation,
    decode_sum,
    encode_members,
    plan_distributed_dp,
    privacy_block,
)
from fedledger.privacy.distributed import limbs_decode, limbs_encode
from fedledger.secagg import SecAggParams, run_round, simulated_identities
from fedledger.secagg.packing import pack


def test_rotation_is_orthogonal_and_invertible() -> None:
    for d in (1, 7, 1000, 5000):
        rot = Rotation.for_round(d, b"pub", 3)
        x = torch.randn(4, d, dtype=torch.float64)
        y = rot.forward(x)
        assert torch.allclose(y.norm(dim=1), x.norm(dim=1))
        assert torch.allclose(rot.inverse(y), x)
    # a spike is spread: no rotated coordinate keeps much of the norm
    rot = Rotation.for_round(4096, b"pub", 1)
    spike = torch.zeros(1, 4096, dtype=torch.float64)
    spike[0, 17] = 1.0
    assert rot.forward(spike).abs().max() < 0.1
    # a new round gives a new rotation
    assert not torch.allclose(Rotation.for_round(4096, b"pub", 2).forward(spike), rot.forward(spike))


def test_plan_meets_the_target_and_rejects_too_few_bits() -> None:
    plan = plan_distributed_dp(epsilon=3.0, delta=1e-5, rounds=20, d=2000, n=100, min_survivors=80, bits=20)
    assert plan.epsilon_total <= 3.0
    assert plan.epsilon_after(10) < plan.epsilon_after(20)
    assert plan.member_variance * 80 >= (plan.noise_multiplier * plan.l2_sensitivity) ** 2 * 0.999
    with pytest.raises(ConfigError, match="bits"):
        plan_distributed_dp(epsilon=3.0, delta=1e-5, rounds=20, d=2000, n=1000, bits=8)


def test_encoding_bounds_hold() -> None:
    n, d = 20, 300
    plan = plan_distributed_dp(epsilon=5.0, delta=1e-5, rounds=5, d=d, n=n, bits=16, adaptive=True)
    rot = Rotation.for_round(d, b"s", 0)
    x = torch.randn(n, d) * torch.linspace(0.1, 5, n)[:, None]  # norms from ~2 to ~90
    enc = encode_members(plan, x, 3.0, rot, DeterministicEntropy(0).stream(Purpose.DP_NOISE, label="t"))
    assert np.allclose(np.linalg.norm(enc.clipped, axis=1), np.minimum(x.norm(dim=1).numpy(), 3.0), rtol=1e-6)
    assert np.array_equal(enc.unclipped, (x.norm(dim=1) <= 3.0).numpy())
    upd = enc.values[:, : plan.padded]
    assert (np.linalg.norm(upd, axis=1) <= plan.rounding_bound + 1e-9).all()
    # rounding is to a neighbouring integer only
    assert (np.abs(upd - enc.rotated) < 1).all()
    assert np.array_equal(enc.values[:, plan.padded], enc.unclipped * plan.bit_scale)
    assert np.array_equal(enc.wrapped, np.mod(enc.values + enc.noise, 1 << 16).astype(np.uint32))
    assert int(enc.wrapped.max()) < 1 << 16
    # the noise shares have the planned variance
    assert abs(enc.noise[:, : plan.padded + 1].var() / plan.member_variance - 1) < 0.1


def test_secagg_pipeline_equals_the_plain_modular_sum() -> None:
    n, d = 12, 200
    ddp = DistributedDP(epsilon=4.0, delta=1e-5, clip_norm=1.0, d=d, n=n, rounds=3, min_survivors=9, bits=24,
                        adaptive_clip=True, secagg=True, keep_encoding=True, public_seed=b"chain-seed")
    x = torch.randn(n, d) * 0.1
    sv = np.ones(n, dtype=bool)
    sv[[2, 7]] = False
    res = ddp.aggregate(x, 0, sv, entropy=DeterministicEntropy(11))
    enc = res.encoding
    assert enc is not None
    plain = (enc.wrapped[sv].astype(np.uint64).sum(axis=0) % (1 << 24)).astype(np.uint32)
    dec = decode_sum(ddp.plan, plain, res.clip_norm_used, ddp.rotation(0))
    assert torch.equal(dec.total, res.sum)
    assert res.survivors.tolist() == sv.tolist()
    # the server saw masked vectors, never a member's own encoded input
    for i, m in enumerate(range(n)):
        if sv[i]:
            assert res.masked_inputs[m] != pack(enc.wrapped[i], 24)
    assert res.bytes_up_per_member > math.ceil(ddp.plan.length * 24 / 8)


def test_high_epsilon_recovers_the_mean_and_aligned_updates_never_wrap() -> None:
    n, d = 40, 500
    ddp = DistributedDP(epsilon=1e4, delta=1e-5, clip_norm=1.0, d=d, n=n, rounds=2, bits=16, secagg=False)
    # worst case for wrap-around: every member sends the same full-norm vector
    u = torch.randn(d)
    x = (u / u.norm()).repeat(n, 1) * 5.0
    res = ddp.aggregate(x, 0, entropy=DeterministicEntropy(3))
    expected = u / u.norm()  # clipped to norm 1, mean of identical vectors
    assert (res.mean - expected).norm() < 0.1
    # and the sparse worst case: all mass on one coordinate (so in one rotation block)
    big = DistributedDP(epsilon=1e4, delta=1e-5, clip_norm=1.0, d=5000, n=n, rounds=1, bits=16, secagg=False)
    assert big.plan.block < big.plan.padded
    spike = torch.zeros(n, 5000)
    spike[:, 123] = 3.0
    res = big.aggregate(spike, 0, entropy=DeterministicEntropy(5))
    assert abs(float(res.mean[123]) - 1.0) < 0.1 and float(res.mean.abs().max()) == float(res.mean[123].abs())
    # random updates
    ddp2 = DistributedDP(epsilon=1e4, delta=1e-5, clip_norm=10.0, d=d, n=n, rounds=2, bits=32, secagg=False)
    x = torch.randn(n, d) * 0.1
    res = ddp2.aggregate(x, 0, entropy=DeterministicEntropy(4))
    plan = ddp2.plan
    # error = the noise: std z * C per coordinate of the sum (sensitivity C in float units)
    noise_norm = plan.noise_multiplier_actual * 10.0 * math.sqrt(plan.padded)
    err = float((res.sum - x.sum(0)).norm())
    assert 0.7 * noise_norm < err < 1.3 * noise_norm


def test_fewer_survivors_than_planned_is_refused() -> None:
    ddp = DistributedDP(epsilon=3.0, delta=1e-5, clip_norm=1.0, d=10, n=10, rounds=5, min_survivors=8,
                        secagg=False)
    sv = np.ones(10, dtype=bool)
    sv[:3] = False
    with pytest.raises(InsufficientSurvivors):
        ddp.aggregate(torch.zeros(10, 10), 0, sv, entropy=DeterministicEntropy(0))


def test_rounds_past_the_budget_are_refused() -> None:
    ddp = DistributedDP(epsilon=3.0, delta=1e-5, clip_norm=1.0, d=10, n=10, rounds=3, secagg=False)
    eps = []
    for r in range(3):
        eps.append(ddp.aggregate(torch.randn(10, 10), r, entropy=DeterministicEntropy(r)).epsilon_so_far)
    assert eps[0] < eps[1] < eps[2] <= 3.0
    with pytest.raises(PrivacyBudgetExceeded):
        ddp.aggregate(torch.randn(10, 10), 3, entropy=DeterministicEntropy(3))
    state = ddp.state_dict()
    again = DistributedDP(epsilon=3.0, delta=1e-5, clip_norm=1.0, d=10, n=10, rounds=3, secagg=False)
    again.load_state_dict(state)
    with pytest.raises(PrivacyBudgetExceeded):
        again.aggregate(torch.randn(10, 10), 3, entropy=DeterministicEntropy(3))


def test_extra_coordinates_carry_a_field_element_in_limbs() -> None:
    n, bits, limb_bits, limbs = 6, 16, 12, 22  # 22 * 12 = 264 bits >= a 254-bit field element
    params = SecAggParams(n=n, length=limbs, bits=bits)
    members = list(range(n))
    ids, pki = simulated_identities(members, 0)
    rng = np.random.default_rng(0)
    values = [int.from_bytes(rng.bytes(31), "big") for _ in range(n)]
    x = np.stack([limbs_encode(v, limbs, limb_bits) for v in values])
    out = run_round(x, members, ids, pki, params, b"Z" * 32, 0)
    assert limbs_decode(out.total, limb_bits) == sum(values)


def test_privacy_block_claims_amplification_only_with_secret_sampling() -> None:
    cfg = PrivacyConfig(dp="member", epsilon=3.0, adaptive_clip=True)
    ddp = DistributedDP.from_config(cfg, d=50, n=30, rounds=10)
    block = privacy_block(cfg, plan=ddp.plan, epsilon_spent=1.2, rounds_done=4)
    assert block["amplification_by_subsampling"] is False and "public" in block["amplification_note"]
    assert block["accountant"]["library"].startswith("dp-accounting")
    secret = PrivacyConfig(dp="member", epsilon=3.0, secret_sampling=True)
    ddp2 = DistributedDP.from_config(secret, d=50, n=30, rounds=10, sample_rate=0.1)
    assert privacy_block(secret, plan=ddp2.plan)["amplification_by_subsampling"] is True
    # secret sampling buys less noise for the same epsilon
    assert ddp2.plan.noise_multiplier < ddp.plan.noise_multiplier
    rec = privacy_block(PrivacyConfig(dp="record"), noise_multiplier=1.1, max_grad_norm=1.0, sample_rate=0.01,
                        steps_per_round=10, epsilon_spent=0.5)
    assert rec["mechanism"].startswith("DP-SGD") and rec["parameters"]["noise_multiplier"] == 1.1
    assert privacy_block(PrivacyConfig())["mechanism"] == "none"
