"""Adaptive clipping follows the *unclipped* fraction (Andrew et al. 2021) and converges.

Flower 1.42 moves the clip norm with the clipped fraction, which drives it the wrong way; these
tests fail for that rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedledger.core.rng import DeterministicEntropy
from fedledger.privacy.distributed import DistributedDP, adaptive_clip_update


def test_update_direction_follows_the_unclipped_fraction() -> None:
    # everyone unclipped (clip norm too large): it must shrink; nobody unclipped: it must grow
    assert adaptive_clip_update(1.0, 1.0, 0.5) < 1.0
    assert adaptive_clip_update(1.0, 0.0, 0.5) > 1.0
    assert adaptive_clip_update(1.0, 0.5, 0.5) == 1.0
    assert adaptive_clip_update(2.0, 0.9, 0.9) == 2.0


def _lognormal_updates(n: int, d: int, mu: float, s: float, rng: np.random.Generator) -> torch.Tensor:
    directions = rng.standard_normal((n, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = np.exp(mu + s * rng.standard_normal(n))
    return torch.from_numpy(directions * norms[:, None]).float()


@pytest.mark.parametrize(
    ("start_factor", "quantile", "rounds"),
    # with eta = 0.2 the norm falls by at most exp(-0.2 (1 - q)) a round: for q = 0.8 a 10x excess
    # takes ln(10) / 0.04 = 58 rounds to remove, so that case gets 100 rounds
    [(0.1, 0.5, 50), (10.0, 0.5, 50), (0.1, 0.8, 50), (10.0, 0.8, 100)],
)
def test_converges_to_the_target_quantile(start_factor: float, quantile: float, rounds: int) -> None:
    mu, s, n, d = math.log(2.0), 0.5, 300, 8
    true_norm = math.exp(mu + s * norm.ppf(quantile))
    ddp = DistributedDP(epsilon=3.0, delta=1e-5, clip_norm=true_norm * start_factor, d=d, n=n, rounds=rounds,
                        bits=32, adaptive_clip=True, target_quantile=quantile, secagg=False)
    rng = np.random.default_rng(int(start_factor * 10) + int(quantile * 100))
    history = []
    for r in range(rounds):
        res = ddp.aggregate(_lognormal_updates(n, d, mu, s, rng), r, entropy=DeterministicEntropy(r))
        history.append(res.clip_norm_next)
    assert abs(history[-1] / true_norm - 1) < 0.10
    # and it got there by moving the right way from the start
    if start_factor < 1:
        assert history[5] > history[0] * 1.05
    else:
        assert history[5] < history[0] / 1.05
    # the whole privacy budget was used by the 50 rounds, and not exceeded
    assert res.epsilon_so_far <= 3.0


def test_noisy_unclipped_fraction_estimates_the_true_fraction() -> None:
    n, d = 300, 8
    rng = np.random.default_rng(0)
    x = _lognormal_updates(n, d, 0.0, 0.5, rng)
    ddp = DistributedDP(epsilon=3.0, delta=1e-5, clip_norm=1.3, d=d, n=n, rounds=10, bits=32, adaptive_clip=True,
                        secagg=False)
    res = ddp.aggregate(x, 0, entropy=DeterministicEntropy(1))
    true = float((x.norm(dim=1) <= 1.3).float().mean())
    count_sd = 1 / 20 * 1.5  # Andrew et al.: count noise std about n/20, as a fraction about 0.05
    assert res.unclipped_fraction is not None
    assert abs(res.unclipped_fraction - true) < 5 * count_sd
