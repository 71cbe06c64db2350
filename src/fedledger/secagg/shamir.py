"""Shamir secret sharing over the prime field GF(2**31 - 1), vectorized with numpy.

A 32-byte secret is cut into 16 chunks of 16 bits; every chunk is shared with its own random
polynomial of degree t-1 (independent polynomials keep the scheme perfectly hiding below t
shares). Share j is the evaluation of all 16 polynomials at x_j (1 <= x_j < p), 64 bytes on the
wire. Products of two field elements are below 2**62, so int64 arithmetic never overflows when
every multiplication is reduced at once.

`split_many` / `combine_many` handle many secrets in one call (the server reconstructs all the
secrets of a round at once): Horner evaluation and Lagrange weights at zero are whole-array
operations; the only Python loops run over the threshold t (tens), never over secrets or shares.
"""

from __future__ import annotations

import numpy as np

from fedledger.secagg.entropy import CryptoRng
from fedledger.secagg.errors import DecodeError

PRIME = (1 << 31) - 1
CHUNKS = 16  # 16-bit chunks of a 32-byte secret
SHARE_BYTES = 4 * CHUNKS


def secret_to_elements(secrets: np.ndarray) -> np.ndarray:
    """[S, 32] uint8 -> [S, 16] int64 chunks (big-endian 16-bit)."""
    s = np.ascontiguousarray(secrets, dtype=np.uint8).reshape(-1, 32)
    return s.view(">u2").astype(np.int64)


def elements_to_secret(elems: np.ndarray) -> np.ndarray:
    e = np.asarray(elems, dtype=np.int64)
    if e.size and (int(e.min()) < 0 or int(e.max()) > 0xFFFF):
        raise DecodeError("reconstructed chunk out of range: shares are inconsistent")
    return e.astype(">u2").view(np.uint8).reshape(-1, 32)


def _mulmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b) % PRIME


def split_many(secrets: np.ndarray, xs: np.ndarray, threshold: int, rng: CryptoRng) -> np.ndarray:
    """Share each of S secrets ([S, 32] bytes) at the points xs ([S, k] ints in 1..p-1).

    Returns [S, k, 16] int64 shares. Any `threshold` of a secret's shares recover it.
    """
    sec = secret_to_elements(secrets)
    S = sec.shape[0]
    x = np.asarray(xs, dtype=np.int64).reshape(S, -1)
    k = x.shape[1]
    if not 1 <= threshold <= k:
        raise ValueError(f"threshold must be in 1..{k}, got {threshold}")
    if x.size and (int(x.min()) < 1 or int(x.max()) >= PRIME):
        raise ValueError("share points must be in 1..p-1")
    # coefficients a_1..a_{t-1}, uniform in the field
    coeffs = rng.below(PRIME, size=S * (threshold - 1) * CHUNKS).astype(np.int64)
    coeffs = coeffs.reshape(S, threshold - 1, CHUNKS)
    # Horner: f(x) = (((a_{t-1} x + a_{t-2}) x + ...) x + a_0)
    acc = np.zeros((S, k, CHUNKS), dtype=np.int64)
    xx = x[:, :, None]
    for j in range(threshold - 2, -1, -1):
        acc = (_mulmod(acc, xx) + coeffs[:, None, j, :]) % PRIME
    acc = (_mulmod(acc, xx) + sec[:, None, :]) % PRIME
    return acc


def _powmod(base: np.ndarray, exp: int) -> np.ndarray:
    result = np.ones_like(base)
    b = base % PRIME
    while exp:
        if exp & 1:
            result = _mulmod(result, b)
        b = _mulmod(b, b)
        exp >>= 1
    return result


def lagrange_at_zero(xs: np.ndarray) -> np.ndarray:
    """Weights w_i = prod_{j != i} x_j / (x_j - x_i) mod p, for rows of distinct points [S, t]."""
    x = np.asarray(xs, dtype=np.int64)
    S, t = x.shape
    num = np.ones((S, t), dtype=np.int64)
    den = np.ones((S, t), dtype=np.int64)
    for m in range(t):
        xm = x[:, m : m + 1]
        diff = (xm - x) % PRIME  # x_m - x_i
        is_self = np.zeros(t, dtype=bool)
        is_self[m] = True
        num = np.where(is_self, num, _mulmod(num, np.broadcast_to(xm, (S, t))))
        den = np.where(is_self, den, _mulmod(den, diff))
    if (den == 0).any():
        raise DecodeError("duplicate share points")
    return _mulmod(num, _powmod(den, PRIME - 2))


def lagrange_at(xs: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Weights w_i = prod_{j != i} (x0 - x_j) / (x_i - x_j) mod p: sum_i w_i f(x_i) = f(x0) for rows of
    distinct points xs [S, t] and one target x0 [S] per row, when deg f < t."""
    x = np.asarray(xs, dtype=np.int64)
    z = np.asarray(x0, dtype=np.int64).reshape(-1, 1)
    S, t = x.shape
    num = np.ones((S, t), dtype=np.int64)
    den = np.ones((S, t), dtype=np.int64)
    for m in range(t):
        xm = x[:, m : m + 1]
        is_self = np.zeros(t, dtype=bool)
        is_self[m] = True
        num = np.where(is_self, num, _mulmod(num, np.broadcast_to((z - xm) % PRIME, (S, t))))
        den = np.where(is_self, den, _mulmod(den, (x - xm) % PRIME))
    if (den == 0).any():
        raise DecodeError("duplicate share points")
    return _mulmod(num, _powmod(den, PRIME - 2))


def consistent_rows(xs: np.ndarray, shares: np.ndarray, threshold: int) -> np.ndarray:
    """Per row, whether all c >= t shares ([S, c] points, [S, c, 16] values) lie on one polynomial of
    degree < t in every chunk: the first t define it, each further share must be its value there."""
    x = np.asarray(xs, dtype=np.int64)
    y = np.asarray(shares, dtype=np.int64)
    S, c = x.shape
    ok = np.ones(S, dtype=bool)
    for e in range(threshold, c):
        w = lagrange_at(x[:, :threshold], x[:, e])
        pred = np.zeros((S, CHUNKS), dtype=np.int64)
        for i in range(threshold):
            pred = (pred + _mulmod(y[:, i, :], w[:, i : i + 1])) % PRIME
        ok &= (pred == y[:, e, :]).all(axis=1)
    return ok


def combine_rows(xs: np.ndarray, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like `combine_many`, but a row whose shares rebuild a chunk outside 16 bits (shares dealt
    inconsistently) is flagged instead of failing the batch: returns ([S, 32] uint8, ok [S] bool)."""
    x = np.asarray(xs, dtype=np.int64)
    y = np.asarray(shares, dtype=np.int64)
    if y.shape != (*x.shape, CHUNKS):
        raise ValueError(f"shares must have shape {(*x.shape, CHUNKS)}, got {y.shape}")
    w = lagrange_at_zero(x)
    acc = np.zeros((x.shape[0], CHUNKS), dtype=np.int64)
    for i in range(x.shape[1]):
        acc = (acc + _mulmod(y[:, i, :], w[:, i : i + 1])) % PRIME
    ok: np.ndarray = np.asarray((acc <= 0xFFFF).all(axis=1), dtype=bool)
    return elements_to_secret(np.where(ok[:, None], acc, 0)), ok


def combine_many(xs: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Recover S secrets from exactly t shares each: xs [S, t], shares [S, t, 16] -> [S, 32] uint8."""
    x = np.asarray(xs, dtype=np.int64)
    y = np.asarray(shares, dtype=np.int64)
    if y.shape != (*x.shape, CHUNKS):
        raise ValueError(f"shares must have shape {(*x.shape, CHUNKS)}, got {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= PRIME):
        raise DecodeError("share element outside the field")
    w = lagrange_at_zero(x)
    acc = np.zeros((x.shape[0], CHUNKS), dtype=np.int64)
    for i in range(x.shape[1]):
        acc = (acc + _mulmod(y[:, i, :], w[:, i : i + 1])) % PRIME
    return elements_to_secret(acc)


def split(secret: bytes, xs: list[int] | np.ndarray, threshold: int, rng: CryptoRng) -> list[bytes]:
    """Share one 32-byte secret at points xs; returns one 64-byte share per point."""
    if len(secret) != 32:
        raise ValueError("secret must be 32 bytes")
    sh = split_many(np.frombuffer(secret, dtype=np.uint8)[None, :], np.asarray(xs)[None, :], threshold, rng)
    return [share_to_bytes(row) for row in sh[0]]


def combine(xs: list[int] | np.ndarray, shares: list[bytes]) -> bytes:
    y = np.stack([share_from_bytes(s) for s in shares])[None]
    return combine_many(np.asarray(xs, dtype=np.int64)[None, :], y)[0].tobytes()


def share_to_bytes(elems: np.ndarray) -> bytes:
    return np.asarray(elems, dtype=np.int64).astype(">u4").tobytes()


def share_from_bytes(data: bytes) -> np.ndarray:
    if len(data) != SHARE_BYTES:
        raise DecodeError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    e = np.frombuffer(data, dtype=">u4").astype(np.int64)
    if int(e.max()) >= PRIME:
        raise DecodeError("share element outside the field")
    return e
