"""The one place fedledger draws cryptographic randomness, and a vectorized CSPRNG built on it.

`random_bytes` reads the operating system (`os.urandom`). `CryptoRng` expands a 32-byte key with
AES-256-CTR into a stream of uniform words and offers the few exact, vectorized samplers the
privacy and secure-aggregation code needs (uniform integers below a bound by rejection, fair bits,
uniform floats). A `CryptoRng` keyed from `random_bytes` is the production source of noise; one
keyed from a derived seed makes simulations reproducible (and is then, of course, not secret).
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.core.hashing import Usage, domain_hash


def random_bytes(n: int) -> bytes:
    """`n` bytes from the operating system's CSPRNG."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return os.urandom(n)


class CryptoRng:
    """A deterministic CSPRNG: AES-256-CTR keyed by 32 bytes, read as little-endian uint64 words."""

    __slots__ = ("_enc",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"CryptoRng needs a 32-byte key, got {len(key)} bytes")
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    @classmethod
    def from_os(cls) -> CryptoRng:
        return cls(random_bytes(32))

    @classmethod
    def from_seed(cls, seed: int, *labels: object) -> CryptoRng:
        """Reproducible stream for simulations: key = H(seed, labels). Not secret if the seed is known."""
        parts = [str(seed).encode(), *(str(x).encode() for x in labels)]
        return cls(domain_hash(Usage.DP_NOISE, *parts))

    def bytes(self, n: int) -> bytes:
        return self._enc.update(bytes(n))

    def words(self, n: int) -> np.ndarray:
        """`n` uniform uint64 words."""
        return np.frombuffer(self._enc.update(bytes(8 * n)), dtype="<u8").astype(np.uint64, copy=False)

    def below(self, bound: np.ndarray | int, size: int | None = None) -> np.ndarray:
        """Exactly uniform integers in [0, bound) (bound an int or uint64 array, 1 <= bound < 2**63).

        Rejection sampling on 64-bit words: a word u is kept when u < 2**64 - (2**64 mod bound),
        so every residue is equally likely; rejected positions are redrawn (vectorized).
        """
        b = np.asarray(bound, dtype=np.uint64)
        if size is not None:
            b = np.broadcast_to(b, (size,))
        b = np.ascontiguousarray(b).reshape(-1)
        if b.size and (int(b.min()) < 1 or int(b.max()) >= 1 << 63):
            raise ValueError("bound must be in [1, 2**63)")
        # 2**64 mod b, computed in wrapping uint64 arithmetic: (2**64 - b) mod b.
        rem = (np.uint64(0) - b) % b
        limit = np.uint64(0) - rem  # 2**64 - rem (0 means no rejection needed: b divides 2**64)
        out = np.empty(b.size, dtype=np.uint64)
        todo = np.arange(b.size)
        while todo.size:
            u = self.words(todo.size)
            lim = limit[todo]
            ok = (lim == 0) | (u < lim)
            idx = todo[ok]
            out[idx] = u[ok] % b[idx]
            todo = todo[~ok]
        return out.reshape(np.shape(bound) if size is None else (size,))

    def bits(self, n: int) -> np.ndarray:
        """`n` fair bits as a bool array."""
        raw = np.frombuffer(self._enc.update(bytes((n + 7) // 8)), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    def uniform(self, n: int) -> np.ndarray:
        """`n` floats uniform on [0, 1) with 53 random bits each."""
        return (self.words(n) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
