"""Round parameters and the sparse communication graph of SecAgg+.

Members are placed on a ring in an order drawn from the public round seed (so neither the server
nor a member chooses its neighbours) and each one shares its secrets with the k = 2h + 1 members
within ring distance h, itself included: a k-regular Harary graph (Bell et al. 2020, "Secure
single-server aggregation with (poly)logarithmic overhead"). The default h = ceil(log2 n) gives
k = 2 ceil(log2 n) + 1; the threshold is t = floor(k/2) + 1, a strict majority of a neighbourhood,
so two disjoint groups of honest neighbours can never both reach t.

`SecAggParams.for_cohort` widens k when a dropout rate is expected: it picks the smallest odd k
for which, by a union bound over members, the chance that some neighbourhood keeps fewer than t
survivors is below 2**failure_log2. Beyond that the round aborts (it never returns a wrong sum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fedledger.core.errors import ConfigError
from fedledger.core.hashing import Usage, domain_hash


def default_degree(n: int) -> int:
    return min(n, 2 * math.ceil(math.log2(max(n, 2))) + 1)


def _binom_cdf(x: int, k: int, p: float) -> float:
    """P[Bin(k, p) <= x], in log space for stability."""
    if x < 0:
        return 0.0
    if x >= k:
        return 1.0
    lp, lq = math.log(p) if p > 0 else -math.inf, math.log1p(-p) if p < 1 else -math.inf
    terms = []
    for i in range(x + 1):
        lc = math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1)
        a = (i * lp if i else 0.0) + ((k - i) * lq if k - i else 0.0)
        terms.append(lc + a)
    m = max(terms)
    if m == -math.inf:
        return 0.0
    return math.exp(m) * sum(math.exp(t - m) for t in terms)


@dataclass(frozen=True, slots=True)
class SecAggParams:
    """Public parameters of one SecAgg+ round.

    bits: the modulus is 2**bits (8..32). length: coordinates per input vector (the privacy layer
    lays out [rotated update | clip bit | extra coordinates]; secagg only sums). degree: share
    holders per member including itself (odd, <= n). threshold: shares needed to reconstruct.
    """

    n: int
    length: int
    bits: int = 32
    degree: int = 0
    threshold: int = 0

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ConfigError("secure aggregation needs at least 2 members")
        if not 8 <= self.bits <= 32:
            raise ConfigError(f"bits must be in 8..32, got {self.bits}")
        if self.length < 1:
            raise ConfigError("vector length must be positive")
        k = self.degree or default_degree(self.n)
        k = min(k, self.n)
        if k < self.n and k % 2 == 0:
            k += 1  # a neighbourhood is the member plus h on each side
        k = min(k, self.n)
        object.__setattr__(self, "degree", k)
        t = self.threshold or k // 2 + 1
        if not 1 <= t <= k:
            raise ConfigError(f"threshold must be in 1..{k}, got {t}")
        object.__setattr__(self, "threshold", t)

    @classmethod
    def for_cohort(
        cls, n: int, length: int, bits: int = 32, *, dropout: float = 0.0, failure_log2: float = -20.0
    ) -> SecAggParams:
        if not 0 <= dropout < 1:
            raise ConfigError("dropout must be in [0, 1)")
        k = default_degree(n)
        if dropout > 0:
            target = 2.0**failure_log2 / n
            while k < n:
                t = k // 2 + 1
                if _binom_cdf(t - 1, k, 1 - dropout) <= target:
                    break
                k = min(n, k + 2)
        return cls(n=n, length=length, bits=bits, degree=k)

    @property
    def max_dropouts_per_neighbourhood(self) -> int:
        return self.degree - self.threshold


@dataclass(frozen=True)
class Graph:
    """Who shares with whom in a round: ring positions from the public seed, neighbourhoods of size k."""

    members: tuple[int, ...]
    degree: int
    seed: bytes

    @classmethod
    def build(cls, members: Sequence[int], degree: int, task_id: bytes, round_index: int) -> Graph:
        ids = tuple(sorted(int(m) for m in members))
        if len(set(ids)) != len(ids):
            raise ConfigError("duplicate member ids in the cohort")
        seed = domain_hash(Usage.SECAGG_GRAPH, task_id, round_index.to_bytes(8, "big"))
        rng = np.random.Generator(np.random.PCG64(list(seed)))  # public ordering, not a secret
        order = tuple(int(x) for x in np.asarray(ids)[rng.permutation(len(ids))])
        return cls(members=order, degree=min(degree, len(ids)), seed=seed)

    @cached_property
    def position(self) -> dict[int, int]:
        return {m: i for i, m in enumerate(self.members)}

    def point(self, member: int) -> int:
        """Shamir evaluation point of a member (its ring position + 1)."""
        return self.position[member] + 1

    def neighbours(self, member: int) -> tuple[int, ...]:
        """The k share holders of `member` (itself included), in ring order."""
        n = len(self.members)
        if self.degree >= n:
            return self.members
        h = self.degree // 2
        p = self.position[member]
        return tuple(self.members[(p + o) % n] for o in range(-h, h + 1))
