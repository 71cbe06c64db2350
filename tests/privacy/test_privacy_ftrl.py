"""Correlated-noise mechanisms (privacy.ftrl): factorizations, sensitivity, the accountant against
dp-accounting and closed forms, the streamed noise's covariance (fixed seeds), restarts."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.errors import ConfigError, PrivacyBudgetExceeded
from fedledger.privacy.accounting import RDP_ORDERS, calibrate_rounds, gaussian_rounds_epsilon
from fedledger.privacy.ftrl import (
    CorrelatedNoise,
    Factorization,
    binary_tree,
    build_factorization,
    calibrate_mf,
    every_release,
    identity,
    mf_epsilon,
    prefix_matrix,
    sqrt_coefficients,
    sqrt_toeplitz,
)


def _rdp_epsilon(event: dpa.DpEvent, delta: float) -> float:
    acc = dpa.rdp.RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(event)
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize(("releases", "epsilon"), [(10, 8.0), (10, 3.0), (12, 8.0), (30, 3.0)])
def test_identity_every_release_is_dp_fedavg(releases: int, epsilon: float) -> None:
    """C = I with every member in every release: the stream is the T Gaussian releases DP-FedAvg composes."""
    z = calibrate_rounds(epsilon, 1e-5, releases)
    f = identity(releases)
    assert f.sensitivity(every_release(releases)) == pytest.approx(math.sqrt(releases))
    ours = mf_epsilon(f, every_release(releases), z, 1e-5)
    assert ours == pytest.approx(gaussian_rounds_epsilon(z, releases, 1e-5), rel=1e-9)
    assert ours == pytest.approx(_rdp_epsilon(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z), releases), 1e-5),
                                 rel=1e-9)
    # calibrating the stream gives the same noise on each release as calibrating the rounds
    assert calibrate_mf(f, every_release(releases), epsilon, 1e-5) == pytest.approx(z,
                                                                                    rel=1e-3)


@pytest.mark.parametrize(("levels", "sigma"), [(4, 2.0), (5, 3.0), (7, 5.0)])
def test_tree_single_participation_matches_levels_of_gaussians(levels: int, sigma: float) -> None:
    """Kairouz et al. 2021: a member in one release of a 2^(L-1)-leaf tree is in L nodes, so the tree is L
    Gaussian mechanisms with noise multiplier sigma: rho = L / (2 sigma^2)."""
    releases = 2 ** (levels - 1)
    f = binary_tree(releases)
    single = np.eye(releases, dtype=bool)
    assert f.sensitivity(single) == pytest.approx(math.sqrt(levels))
    ours = mf_epsilon(f, single, sigma, 1e-5)
    ref = _rdp_epsilon(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma), levels), 1e-5)
    assert ours == pytest.approx(ref, rel=1e-9)
    zcdp = _rdp_epsilon(dpa.ZCDpEvent(levels / (2 * sigma**2)), 1e-5)
    assert ours == pytest.approx(zcdp, rel=1e-9)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_tree_every_release_sensitivity_closed_form(k: int) -> None:
    """With every release, a node of length 2^l carries 2^l clipped updates. Prefix sums only use left
    children and the root (a right child is never the largest node starting where a prefix needs one), so the
    tree keeps 2^(k-l-1) nodes of level l < k and the root: sens^2 = sum_l 2^(k-l-1) 4^l + 4^k."""
    releases = 2**k
    f = binary_tree(releases)
    assert f.columns == 2**k
    assert f.sensitivity(every_release(releases)) ** 2 == pytest.approx(2 ** (k - 1) * (2**k - 1) + 4**k)


def test_sqrt_toeplitz_squares_to_the_prefix_matrix_and_is_the_published_series() -> None:
    f = sqrt_toeplitz(16)
    assert np.allclose(f.encoder @ f.encoder, prefix_matrix(16))
    assert np.allclose(f.decoder, f.encoder)
    assert sqrt_coefficients(5) == pytest.approx([1, 1 / 2, 3 / 8, 5 / 16, 35 / 128])
    # single participation: the first column's norm, sum of binom(2k,k)^2 / 16^k
    assert f.sensitivity(np.eye(16, dtype=bool)) ** 2 == pytest.approx(float(np.sum(sqrt_coefficients(16) ** 2)))
    banded = sqrt_toeplitz(10, bands=2)
    assert np.count_nonzero(np.tril(banded.encoder, -2)) == 0


def test_no_factorization_beats_independent_noise_on_the_last_model_with_every_release() -> None:
    """The reason the federation keeps C = I: with every member in every release the last prefix has
    sensitivity T, so its noise std is at least T (in sigma/sensitivity units); C = I attains it."""
    for releases in (10, 16):
        pattern = every_release(releases)
        last = {f.name: f.prefix_std()[-1] * f.sensitivity(pattern)
                for f in (identity(releases), binary_tree(releases), sqrt_toeplitz(releases),
                          sqrt_toeplitz(releases, bands=2), binary_tree(releases, restart=4))}
        assert last["identity"] == pytest.approx(releases)
        assert min(last.values()) >= releases * (1 - 1e-9)


@given(st.integers(2, 6), st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_sensitivity_is_never_below_an_adversarial_choice(releases: int, seed: int) -> None:
    """The attack: pick updates (aligned, random, or sign-flipped by the Gram matrix) in the releases of a
    pattern; ||C x|| never exceeds the stated sensitivity, also for factorizations with negative C^T C."""
    rng = np.random.default_rng(seed)
    enc = np.tril(rng.normal(size=(releases, releases)))
    np.fill_diagonal(enc, np.abs(np.diag(enc)) + 0.5)
    f = Factorization("random", enc, prefix_matrix(releases) @ np.linalg.inv(enc))
    pattern = rng.random((3, releases)) < 0.6
    bound = f.sensitivity(pattern)
    for p in pattern:
        cols = f.encoder[:, p]
        if cols.shape[1] == 0:
            continue
        gram = cols.T @ cols
        # a 1-D adversary sets x_t = sign so that the cross terms add; try a few sign vectors and random unit x
        signs = [np.ones(cols.shape[1]), np.sign(gram[0]) + (gram[0] == 0)]
        for s in signs:
            assert np.linalg.norm(cols @ s) <= bound + 1e-9
        for _ in range(20):
            x = rng.normal(size=(cols.shape[1], 4))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            assert np.linalg.norm(cols @ x) <= bound + 1e-9


def test_a_factorization_that_needs_later_inputs_is_refused() -> None:
    # C = S^T: the first column of noise sums every release's input, so release 1 cannot be formed
    enc = prefix_matrix(4).T
    with pytest.raises(ConfigError, match="not causal"):
        Factorization("anticausal", enc, prefix_matrix(4) @ np.linalg.inv(enc))
    with pytest.raises(ConfigError, match="prefix-sum"):
        Factorization("wrong", np.eye(4), np.eye(4))


def _stream(f: Factorization, sigma: float, dim: int, seed: int) -> np.ndarray:
    gen = torch.Generator()
    gen.manual_seed(seed)
    noise = CorrelatedNoise(f, sigma, dim, gen)
    rows = np.stack([noise.next().double().numpy() for _ in range(f.releases)])
    with pytest.raises(PrivacyBudgetExceeded):
        noise.next()
    return rows


@pytest.mark.parametrize("name", ["identity", "tree", "tree-restart", "sqrt", "banded"])
def test_streamed_noise_has_the_planned_covariance(name: str) -> None:
    """Statistical test, fixed seed: coordinates are independent draws of the [T] noise vector; the sample
    covariance of the increments must match sigma^2 D D^T, and the prefix sums' sigma^2 B B^T, entry by entry
    within 5 standard errors (Var of a Gaussian sample covariance: (S_ii S_jj + S_ij^2) / N)."""
    releases, sigma, dim = 10, 1.7, 40_000
    f = binary_tree(releases, restart=4) if name == "tree-restart" else build_factorization(name, releases)
    inc = _stream(f, sigma, dim, seed=12345)
    for got_rows, planned in ((inc, sigma**2 * f.increment_covariance()),
                              (np.cumsum(inc, axis=0), sigma**2 * f.decoder @ f.decoder.T)):
        got = got_rows @ got_rows.T / dim
        se = np.sqrt((np.outer(np.diag(planned), np.diag(planned)) + planned**2) / dim)
        assert np.all(np.abs(got - planned) <= 5 * se + 1e-9), name


def test_tree_restarts_complete_each_tree_at_its_root() -> None:
    """Restarts every 4: the prefix at the end of each tree carries exactly the roots' noise (one node per
    finished tree), and the sensitivity with every release adds over trees."""
    f = binary_tree(10, restart=4)
    roots = [np.flatnonzero(f.encoder[:, a:b].all(axis=1) & (f.encoder.sum(axis=1) == b - a))
             for a, b in ((0, 4), (4, 8), (8, 10))]
    assert all(len(r) == 1 for r in roots)
    assert np.flatnonzero(f.decoder[3]).tolist() == [roots[0][0]]
    assert np.flatnonzero(f.decoder[7]).tolist() == sorted([roots[0][0], roots[1][0]])
    assert np.flatnonzero(f.decoder[9]).tolist() == sorted([roots[0][0], roots[1][0], roots[2][0]])
    per_tree = [binary_tree(4).sensitivity(every_release(4))] * 2 + [binary_tree(2).sensitivity(every_release(2))]
    assert f.sensitivity(every_release(10)) == pytest.approx(math.sqrt(sum(s**2 for s in per_tree)))
    # and the stream frees a finished tree's noise: at most one tree's live columns plus one
    gen = torch.Generator()
    gen.manual_seed(0)
    noise = CorrelatedNoise(f, 1.0, 3, gen)
    live = []
    for _ in range(10):
        noise.next()
        live.append(len(noise._live))
    assert max(live) <= 4


def test_unknown_factorization_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown factorization"):
        build_factorization("hadamard", 4)


@pytest.mark.parametrize("name", ["identity", "tree", "sqrt"])
def test_central_dp_ftrl_spends_the_budget_by_the_accountant(name: str) -> None:
    """The trusted-server DP-FTRL baseline (central_member_dp with a factorization) trains and spends the
    run's epsilon: the figure is dp-accounting's for one Gaussian with the stream's noise / sensitivity."""
    from fedledger.core.config import build_config
    from fedledger.learning import build_strategy
    from fedledger.models import build_model
    from fedledger.privacy.baseline import central_member_dp
    from fedledger.sim import Simulation

    cfg = build_config(dict(dataset="digits", model="logreg", clients=6, rounds=3, max_samples=400,
                            privacy=dict(dp="member", epsilon=3.0)))
    sim = Simulation(cfg)
    fact = build_factorization(name, sim.planned_releases)
    gen = torch.Generator()
    gen.manual_seed(7)
    res = central_member_dp(build_model("logreg", sim.data.input_shape, sim.data.num_classes, seed=0), sim.pool.X,
                            sim.pool.clean_y, sim.test_X, sim.test_y, offsets=sim.pool.offsets,
                            counts=sim.pool.counts, recipe=sim.recipe,
                            strategy=build_strategy("fedavg", server_lr=1.0, trim=0.1, byzantine=0),
                            rounds=cfg.rounds, releases=sim.planned_releases, clip_norm=cfg.privacy.clip_norm,
                            epsilon=3.0, delta=1e-5, order_seed=1, noise=gen, factorization=fact)
    assert res.epsilon == pytest.approx(3.0, rel=2e-3) and res.epsilon <= 3.0 + 1e-9
    assert res.epsilon == pytest.approx(_rdp_epsilon(dpa.GaussianDpEvent(res.noise_multiplier), 1e-5), rel=1e-9)
    assert fact.name in res.mechanism
    assert 0.0 <= res.accuracy <= 1.0
