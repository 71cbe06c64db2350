"""Mask expansion: a full 256-bit seed keys AES-256-CTR, whose stream is read as b-bit integers.

Unlike a generator seeded with a folded 32-bit integer, every bit of the seed matters: two seeds
give unrelated masks unless they are equal, and the seed space is 2**256. The seed is first put
through a domain-separated hash with the usage label, so a pairwise seed and a self-mask seed can
never expand to the same stream even if equal.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.core.hashing import Usage, domain_hash


def _word_bytes(bits: int) -> int:
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def expand_mask(seed: bytes, length: int, bits: int, label: bytes = b"mask") -> np.ndarray:
    """`length` integers uniform in [0, 2**bits) as uint32, from a 32-byte seed.

    Each coordinate uses the smallest whole number of stream bytes (1, 2 or 4); since 2**bits
    divides 2**(8*bytes) the reduction modulo 2**bits is exactly uniform.
    """
    if len(seed) != 32:
        raise ValueError(f"mask seed must be 32 bytes, got {len(seed)}")
    if length < 0:
        raise ValueError("length must be non-negative")
    wb = _word_bytes(bits)
    key = domain_hash(Usage.SECAGG_MASK, label, seed)
    need = wb * length
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    stream = enc.update(bytes(need))
    dtype = {1: "<u1", 2: "<u2", 4: "<u4"}[wb]
    out = np.frombuffer(stream, dtype=dtype).astype(np.uint32)
    if bits < 8 * wb:
        out &= np.uint32((1 << bits) - 1)
    return out
