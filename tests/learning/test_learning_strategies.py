"""Server strategies: closed-form checks and robustness against outliers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.errors import ConfigError
from fedledger.learning import STRATEGIES, RoundUpdates, build_strategy


def _updates(deltas: list[list[float]], samples: list[int], steps: list[int] | None = None) -> RoundUpdates:
    steps = steps or [1] * len(samples)
    return RoundUpdates(torch.tensor(deltas), np.array(samples), np.array(steps, dtype=float))


def test_fedavg_weights_by_samples() -> None:
    u = _updates([[1.0, 0.0], [0.0, 3.0]], [3, 1])
    assert torch.allclose(build_strategy("fedavg").step(torch.zeros(2), u), torch.tensor([0.75, 0.75]))


def test_fednova_removes_the_bias_toward_members_with_more_steps() -> None:
    # Both members move at the same per-step rate; one took 10 steps, the other 1.
    u = _updates([[10.0], [1.0]], [1, 1], steps=[10, 1])
    avg = build_strategy("fedavg").direction(u)
    nova = build_strategy("fednova").direction(u)
    assert torch.allclose(avg, torch.tensor([5.5]))
    assert torch.allclose(nova, torch.tensor([5.5]))  # tau_eff * mean per-step update = 5.5 * 1
    skew = _updates([[10.0], [-1.0]], [1, 1], steps=[10, 1])  # opposite directions, per step equal size
    assert torch.allclose(build_strategy("fednova").direction(skew), torch.tensor([0.0]))


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "multikrum"])
def test_robust_aggregators_resist_a_boosted_outlier(name: str) -> None:
    honest = torch.randn(9, 5, generator=torch.Generator().manual_seed(0)) * 0.1 + 1.0
    deltas = torch.cat([honest, torch.full((1, 5), 1000.0)])
    u = RoundUpdates(deltas, np.ones(10), np.ones(10))
    out = build_strategy(name, trim=0.1, byzantine=1).direction(u)
    assert (out - 1.0).abs().max() < 0.5
    assert build_strategy("fedavg").direction(u).max() > 90


@given(st.integers(1, 6), st.integers(1, 5))
@settings(max_examples=30, deadline=None)
def test_identical_updates_are_a_fixed_point_of_every_mean_like_strategy(n: int, d: int) -> None:
    v = torch.randn(d)
    u = RoundUpdates(v.expand(n, d).clone(), np.arange(1, n + 1), np.ones(n))
    for name in ("fedavg", "fednova", "median", "trimmed_mean"):
        assert torch.allclose(build_strategy(name).direction(u), v, atol=1e-5)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_adaptive_strategies_move_toward_the_update_and_checkpoint(name: str) -> None:
    s = build_strategy(name)
    u = _updates([[1.0, -2.0]], [1])
    x1 = s.step(torch.zeros(2), u)
    assert x1[0] > 0 > x1[1]
    clone = build_strategy(name)
    clone.load_state_dict(s.state_dict())
    assert torch.equal(clone.step(x1, u), s.step(x1, u))


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="fedavg"):
        build_strategy("fedmagic")
    assert set(STRATEGIES) >= {"fedavg", "fedadam", "fedyogi", "fedadagrad", "fednova", "median", "multikrum"}


def test_krum_needs_enough_updates() -> None:
    with pytest.raises(ConfigError, match="Multi-Krum"):
        build_strategy("multikrum", byzantine=2).direction(_updates([[1.0]] * 3, [1, 1, 1]))
