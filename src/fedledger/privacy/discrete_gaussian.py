"""Exact discrete Gaussian sampling (Canonne, Kamath, Steinke 2020, Algorithms 1-3), vectorized.

N_Z(0, sigma^2) puts mass proportional to exp(-x^2 / (2 sigma^2)) on every integer x. The
sampler uses only integer arithmetic and exactly uniform integers from a `CryptoRng`, so the
output distribution is exact (no floating-point exp): Bernoulli(exp(-gamma)) for rational gamma
by the alternating-series method, a discrete Laplace proposal of scale t = floor(sigma) + 1,
and rejection with probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)).

sigma^2 must be an integer (callers round the variance up, which only adds privacy) and at most
2**24, so that every intermediate fits in int64 on the vectorized path; proposals beyond
|y| > 2**18 (probability below exp(-60) per draw) take an exact arbitrary-precision path.
All loops run over rejection rounds, never over samples.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np

from fedledger.core.rng import CryptoRng

MAX_VARIANCE = 1 << 24
_FAST_ABS = 1 << 18


_ULP = 2.0**-53
_EPS = 2.0**-50


def _exact_less(v: int, num: int, den: int, rng: CryptoRng) -> bool:
    """Is u < num/den, where u's first 53 bits are v and the rest are fresh random bits? (exact)"""
    a, scale = v, 53
    while True:
        a = (a << 64) | int(rng.words(1)[0])
        scale += 64
        target = num << scale
        if (a + 1) * den <= target:
            return True
        if a * den >= target:
            return False


def bernoulli_ratio(num: np.ndarray, den: np.ndarray, rng: CryptoRng) -> np.ndarray:
    """Exact Bernoulli(num/den) for int64 arrays with 0 <= num <= den < 2**62.

    A uniform u in [0, 1) is drawn lazily: its first 53 bits settle the comparison with num/den
    unless u lies within 2**-50 of the float estimate of num/den (probability about 2**-49);
    those rare cases extend u with more random bits and compare with Python integers.
    """
    n = num.size
    p = num.astype(np.float64) / den.astype(np.float64)
    vi = rng.words(n) >> np.uint64(11)
    v = vi.astype(np.float64) * _ULP
    yes = v + _ULP <= p - _EPS
    no = v >= p + _EPS
    out = yes
    for i in np.nonzero(~(yes | no))[0]:
        out[i] = _exact_less(int(vi[i]), int(num[i]), int(den[i]), rng)
    return out


def bernoulli_exp_le1(num: np.ndarray, den: np.ndarray, rng: CryptoRng) -> np.ndarray:
    """Bernoulli(exp(-num/den)) for 0 <= num <= den (arrays of int64), exactly (CKS20 Alg. 1)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    out = np.zeros(num.shape, dtype=bool)
    k = np.ones(num.shape, dtype=np.int64)
    active = np.arange(num.size)
    nf, df = num.reshape(-1), den.reshape(-1)
    kf, of = k.reshape(-1), out.reshape(-1)
    while active.size:
        # A ~ Bernoulli(gamma / K) = [uniform in [0, den*K) < num]
        a = bernoulli_ratio(nf[active], df[active] * kf[active], rng)
        stop = active[~a]
        of[stop] = (kf[stop] % 2) == 1
        active = active[a]
        kf[active] += 1
    return out


def bernoulli_exp(num: np.ndarray, den: np.ndarray, rng: CryptoRng) -> np.ndarray:
    """Bernoulli(exp(-num/den)) for any num >= 0 (CKS20 Alg. 1, integer part by repeated trials)."""
    num = np.asarray(num, dtype=np.int64).reshape(-1)
    den = np.asarray(den, dtype=np.int64).reshape(-1)
    whole = num // den
    frac = num - whole * den
    ok = bernoulli_exp_le1(frac, den, rng)
    # all of `whole` independent Bernoulli(exp(-1)) trials must succeed
    need = np.nonzero(ok & (whole > 0))[0]
    left = whole[need].copy()
    while need.size:
        one = np.ones(need.size, dtype=np.int64)
        a = bernoulli_exp_le1(one, one, rng)
        ok[need[~a]] = False
        left = left - 1
        keep = a & (left > 0)
        need, left = need[keep], left[keep]
    return ok


def _geometric_exp_minus_one(size: int, rng: CryptoRng) -> np.ndarray:
    """Number of successes before the first failure of Bernoulli(exp(-1)) trials."""
    v = np.zeros(size, dtype=np.int64)
    active = np.arange(size)
    while active.size:
        one = np.ones(active.size, dtype=np.int64)
        a = bernoulli_exp_le1(one, one, rng)
        v[active[a]] += 1
        active = active[a]
    return v


_DEC_PREC = 160  # decimal digits for the rare exact comparisons (about 530 bits)


def _exp_neg_decimal(num: int, den: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        return (-(Decimal(num) / Decimal(den))).exp()


def _u_less_than(a: int, scale: int, p: Decimal, rng: CryptoRng) -> bool:
    """u < p for the uniform u whose first `scale` bits are a (more bits drawn as needed); exact
    as long as p is known to within 2**-scale, which 160 digits give up to scale ~ 530."""
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        while scale < 500:
            lo = Decimal(a) / (Decimal(2) ** scale)
            hi = Decimal(a + 1) / (Decimal(2) ** scale)
            if hi <= p:
                return True
            if lo >= p:
                return False
            a = (a << 64) | int(rng.words(1)[0])
            scale += 64
    raise ArithmeticError("uniform within 2**-500 of the threshold")  # probability < 2**-440


def bernoulli_exp_fast(num: np.ndarray, den: np.ndarray, rng: CryptoRng) -> np.ndarray:
    """Exact Bernoulli(exp(-num/den)) for int64 num >= 0, den >= 1: one uniform per draw.

    The uniform's first 53 bits are compared with a float estimate of exp(-num/den) (relative
    error far below 2**-40 for num/den < 2**10); draws within the error margin (probability about
    2**-40) are settled by `_u_less_than` against a 160-digit value. Large num/den (p < 2**-60)
    are decided by the exact path too. So the result has exactly the stated distribution.
    """
    num = np.asarray(num, dtype=np.int64).reshape(-1)
    den = np.asarray(den, dtype=np.int64).reshape(-1)
    g = num.astype(np.float64) / den.astype(np.float64)
    p = np.exp(-g)
    margin = p * (2.0**-40) * np.maximum(1.0, g) + 2.0**-60
    vi = rng.words(num.size) >> np.uint64(11)
    v = vi.astype(np.float64) * _ULP
    yes = v + _ULP <= p - margin
    no = v >= p + margin
    out = yes
    for i in np.nonzero(~(yes | no))[0]:
        out[i] = _u_less_than(int(vi[i]), 53, _exp_neg_decimal(int(num[i]), int(den[i])), rng)
    return out


def geometric_exp_minus_one(size: int, rng: CryptoRng) -> np.ndarray:
    """Exact V with P(V >= v) = exp(-v): V = floor(-ln u), decided on 53 bits of u unless ambiguous."""
    vi = rng.words(size) >> np.uint64(11)
    v = vi.astype(np.float64) * _ULP
    with np.errstate(divide="ignore"):
        hi = -np.log(v)  # -ln of the smallest u in the interval (inf when v = 0)
    lo = -np.log(v + _ULP)
    a = np.floor(lo * (1 - 2.0**-45))
    b = np.floor(hi * (1 + 2.0**-45))
    out = a.astype(np.int64)
    for i in np.nonzero(~np.isfinite(hi) | (a != b))[0]:
        # V = the largest k with u < exp(-k); start below the float estimate and walk up exactly
        k = max(0, int(a[i]) - 1) if np.isfinite(a[i]) else 0
        while _u_less_than(int(vi[i]), 53, _exp_neg_decimal(k + 1, 1), rng):
            k += 1
        out[i] = k
    return out


def discrete_laplace(t: int, size: int, rng: CryptoRng) -> np.ndarray:
    """Exact samples with P(y) proportional to exp(-|y| / t) (CKS20 Alg. 2, s = 1)."""
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        m = todo.size
        u = rng.below(t, size=m).astype(np.int64)
        d = bernoulli_exp_fast(u, np.full(m, t, dtype=np.int64), rng)
        v = geometric_exp_minus_one(m, rng)
        x = u + t * v
        neg = rng.bits(m)
        good = d & ~(neg & (x == 0))
        out[todo[good]] = np.where(neg[good], -x[good], x[good])
        todo = todo[~good]
    return out


def _accept_exact(y: int, var: int, t: int, rng: CryptoRng) -> bool:
    """Acceptance with Python integers (the rare |y| > 2**18 path); exact."""
    num = (abs(y) * t - var) ** 2
    den = 2 * var * t * t
    g = math.gcd(num, den)
    num, den = num // g, den // g
    while num >= den:
        one = np.ones(1, dtype=np.int64)
        if not bernoulli_exp_le1(one, one, rng)[0]:
            return False
        num -= den
    if den < (1 << 62):
        return bool(bernoulli_exp_le1(np.array([num]), np.array([den]), rng)[0])
    # denominators beyond int64: the alternating-series method with big-integer uniforms
    k = 1
    while True:
        bound = den * k
        nbytes = (bound.bit_length() + 7) // 8 + 8
        u = int.from_bytes(rng.bytes(nbytes), "little") % bound  # bias < 2**-64 per draw
        if u >= num:
            return k % 2 == 1
        k += 1


def sample_discrete_gaussian(variance: int, size: int, rng: CryptoRng) -> np.ndarray:
    """`size` exact samples of N_Z(0, variance) (CKS20 Alg. 3) as int64."""
    var = int(variance)
    if var != variance or var < 1 or var > MAX_VARIANCE:
        raise ValueError(f"variance must be an integer in 1..{MAX_VARIANCE}, got {variance}")
    t = math.isqrt(var) + 1  # floor(sigma) + 1
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        m = todo.size
        y = discrete_laplace(t, m, rng)
        ay = np.abs(y)
        fast = ay <= _FAST_ABS
        accept = np.zeros(m, dtype=bool)
        fi = np.nonzero(fast)[0]
        if fi.size:
            diff = ay[fi] * t - var  # |y| t - sigma^2, |.| < 2**31
            num = diff * diff
            den = np.full(fi.size, 2 * var * t * t, dtype=np.int64)
            accept[fi] = bernoulli_exp_fast(num, den, rng)
        for i in np.nonzero(~fast)[0]:
            accept[i] = _accept_exact(int(y[i]), var, t, rng)
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out


def discrete_gaussian_pmf(variance: float, support: np.ndarray) -> np.ndarray:
    """The exact probabilities of N_Z(0, variance) on `support` (normalised over a wide window)."""
    sigma = math.sqrt(variance)
    w = math.ceil(40 * sigma) + 10
    xs = np.arange(-w, w + 1)
    z = np.exp(-(xs.astype(np.float64) ** 2) / (2 * variance)).sum()
    return np.exp(-(np.asarray(support, dtype=np.float64) ** 2) / (2 * variance)) / z
