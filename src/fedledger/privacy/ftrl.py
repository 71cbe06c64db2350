"""Correlated noise across rounds: matrix-factorization mechanisms for DP-FTRL (member level).

A model trained by FedAvg/FTRL is a function of the *prefix sums* of the rounds' aggregates: with x_t the sum
of the members' clipped updates in release t, the model after release t depends on (S x)_t, S the lower
triangular all-ones matrix. A matrix-factorization mechanism (Denisov, McMahan, Rush, Smith, Thakurta 2022)
writes S = B C, releases C x + z with z ~ N(0, sigma^2 I) once, and estimates the prefix sums as
B (C x + z) = S x + B z. Released round by round, the noise on release t is the *increment*
(D z)_t with D = S^-1 B: a combination of the noise drawn so far, which is what `CorrelatedNoise` streams.

Factorizations (`Factorization`, all causal: release t only uses noise drawn by release t):

* `identity(T)`: C = I, independent noise each release (DP-FedAvg, McMahan et al. 2018).
* `binary_tree(T, restart=)`: tree aggregation (Dwork, Naor, Pitassi, Rothblum 2010; Chan, Shi, Song 2011),
  as DP-FTRL uses it (Kairouz, McMahan, Song, Thakkar, Thakurta, Xu 2021, "Practical and Private (Deep)
  Learning without Sampling or Shuffling"): C has one row per dyadic interval, the prefix at t sums the
  nodes of t's binary decomposition. Dyadic intervals are clipped to the tree's length, so the last prefix
  of a tree is its root alone (the completed tree: one node's noise on a tree's total); with `restart`, a new
  tree starts every `restart` releases and earlier trees enter the prefix through their roots.
* `sqrt_toeplitz(T, bands=)`: C = B = S^(1/2), the lower-triangular Toeplitz matrix of the coefficients of
  (1 - x)^(-1/2), binom(2k, k) / 4^k (Fichtenberger, Henzinger, Upadhyay 2023, "Constant matters"; Henzinger,
  Upadhyay, Upadhyay 2023); `bands=b` keeps b diagonals of C (banded MF, Choquette-Choo, McMahan, Rush,
  Thakurta 2023; Kalinin and Lampert 2024 "banded square root") and B = S C^-1.

Sensitivity (`Factorization.sensitivity`). A member's update enters the releases it takes part in, each of
L2 norm at most the clip norm; with participation pattern P (the releases it is in), the L2 sensitivity of
C x is sup || sum_{t in P} C[:, t] x_t || over ||x_t|| <= 1. Where C^T C is entrywise non-negative (all the
factorizations above) the supremum is at aligned updates: || C[:, P] 1 || (Choquette-Choo et al. 2023,
multi-epoch MF, Thm. 2); otherwise `sensitivity` returns the upper bound sqrt(sum_{s,t in P} |C^T C|_st)
(Cauchy-Schwarz), never less than the truth. The max is over the patterns given.

Accounting (`mf_event`, `calibrate_mf`, `mf_epsilon`): the whole stream is ONE Gaussian mechanism on C x with
that sensitivity, released adaptively (the privacy of an adaptive stream through a lower-triangular C:
Denisov et al. 2022, Thm. 2.1), so its event is `GaussianDpEvent(sigma / sensitivity)` and (eps, delta) comes
from the project's accountant (`accounting.epsilon_of`, dp-accounting RDP). For C = I and every member in every
release this is exactly `calibrate_rounds` (T Gaussian releases compose to one with sqrt(T) times the
sensitivity), which the tests check.

Where the noise is added. This module is the *trusted-server* variant: the server (`central_member_dp` with a
factorization) draws z and adds (D z)_t to release t's sum. It assumes the server sees the sums before noise
and keeps z secret: the guarantee holds against everyone who sees only the released models (members,
validators, the chain, the public), not against the server. The distributed discrete Gaussian pipeline
(`privacy.distributed`) does not take these streams. Two reasons, measured in docs/privacy.md: (i) with public
cohorts every member is in every round, and then no factorization beats independent noise on the last model
(the final sum has sensitivity T C, so any Gaussian mechanism puts noise of std >= T C / sqrt(2 rho) on it,
which C = I already attains), and the square-root and tree factorizations put *more* noise on it (about 1.1x and
2.1x at T = 10); (ii) a member's share of a correlated stream must cancel across rounds, which needs the same
survivors and the same rotation in every round of a tree or band, and real-valued D has no exact discrete
Gaussian share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import dp_accounting as dpa
import numpy as np
import torch

from fedledger.core.errors import ConfigError, PrivacyBudgetExceeded
from fedledger.privacy.accounting import calibrate_rounds, epsilon_of


def prefix_matrix(releases: int) -> np.ndarray:
    """S: lower-triangular ones, (S x)_t = x_1 + ... + x_t."""
    return np.tril(np.ones((releases, releases)))


@dataclass(frozen=True)
class Factorization:
    """S = decoder @ encoder for the prefix sums of `releases` releases; noise columns ordered causally."""

    name: str
    encoder: np.ndarray  # C: [m, T]
    decoder: np.ndarray  # B: [T, m]

    def __post_init__(self) -> None:
        t = self.releases
        if self.encoder.ndim != 2 or self.decoder.shape != (t, self.encoder.shape[0]):
            raise ConfigError(f"factorization {self.name}: encoder {self.encoder.shape}, decoder {self.decoder.shape}")
        if not np.allclose(self.decoder @ self.encoder, prefix_matrix(t), atol=1e-9):
            raise ConfigError(f"factorization {self.name}: decoder @ encoder is not the prefix-sum matrix")
        # release t is D[t] @ (C x + z): every column it uses must depend only on releases up to t
        support = np.abs(self.encoder) > 1e-12
        last_input = t - 1 - support[:, ::-1].argmax(axis=1)
        if (self.first_release >= t).any() or (last_input > self.first_release).any():
            raise ConfigError(f"factorization {self.name} is not causal: a release needs a later input")

    @property
    def releases(self) -> int:
        return int(self.encoder.shape[1])

    @property
    def columns(self) -> int:
        return int(self.encoder.shape[0])

    @property
    def increments(self) -> np.ndarray:
        """D = S^-1 B: release t carries noise D[t] @ z."""
        d = self.decoder.copy()
        d[1:] -= self.decoder[:-1]
        return d

    @property
    def first_release(self) -> np.ndarray:
        """For each noise column, the first release whose increment uses it (the release that draws it)."""
        used = np.abs(self.increments) > 1e-12
        return np.where(used.any(axis=0), used.argmax(axis=0), self.releases)

    @property
    def last_release(self) -> np.ndarray:
        used = np.abs(self.increments) > 1e-12
        return self.releases - 1 - used[::-1].argmax(axis=0)

    def sensitivity(self, participation: np.ndarray) -> float:
        """L2 sensitivity of C x in clip-norm units, max over the patterns (rows of a bool [k, T] array)."""
        pats = np.atleast_2d(np.asarray(participation, dtype=bool))
        if pats.shape[1] != self.releases:
            raise ConfigError(f"participation covers {pats.shape[1]} releases, the factorization {self.releases}")
        gram = self.encoder.T @ self.encoder
        mat = gram if (gram >= -1e-12).all() else np.abs(gram)  # aligned updates are the worst case, else a bound
        p = pats.astype(float)
        return float(math.sqrt(max(0.0, float(np.max(np.einsum("ks,st,kt->k", p, mat, p))))))

    def prefix_std(self) -> np.ndarray:
        """Std of the noise on each prefix sum, per coordinate, in units of sigma: ||B[t]||."""
        return np.linalg.norm(self.decoder, axis=1)

    def increment_covariance(self) -> np.ndarray:
        """Covariance across releases of one coordinate's increment noise, in units of sigma^2: D D^T."""
        inc = self.increments
        return inc @ inc.T


def every_release(releases: int) -> np.ndarray:
    """The pattern of a member in every release (public cohorts of everyone: the federation's member level)."""
    return np.ones((1, releases), dtype=bool)


def identity(releases: int) -> Factorization:
    return Factorization("identity", np.eye(releases), prefix_matrix(releases))


def _tree_block(length: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Dyadic intervals [a, min(a + L, length)) of a completed tree (deduplicated, by end then size) that some
    prefix uses, and the greedy binary-decomposition decoder (the largest node starting at the covered
    position that ends by t)."""
    nodes: set[tuple[int, int]] = set()
    size = 1
    while True:
        nodes.update((a, min(a + size, length)) for a in range(0, length, size))
        if size >= length:
            break
        size *= 2
    order = sorted(nodes, key=lambda n: (n[1], n[1] - n[0]))
    index = {n: i for i, n in enumerate(order)}
    starts: dict[int, list[tuple[int, int]]] = {}
    for n in order:
        starts.setdefault(n[0], []).append(n)
    dec = np.zeros((length, len(order)))
    for t in range(1, length + 1):
        pos = 0
        while pos < t:
            node = max((n for n in starts[pos] if n[1] <= t), key=lambda n: n[1])
            dec[t - 1, index[node]] = 1.0
            pos = node[1]
    used = np.flatnonzero(dec.any(axis=0))  # a node no prefix uses would only add to the sensitivity
    return [order[i] for i in used], dec[:, used]


def _blocks(name: str, releases: int, period: int,
            block: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> Factorization:
    """Restarts: a new factorization every `period` releases; earlier blocks enter the prefix through their
    decoder's last row (their total)."""
    encs, decs = [], []
    for start in range(0, releases, period):
        enc, dec = block(min(period, releases - start))
        encs.append((start, enc))
        decs.append((start, dec))
    cols = sum(e.shape[0] for _, e in encs)
    encoder = np.zeros((cols, releases))
    decoder = np.zeros((releases, cols))
    col = 0
    for (start, enc), (_, dec) in zip(encs, decs, strict=True):
        m, length = enc.shape
        encoder[col:col + m, start:start + length] = enc
        decoder[start:start + length, col:col + m] = dec
        decoder[start + length:, col:col + m] = dec[-1]  # the block's total, for every later prefix
        col += m
    return Factorization(name, encoder, decoder)


def binary_tree(releases: int, *, restart: int | None = None) -> Factorization:
    """Tree aggregation (module docstring); `restart`: a new tree every that many releases."""
    period = restart or releases
    if period < 1:
        raise ConfigError("tree restart period must be >= 1")

    def block(length: int) -> tuple[np.ndarray, np.ndarray]:
        nodes, dec = _tree_block(length)
        enc = np.zeros((len(nodes), length))
        for i, (a, b) in enumerate(nodes):
            enc[i, a:b] = 1.0
        return enc, dec

    suffix = f", restart every {restart}" if restart else ""
    return _blocks(f"tree{suffix}", releases, period, block)


def sqrt_coefficients(n: int) -> np.ndarray:
    """Taylor coefficients of (1 - x)^(-1/2): binom(2k, k) / 4^k, k = 0..n-1."""
    c = np.ones(n)
    for k in range(1, n):
        c[k] = c[k - 1] * (2 * k - 1) / (2 * k)
    return c


def sqrt_toeplitz(releases: int, *, bands: int | None = None) -> Factorization:
    """C = S^(1/2) (lower-triangular Toeplitz), or its first `bands` diagonals; B = S C^-1."""
    coef = sqrt_coefficients(releases)
    if bands is not None:
        if bands < 1:
            raise ConfigError("bands must be >= 1")
        coef[bands:] = 0.0
    idx = np.arange(releases)
    lag = idx[:, None] - idx[None, :]
    enc = np.where(lag >= 0, coef[np.clip(lag, 0, None)], 0.0)
    dec = prefix_matrix(releases) @ np.linalg.inv(enc)
    name = "sqrt-toeplitz" if bands is None else f"banded sqrt-toeplitz ({bands} bands)"
    return Factorization(name, enc, dec)


FACTORIZATIONS = ("identity", "tree", "sqrt", "banded")


def build_factorization(name: str, releases: int, *, bands: int = 2, restart: int | None = None) -> Factorization:
    if name == "identity":
        return identity(releases)
    if name == "tree":
        return binary_tree(releases, restart=restart)
    if name == "sqrt":
        return sqrt_toeplitz(releases)
    if name == "banded":
        return sqrt_toeplitz(releases, bands=bands)
    raise ConfigError(f"unknown factorization {name!r}; choose one of: {', '.join(FACTORIZATIONS)}")


# ---- accounting ------------------------------------------------------------------------------------------


def mf_event(noise_multiplier: float) -> dpa.DpEvent:
    """The whole stream: one Gaussian mechanism, noise std / L2 sensitivity = `noise_multiplier`."""
    if noise_multiplier <= 0:
        raise ConfigError("noise multiplier must be > 0")
    return dpa.GaussianDpEvent(noise_multiplier)


def mf_epsilon(fact: Factorization, participation: np.ndarray, sigma: float, delta: float) -> float:
    """Epsilon at `delta` of the stream with noise std `sigma` (clip-norm units) per column and coordinate."""
    return epsilon_of(mf_event(sigma / fact.sensitivity(participation)), delta)


def calibrate_mf(fact: Factorization, participation: np.ndarray, epsilon: float, delta: float) -> float:
    """The noise std sigma (clip-norm units) per column meeting (epsilon, delta): z(one release) x sensitivity."""
    return calibrate_rounds(epsilon, delta, 1) * fact.sensitivity(participation)


# ---- the noise stream ------------------------------------------------------------------------------------


@dataclass
class CorrelatedNoise:
    """Streams the increments (D z)_t for d coordinates. Column j of z is drawn (N(0, sigma^2) per coordinate,
    from `generator`) at the first release that uses it and dropped after its last: memory is the columns
    alive at once (a tree: its depth; a square root: all releases so far; b bands: all so far, as C^-1 is
    dense)."""

    factorization: Factorization
    sigma: float
    dim: int
    generator: torch.Generator
    released: int = 0
    _live: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def next(self) -> torch.Tensor:
        f, t = self.factorization, self.released
        if t >= f.releases:
            raise PrivacyBudgetExceeded(f"the correlated noise stream was planned for {f.releases} releases")
        for j in np.flatnonzero(f.first_release == t):
            self._live[int(j)] = torch.normal(0.0, self.sigma, size=(self.dim,), generator=self.generator,
                                              dtype=torch.float64)
        row = f.increments[t]
        out = torch.zeros(self.dim, dtype=torch.float64)
        for j in np.flatnonzero(np.abs(row) > 1e-12):
            out += float(row[j]) * self._live[int(j)]
        for j in np.flatnonzero(f.last_release == t):
            self._live.pop(int(j), None)
        self.released = t + 1
        return out.to(torch.float32)
