"""The exact discrete Gaussian sampler matches its distribution."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.stats import chisquare

from fedledger.core.rng import CryptoRng, DeterministicEntropy, Purpose
from fedledger.privacy.discrete_gaussian import (
    bernoulli_exp,
    bernoulli_exp_fast,
    bernoulli_ratio,
    discrete_gaussian_pmf,
    discrete_laplace,
    geometric_exp_minus_one,
    sample_discrete_gaussian,
)


def _chi2_against(samples: np.ndarray, probs_of: np.ndarray, support: np.ndarray) -> float:
    """Chi-square p-value with the tails lumped into two end cells."""
    lo, hi = support[0], support[-1]
    clipped = np.clip(samples, lo - 1, hi + 1)
    counts = np.bincount(clipped - (lo - 1), minlength=len(support) + 2)
    p = probs_of
    expected = np.concatenate([[0.0], p, [0.0]])
    expected[0] = max(0.0, (1 - p.sum()) / 2)
    expected[-1] = max(0.0, 1 - p.sum() - expected[0])
    keep = expected * len(samples) >= 5
    obs, exp = counts[keep], expected[keep] * len(samples)
    exp *= obs.sum() / exp.sum()
    return float(chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("variance", [1, 2, 7, 30, 1000])
def test_samples_match_the_discrete_gaussian_pmf(variance: int) -> None:
    rng = CryptoRng(os.urandom(32))
    s = sample_discrete_gaussian(variance, 120_000, rng)
    w = int(5 * math.sqrt(variance))
    support = np.arange(-w, w + 1)
    assert _chi2_against(s, discrete_gaussian_pmf(variance, support), support) > 1e-4
    assert abs(s.mean()) < 5 * math.sqrt(variance / len(s))
    # the variance of N_Z(0, s2) is slightly below s2 for small s2; compare with the exact value
    xs = np.arange(-40 * w - 10, 40 * w + 11)
    exact_var = float((discrete_gaussian_pmf(variance, xs) * xs**2).sum())
    assert abs(s.var() / exact_var - 1) < 0.03


def test_large_variance_scale_and_symmetry() -> None:
    var = 1 << 24
    s = sample_discrete_gaussian(var, 200_000, CryptoRng(os.urandom(32)))
    assert abs(s.var() / var - 1) < 0.02
    assert abs((s > 0).mean() - (s < 0).mean()) < 0.01
    # normality of the standardised samples: binned chi-square against the Gaussian cdf
    from scipy.stats import norm

    edges = np.linspace(-4, 4, 33)
    counts, _ = np.histogram(s / math.sqrt(var), bins=edges)
    expected = np.diff(norm.cdf(edges)) * len(s)
    expected *= counts.sum() / expected.sum()
    assert chisquare(counts, expected).pvalue > 1e-4


@pytest.mark.parametrize(("num", "den"), [(0, 1), (3, 10), (1, 1), (17, 10), (5, 1), (123456789, 98765432)])
@pytest.mark.parametrize("fn", [bernoulli_exp, bernoulli_exp_fast])
def test_bernoulli_exp_has_probability_exp_minus_gamma(num: int, den: int, fn) -> None:  # type: ignore[no-untyped-def]
    n = 200_000
    out = fn(np.full(n, num), np.full(n, den), CryptoRng(os.urandom(32)))
    p = math.exp(-num / den)
    assert abs(out.mean() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_geometric_matches_its_distribution() -> None:
    n = 200_000
    v = geometric_exp_minus_one(n, CryptoRng(os.urandom(32)))
    support = np.arange(0, 12)
    p = (1 - math.exp(-1)) * np.exp(-support.astype(float))
    assert _chi2_against(v, p, support) > 1e-4


def test_bernoulli_ratio_is_exact_at_the_edges() -> None:
    rng = CryptoRng(os.urandom(32))
    n = 10_000
    assert not bernoulli_ratio(np.zeros(n, np.int64), np.ones(n, np.int64), rng).any()
    assert bernoulli_ratio(np.ones(n, np.int64), np.ones(n, np.int64), rng).all()
    # a probability within the float ambiguity band is decided by the exact path, correctly on average
    big = (1 << 61) - 1
    out = bernoulli_ratio(np.full(n, big // 2), np.full(n, big), rng)
    assert abs(out.mean() - 0.5) < 5 * math.sqrt(0.25 / n)


def test_discrete_laplace_matches_its_pmf() -> None:
    t = 3
    s = discrete_laplace(t, 100_000, CryptoRng(os.urandom(32)))
    support = np.arange(-15, 16)
    w = np.exp(-np.abs(np.arange(-200, 201)) / t)
    p = np.exp(-np.abs(support) / t) / w.sum()
    assert _chi2_against(s, p, support) > 1e-4


def test_invalid_variance_is_rejected() -> None:
    rng = CryptoRng(os.urandom(32))
    for bad in (0, 2.5, (1 << 24) + 1):
        with pytest.raises(ValueError):
            sample_discrete_gaussian(bad, 10, rng)  # type: ignore[arg-type]


def test_seeded_sampler_is_reproducible() -> None:
    a = sample_discrete_gaussian(50, 1000, DeterministicEntropy(7).stream(Purpose.DP_NOISE, label="x"))
    b = sample_discrete_gaussian(50, 1000, DeterministicEntropy(7).stream(Purpose.DP_NOISE, label="x"))
    c = sample_discrete_gaussian(50, 1000, DeterministicEntropy(8).stream(Purpose.DP_NOISE, label="x"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
