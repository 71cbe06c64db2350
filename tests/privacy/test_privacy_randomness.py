"""Noise is a secret and is never reused: a reopened attempt of a round draws fresh noise shares, so two
released attempts over cohorts that differ by one member do not hand the server that member's update under
one noise share only; and the default source is the OS, not anything derived from a public value."""

from __future__ import annotations

import math

import numpy as np
import torch

from fedledger.core.rng import DeterministicEntropy, Purpose, SystemEntropy
from fedledger.privacy import DistributedDP

N, D = 10, 200


def _ddp() -> DistributedDP:
    return DistributedDP(epsilon=2.0, delta=1e-5, clip_norm=1.0, d=D, n=N, rounds=4, min_survivors=8, bits=24,
                         secagg=False, keep_encoding=True)


def _updates() -> torch.Tensor:
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(1))
    return x / x.norm(dim=1, keepdim=True) * 0.9  # within the clip norm: nothing is clipped


def test_attempts_of_a_round_draw_different_noise_and_the_same_attempt_the_same() -> None:
    ddp, x = _ddp(), _updates()
    secrets = DeterministicEntropy(5)
    first = ddp.aggregate(x, 1, entropy=secrets, attempt=0).encoding
    again = ddp.aggregate(x, 1, entropy=secrets, attempt=0).encoding  # e.g. a sum redone without a culprit
    second = ddp.aggregate(x, 1, entropy=secrets, attempt=1).encoding
    assert first is not None and again is not None and second is not None
    assert np.array_equal(first.noise, again.noise)
    assert not np.array_equal(first.noise, second.noise)
    assert (first.noise[:, : ddp.plan.padded] != second.noise[:, : ddp.plan.padded]).mean() > 0.9


def test_by_default_every_aggregation_draws_fresh_noise_from_the_os() -> None:
    ddp, x = _ddp(), _updates()
    a = ddp.aggregate(x, 1).encoding
    b = ddp.aggregate(x, 1).encoding
    assert a is not None and b is not None and not np.array_equal(a.noise, b.noise)
    child = SystemEntropy().child(Purpose.ATTEMPT, round=1, attempt=0)  # what the simulation passes
    c = ddp.aggregate(x, 1, entropy=child).encoding
    d = ddp.aggregate(x, 1, entropy=child).encoding
    assert c is not None and d is not None and np.array_equal(c.noise, d.noise)


def _difference_attack(attempt_of_second: int) -> tuple[float, float]:
    """The server's attack: subtract two released sums of one round whose cohorts differ by member k and read
    member k's update. Returns (error of the recovered update, one member's noise share norm) in float units."""
    ddp, x = _ddp(), _updates()
    secrets = DeterministicEntropy(9)
    k = 3
    everyone = np.ones(N, dtype=bool)
    without_k = everyone.copy()
    without_k[k] = False
    first = ddp.aggregate(x, 2, everyone, entropy=secrets, attempt=0)
    second = ddp.aggregate(x, 2, without_k, entropy=secrets, attempt=attempt_of_second)
    recovered = first.sum - second.sum
    error = float((recovered - x[k]).norm())
    scale = ddp.plan.int_norm / ddp.clip_norm
    share = math.sqrt(ddp.plan.member_variance * ddp.plan.padded) / scale
    return error, share


def test_reused_noise_would_leave_a_member_update_under_one_noise_share() -> None:
    # the control: had the second attempt reused the first's noise (the old seed per round), the difference of
    # the two sums is member k's update plus its own share only: 1/min_survivors of the noise variance the
    # accounting assumed for any release
    error, share = _difference_attack(attempt_of_second=0)
    assert error < 1.5 * share


def test_a_reopened_attempt_with_fresh_noise_leaves_the_difference_under_the_full_noise() -> None:
    error, share = _difference_attack(attempt_of_second=1)
    # two independent sums of 10 and 9 shares: the difference carries about sqrt(19) shares of noise
    assert error > 0.7 * math.sqrt(2 * N - 1) * share
    assert error > 3 * _difference_attack(attempt_of_second=0)[0]
