"""The BN254 scalar field that every circuit and the random linear check work in.

Signed integers (model entries, noise) enter the field as their residue mod p; a value in
(p/2, p) is read back as negative. Field elements derived from bytes (contexts, challenges,
masks) are hashed with a domain tag and reduced from 512 bits, so the bias is below 2^-250.
"""

from __future__ import annotations

import hashlib

from fedledger.core.rng import ByteSource

#: BN254 (alt_bn128) scalar field order: the field of circom signals and of Groth16 public inputs.
P = 21888242871839275222246405745257275088548364400416034343698204186575808495617

_TAG = b"fedledger/v1/zk/"


def to_field(v: int) -> int:
    return int(v) % P


def signed(v: int) -> int:
    """The representative of a field element in (-p/2, p/2]."""
    v %= P
    return v - P if v > P // 2 else v


def hash_to_field(tag: str, *parts: bytes) -> int:
    """A uniform field element from a domain tag and length-prefixed parts (SHA-512, mod p)."""
    h = hashlib.sha512()
    t = _TAG + tag.encode()
    h.update(len(t).to_bytes(2, "big") + t)
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return int.from_bytes(h.digest(), "big") % P


def int_bytes(v: int) -> bytes:
    """Canonical 32-byte big-endian encoding of a field element (rejects out-of-range values)."""
    if not 0 <= v < P:
        raise ValueError("not a canonical field element")
    return v.to_bytes(32, "big")


def random_field(rng: ByteSource) -> int:
    """A uniform field element from an injected byte source (512 bits reduced mod p; statistically
    uniform up to 2^-258). Pass a `CryptoRng` from an `Entropy` (fedledger.core.rng) for a secret."""
    raw = rng.bytes(64)
    return int.from_bytes(raw, "big") % P
