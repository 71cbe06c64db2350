"""Randomized Hadamard rotation from a public per-round seed, vectorized over members.

x -> H_B . diag(signs) . P(x padded), applied to blocks of length B = 2**k: a public random
permutation P spreads the coordinates over the blocks, random signs flip them, and the normalised
Walsh-Hadamard transform H_B (orthogonal, its own inverse) flattens each block, so after rotation
no coordinate is much larger than ||x|| / sqrt(padded length) with high probability. This is what
makes b-bit modular arithmetic safe (Kairouz, Liu, Steinke 2021, sec. 4; Suresh et al. 2017).
The rotation is orthogonal, so L2 norms (and therefore DP sensitivities) are preserved exactly.
Blocks avoid padding a length like 100,000 all the way to 131,072.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from fedledger.core.hashing import Usage, domain_hash


def choose_block(d: int, max_overhead: float = 0.03, min_block: int = 1024) -> int:
    """Largest power-of-two block whose padding overhead is at most `max_overhead`."""
    full = 1 << max(0, math.ceil(math.log2(max(d, 1))))
    b = full
    while b > min_block:
        padded = math.ceil(d / b) * b
        if (padded - d) / d <= max_overhead:
            return b
        b //= 2
    return min(full, max(min_block, 1))


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Normalised fast Walsh-Hadamard transform along the last dimension (a power of two)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError("length must be a power of two")
    lead = x.shape[:-1]
    h = 1
    y = x.reshape(-1, n)
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2).view(-1, n)
        h *= 2
    return (y / math.sqrt(n)).view(*lead, n)


@dataclass(frozen=True)
class Rotation:
    """The public rotation of one round, for vectors of length d (padded to `padded`)."""

    d: int
    block: int
    seed: bytes

    @classmethod
    def for_round(cls, d: int, public_seed: bytes, round_index: int, block: int | None = None) -> Rotation:
        seed = domain_hash(Usage.DP_ROTATION, public_seed, round_index.to_bytes(8, "big"), str(d).encode())
        return cls(d=d, block=block or choose_block(d), seed=seed)

    @property
    def padded(self) -> int:
        return math.ceil(self.d / self.block) * self.block

    @cached_property
    def _perm_signs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = np.random.Generator(np.random.PCG64(list(self.seed)))  # public randomness
        perm = g.permutation(self.padded)
        signs = g.integers(0, 2, self.padded) * 2 - 1
        inv = np.empty_like(perm)
        inv[perm] = np.arange(self.padded)
        return torch.from_numpy(perm), torch.from_numpy(inv), torch.from_numpy(signs.astype(np.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, d] -> [n, padded] (float64)."""
        perm, _, signs = self._perm_signs
        x = x.to(torch.float64)
        n = x.shape[0]
        xp = torch.zeros(n, self.padded, dtype=torch.float64)
        xp[:, : self.d] = x
        y = xp[:, perm] * signs
        return fwht(y.view(n, -1, self.block)).reshape(n, self.padded)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """[n, padded] -> [n, d]."""
        _, inv, signs = self._perm_signs
        y = y.to(torch.float64)
        n = y.shape[0]
        z = fwht(y.reshape(n, -1, self.block)).reshape(n, self.padded) * signs
        return z[:, inv][:, : self.d]
