"""Contribution scores (protocol/contribution.py): Shapley axioms, attribution by regression, group privacy cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedledger.core.errors import ConfigError
from fedledger.privacy.distributed import plan_distributed_dp
from fedledger.protocol.contribution import (
    EXACT_MAX_GROUPS,
    attribute_rounds,
    combined_score,
    exact_shapley,
    group_release_cost,
    group_shapley,
    gtg_shapley,
    low_value_per_example,
    random_groups,
    sampled_shapley,
    shown_to_contribute,
    size_prior,
    subset_means,
    value_bounds,
)

FAST = settings(max_examples=40, deadline=None)


def table_game(table: np.ndarray):
    """A game given by its value on every coalition (mask -> integer index into `table`)."""
    def value(masks: np.ndarray) -> np.ndarray:
        idx = (masks.astype(np.int64) << np.arange(masks.shape[1])[None, :]).sum(axis=1)
        return table[idx]
    return value


def games(min_k: int = 1, max_k: int = 6):
    return st.integers(min_k, max_k).flatmap(
        lambda k: st.tuples(st.just(k), arrays(np.float64, 1 << k, elements=st.floats(-10, 10))))


def full(k: int) -> np.ndarray:
    return np.ones((1, k), dtype=bool)


def empty(k: int) -> np.ndarray:
    return np.zeros((1, k), dtype=bool)


@FAST
@given(games())
def test_exact_shapley_is_efficient(game):
    k, table = game
    v = table_game(table)
    phi = exact_shapley(v, k)
    assert phi.sum() == pytest.approx(float(v(full(k))[0] - v(empty(k))[0]), abs=1e-9)


@FAST
@given(games(min_k=2), st.data())
def test_exact_shapley_symmetry(game, data):
    """Players i and j that are interchangeable (v(S + i) = v(S + j) for S without both) get equal values."""
    k, table = game
    i, j = data.draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=2, unique=True))
    swap = np.arange(1 << k)
    bi, bj = (swap >> i) & 1, (swap >> j) & 1
    swapped = swap & ~((1 << i) | (1 << j)) | (bi << j) | (bj << i)
    sym = (table + table[swapped]) / 2  # symmetrized in i and j
    phi = exact_shapley(table_game(sym), k)
    assert phi[i] == pytest.approx(phi[j], abs=1e-9)


@FAST
@given(games(min_k=2), st.data())
def test_null_player_gets_zero(game, data):
    k, table = game
    i = data.draw(st.integers(0, k - 1))
    idx = np.arange(1 << k)
    null = table[idx & ~(1 << i)]  # adding i never changes the value
    v = table_game(null)
    assert exact_shapley(v, k)[i] == pytest.approx(0.0, abs=1e-9)
    assert sampled_shapley(v, k, np.random.default_rng(0), permutations=30).values[i] == pytest.approx(0, abs=1e-9)
    assert gtg_shapley(v, k, np.random.default_rng(0), eps_within=0.0, eps_between=0.0).values[i] == \
        pytest.approx(0, abs=1e-9)


def test_exact_shapley_of_additive_game_is_the_weights():
    w = np.array([3.0, -1.0, 0.5, 2.0])
    phi = exact_shapley(lambda m: m.astype(float) @ w, 4)
    assert np.allclose(phi, w)


@FAST
@given(games(max_k=7), st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_sampled_shapley_is_efficient(game, perms, seed):
    k, table = game
    v = table_game(table)
    est = sampled_shapley(v, k, np.random.default_rng(seed), permutations=perms)
    assert est.values.sum() == pytest.approx(float(v(full(k))[0] - v(empty(k))[0]), abs=1e-8)


def test_sampled_shapley_within_its_bound():
    rng = np.random.default_rng(1)
    k = 10
    table = rng.uniform(0, 1, 1 << k)
    v = table_game(table)
    truth = exact_shapley(v, k)
    misses = 0
    for seed in range(20):
        est = sampled_shapley(v, k, np.random.default_rng(seed), permutations=300, value_range=(0.0, 1.0))
        assert not est.empirical_range
        misses += int(np.abs(est.values - truth).max() > est.error_bound)
    assert misses <= 1  # the bound holds with probability >= 95% per run (it is loose: expect none)


def test_group_shapley_exact_up_to_eight_groups_then_sampled():
    w = np.arange(1.0, 12.0)
    additive = lambda m: m.astype(float) @ w[: m.shape[1]]  # noqa: E731
    exact = group_shapley(additive, EXACT_MAX_GROUPS)
    assert exact.exact and exact.error_bound == 0 and np.allclose(exact.values, w[:8])
    with pytest.raises(ConfigError):
        group_shapley(additive, 9)
    sampled = group_shapley(additive, 11, np.random.default_rng(0), permutations=20)
    assert not sampled.exact and np.allclose(sampled.values, w)  # additive: every marginal is exact


@FAST
@given(games(min_k=2, max_k=6), st.integers(0, 2**32 - 1))
def test_gtg_shapley_efficiency_without_truncation(game, seed):
    k, table = game
    v = table_game(table)
    gap = float(v(full(k))[0] - v(empty(k))[0])
    est = gtg_shapley(v, k, np.random.default_rng(seed), eps_between=0.0, eps_within=0.0)
    if gap == 0.0:
        assert np.allclose(est.values, 0)
    else:
        assert est.values.sum() == pytest.approx(gap, abs=1e-8)


def test_gtg_shapley_truncations():
    rng = np.random.default_rng(3)
    w = rng.uniform(0.1, 1.0, 6)
    sat = lambda m: 1 - np.exp(-(m.astype(float) @ w))  # noqa: E731  (diminishing returns)
    ref = exact_shapley(sat, 6)
    est = gtg_shapley(sat, 6, np.random.default_rng(0), eps_within=1e-3, max_permutations=120)
    assert abs(est.values.sum() - ref.sum()) <= 1e-3 + 1e-12  # within-round truncation: efficient within eps
    assert np.abs(est.values - ref).max() < 0.05
    flat = gtg_shapley(lambda m: np.full(len(m), 0.7), 6, rng, eps_between=1e-4)
    assert flat.permutations == 0 and np.all(flat.values == 0)  # between-round truncation


def test_gtg_shapley_finds_the_free_rider_and_the_poisoner():
    """Visible updates: member 0 sends zeros, member 1 a flipped update; utilities from re-aggregated means."""
    rng = np.random.default_rng(5)
    d = 20
    target = rng.normal(size=d)
    deltas = target[None, :] + 0.3 * rng.normal(size=(6, d))
    deltas[0] = 0.0
    deltas[1] = -3 * target
    sizes = np.full(6, 50.0)
    value = lambda m: -np.linalg.norm(subset_means(deltas, sizes, m) - target, axis=1)  # noqa: E731
    est = gtg_shapley(value, 6, np.random.default_rng(0), eps_within=0.0)
    honest = est.values[2:]
    assert est.values[1] < est.values[0] < honest.min()


@st.composite
def planted(draw):
    n = draw(st.integers(2, 12))
    rounds = draw(st.integers(4 * n, 8 * n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    phi = rng.uniform(0, 1, n)
    x = (rng.random((rounds, n)) < 0.5).astype(float)
    x[np.arange(rounds) % n, np.arange(rounds) % n] = 1.0  # everyone drawn sometimes
    noise = draw(st.floats(0, 0.01))
    return x, x @ phi + noise * rng.normal(size=rounds), phi


@FAST
@given(planted())
def test_regression_recovers_planted_contributions(case):
    x, y, phi = case
    # only a design that tells the members apart can recover them (found: two members always drawn together, whose
    # contributions no estimator can split)
    assume(np.linalg.matrix_rank(x) == x.shape[1] and np.linalg.cond(x) < 30)
    for nonneg in (False, True):
        est = attribute_rounds(x, y, shrinkage=1e-3, nonnegative=nonneg)
        assert np.abs(est.values - phi).max() < 0.1


def test_regression_shrinks_to_the_prior_with_no_evidence():
    x = np.zeros((0, 3))
    est = attribute_rounds(x, np.zeros(0), prior=np.array([1.0, 2.0, 3.0]), shrinkage=1.0)
    assert np.allclose(est.values, [1, 2, 3])
    # a member never drawn keeps its prior; weights and nonnegativity
    x = np.array([[1.0, 1.0, 0.0]] * 5)
    est = attribute_rounds(x, np.full(5, -4.0), prior=np.array([0.0, 0.0, 7.0]), shrinkage=0.5, nonnegative=True)
    assert est.values[2] == pytest.approx(7.0) and (est.values >= 0).all()


def test_size_prior_is_value_per_example_times_size():
    x = np.array([[1, 1, 0], [0, 1, 1]], dtype=float)
    prior = size_prior(x, np.array([3.0, 3.0]), np.array([10.0, 20.0, 30.0]))
    assert np.allclose(prior, np.array([10.0, 20.0, 30.0]) * 6 / 80)
    assert np.allclose(size_prior(np.zeros((0, 3)), np.zeros(0), np.ones(3)), 0)


def test_regression_rejects_bad_inputs():
    with pytest.raises(ConfigError):
        attribute_rounds(np.ones((2, 2)), np.ones(3))
    with pytest.raises(ConfigError):
        attribute_rounds(np.ones((2, 2)), np.ones(2), shrinkage=0)
    with pytest.raises(ConfigError):
        attribute_rounds(np.ones((2, 2)), np.array([1.0, np.nan]))


@given(st.integers(1, 200), st.integers(1, 20), st.integers(0, 2**32 - 1))
@FAST
def test_random_groups_partition_with_minimum_size(members, min_size, seed):
    groups = random_groups(members, min_size, np.random.default_rng(seed))
    joined = np.sort(np.concatenate(groups))
    assert np.array_equal(joined, np.arange(members))
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    if members >= min_size:
        assert min(sizes) >= min_size


def test_random_groups_deterministic_given_the_generator():
    a = random_groups(30, 5, np.random.default_rng(9))
    b = random_groups(30, 5, np.random.default_rng(9))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_subset_means_are_the_released_updates():
    deltas = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    w = np.array([1.0, 1.0, 2.0])
    masks = np.array([[False, False, False], [True, False, True], [True, True, True]])
    out = subset_means(deltas, w, masks)
    assert np.allclose(out[0], 0) and np.allclose(out[1], [3.0, 8 / 3]) and np.allclose(out[2], [9 / 4, 10 / 4])


def test_group_release_costs_more_for_smaller_groups():
    plan = plan_distributed_dp(epsilon=8.0, delta=1e-5, rounds=20, d=100, n=30, bits=24)
    whole = group_release_cost(plan, [30])
    assert whole.extra_epsilon == pytest.approx(0.0, abs=1e-6)
    assert whole.epsilon_without_groups == pytest.approx(plan.epsilon_total, rel=1e-6)
    small = group_release_cost(plan, [10, 10, 10])
    tiny = group_release_cost(plan, [5] * 6)
    assert 0 < small.extra_epsilon < tiny.extra_epsilon
    assert small.rho_groups == pytest.approx(plan.rho_per_round * 3, rel=0.05)  # a third of the noise
    half = group_release_cost(plan, [10, 10, 10], rounds_with_groups=10)
    assert 0 < half.extra_epsilon < small.extra_epsilon
    assert group_release_cost(plan, [10, 10, 10], rounds_with_groups=0).extra_epsilon == pytest.approx(0, abs=1e-6)
    secret = plan_distributed_dp(epsilon=8.0, delta=1e-5, rounds=20, d=100, n=30, bits=24, secret_sampling=True,
                                 sample_rate=0.5)
    with pytest.raises(ConfigError):
        group_release_cost(secret, [10, 10, 10])


def test_combined_score_gates_invalid_members_and_free_riders():
    phi = np.array([2.0, 1.0, 0.0, -1.0, 3.0])
    sizes = np.array([100.0, 50.0, 100.0, 80.0, 10.0])
    valid = np.array([1.0, 1.0, 1.0, 1.0, 0.9])
    s = combined_score(phi, sizes, valid)
    assert np.allclose(s, [2.0, 1.0, 0.0, 0.0, 0.0])  # one invalid message forfeits the window
    lenient = combined_score(phi, sizes, valid, min_validity=0.5)
    assert lenient[4] == pytest.approx(2.7)
    mixed = combined_score(phi, sizes, np.ones(5), size_weight=0.5)
    assert (mixed >= 0).all() and mixed[2] > 0 and math.isclose(mixed[0], 0.5 * 2 + 0.5 * 1.2 * 100 / 68)
    with pytest.raises(ConfigError):
        combined_score(phi, sizes, valid, size_weight=2)


# ---- uncertainty of the attribution: degrees of freedom, bounds, tests, flags ----------------


@st.composite
def grouped_rounds(draw):
    """Rounds that split n members into k random groups (the economics design), outcomes = group sums of
    planted values plus noise whose scale depends on the round."""
    n = draw(st.integers(4, 12))
    k = draw(st.integers(2, 3))
    rounds = draw(st.integers(3 * n, 6 * n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    phi = rng.uniform(-0.5, 1.0, n)
    rows, rid = [], []
    for r in range(rounds):
        for g in np.array_split(rng.permutation(n), k):
            row = np.zeros(n)
            row[g] = 1.0
            rows.append(row)
            rid.append(r)
    x = np.array(rows)
    scale = draw(st.floats(0.0, 0.05)) * rng.uniform(0.2, 3.0, rounds)[np.array(rid)]
    return x, x @ phi + scale * rng.normal(size=len(rid)), np.array(rid), phi


@FAST
@given(grouped_rounds(), st.floats(1e-4, 2.0))
def test_residual_degrees_of_freedom_are_rows_minus_the_effective_parameters(case, lam):
    x, y, _rid, _ = case
    fit = attribute_rounds(x, y, shrinkage=lam)
    n = x.shape[1]
    assert x.shape[0] - n - 1e-9 <= fit.dof <= x.shape[0]  # tr(H) in [0, N) for a ridge fit
    h = x @ np.linalg.solve(x.T @ x + lam * np.eye(n), x.T)
    assert fit.dof == pytest.approx(x.shape[0] - np.trace(h), rel=1e-6, abs=1e-9)
    assert np.isfinite(fit.stderr).all() and (fit.stderr >= 0).all()


def test_no_rows_means_no_residual_freedom_and_unbounded_values():
    fit = attribute_rounds(np.zeros((0, 3)), np.zeros(0), shrinkage=1.0)
    assert fit.dof == 0 and np.isinf(fit.stderr).all()
    lo, hi = value_bounds(fit, 0.95)
    assert np.isneginf(lo).all() and np.isposinf(hi).all()
    assert not shown_to_contribute(fit, np.ones(3, dtype=bool), 0.05).any()


@FAST
@given(grouped_rounds(), st.floats(0.5, 0.999), st.floats(0.5, 0.999))
def test_bounds_bracket_the_estimate_and_widen_with_the_level(case, a, b):
    x, y, _rid, _ = case
    fit = attribute_rounds(x, y, shrinkage=0.1)
    lo_a, hi_a = value_bounds(fit, min(a, b))
    lo_b, hi_b = value_bounds(fit, max(a, b))
    assert (lo_b <= lo_a + 1e-12).all() and (lo_a <= fit.values + 1e-12).all()
    assert (fit.values <= hi_a + 1e-12).all() and (hi_a <= hi_b + 1e-12).all()
    assert np.allclose(hi_a - fit.values, fit.values - lo_a)  # symmetric
    with pytest.raises(ConfigError):
        value_bounds(fit, 1.0)


def _fit(values, stderr, dof):
    values = np.asarray(values, dtype=float)
    return type(attribute_rounds(np.zeros((0, 1)), np.zeros(0)))(
        values=values, prior=np.zeros_like(values), shrinkage=1.0, rows=10, residual_rms=0.0,
        stderr=np.asarray(stderr, dtype=float), dof=dof)


@FAST
@given(arrays(np.float64, st.integers(1, 15), elements=st.floats(-3, 3)), st.floats(0.001, 0.3),
       st.floats(1.0, 200.0))
def test_holm_shows_a_prefix_of_the_strongest_and_more_with_a_larger_alpha(values, alpha, dof):
    fit = _fit(values, np.full(len(values), 0.5), dof)
    cand = np.ones(len(values), dtype=bool)
    shown = shown_to_contribute(fit, cand, alpha)
    # a shown member's evidence is at least as strong as every member not shown
    if shown.any() and (~shown).any():
        assert values[shown].min() >= values[~shown].max()
    assert (shown <= shown_to_contribute(fit, cand, min(0.5, 2 * alpha))).all()
    assert not shown[values <= 0].any()  # a non-positive estimate is never shown
    # Holm is at least as strict as one unadjusted test per member
    lo, _ = value_bounds(fit, 1 - alpha)
    assert not shown[lo <= 0].any()
    # members outside the candidates are never shown
    assert not shown_to_contribute(fit, np.zeros(len(values), dtype=bool), alpha).any()


def test_holm_controls_the_chance_of_paying_any_of_many_free_riders():
    """20 members who all contribute nothing (true value 0): the chance that any is shown is <= alpha for Holm,
    while one test per member shows some free rider most of the time."""
    rng = np.random.default_rng(11)
    dof, trials, alpha = 50.0, 2000, 0.05
    any_holm = any_single = 0
    for _ in range(trials):
        est = rng.standard_t(dof, 20) * 0.1
        fit = _fit(est, np.full(20, 0.1), dof)
        any_holm += shown_to_contribute(fit, np.ones(20, dtype=bool), alpha).any()
        any_single += (value_bounds(fit, 1 - alpha)[0] > 0).any()
    assert any_holm / trials <= alpha + 0.015
    assert any_single / trials > 0.5


def test_low_value_per_example_flags_by_the_upper_bound_per_committed_example():
    sizes = np.array([60.0, 20.0, 40.0, 40.0, 60.0])
    values = np.array([0.0, 0.2, 0.4, 0.45, 0.3])  # per example: 0, 0.01, 0.01, 0.011, 0.005
    fit = _fit(values, np.full(5, 0.01), 100.0)
    valid = np.array([True, True, True, True, False])
    flags = low_value_per_example(fit, sizes, valid, level=0.95, ratio=0.5)
    # the zero member (big committed size) is flagged; the small clean member is not; the invalid one is
    assert flags.tolist() == [True, False, False, False, True]
    # the same zero member with a wide bound (the rounds say little about it) is not flagged
    wide = _fit(values, np.array([1.0, 0.01, 0.01, 0.01, 0.01]), 100.0)
    assert not low_value_per_example(wide, sizes, valid, level=0.95, ratio=0.5)[0]
    with pytest.raises(ConfigError):
        low_value_per_example(fit, np.zeros(5), valid, level=0.95, ratio=0.5)


@FAST
@given(arrays(np.float64, st.integers(2, 12), elements=st.floats(-1, 1)), st.floats(0.01, 1.0),
       st.floats(1e-3, 1e3))
def test_low_value_flags_do_not_depend_on_the_unit_of_value(values, se, c):
    n = len(values)
    sizes = np.arange(1, n + 1, dtype=float) * 10
    valid = np.ones(n, dtype=bool)
    a = low_value_per_example(_fit(values, np.full(n, se), 30.0), sizes, valid, level=0.9, ratio=0.5)
    b = low_value_per_example(_fit(c * values, np.full(n, c * se), 30.0), sizes, valid, level=0.9, ratio=0.5)
    assert (a == b).all()
