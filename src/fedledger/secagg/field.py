"""The optional field coordinate of a SecAgg+ input: one element of the BN254 scalar field per member.

Beside its vector modulo 2**b, a member may send u_i = t_i + beta_i + sum_j sigma_ij mu_ij mod p,
where beta_i and mu_ij are the field masks of its self seed and of its pairwise seeds (sigma_ij = +1
if i < j else -1, the sign convention of the vector masks). The server recovers only
T = sum of the survivors' t_i mod p, removing the survivors' self masks and, for members that dropped
(or were excluded) after sharing keys, the pairwise masks reconstructed from their masking keys.
This is how the update proofs' linear check is bound to the masked input (see docs/zk.md).

`field_mask` must be bit-for-bit the function `fedledger.zk.binding.field_mask` (which the blame
procedure uses): SHA-512 over the zk domain tag "fedledger/v1/zk/secagg/field-mask" and the
length-prefixed seed, reduced mod p. It is restated here because secagg and zk are both layer 3 and
may not import each other; tests/secagg/test_secagg_field_coordinate.py checks they agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

P = 21888242871839275222246405745257275088548364400416034343698204186575808495617  # BN254 scalar field
FIELD_BYTES = 32
_TAG = b"fedledger/v1/zk/secagg/field-mask"


def field_mask(seed: bytes) -> int:
    """The field mask a 32-byte SecAgg seed expands to (beta_i for a self seed, mu_ij for a pair)."""
    if len(seed) != 32:
        raise ValueError(f"mask seed must be 32 bytes, got {len(seed)}")
    h = hashlib.sha512()
    h.update(len(_TAG).to_bytes(2, "big") + _TAG)
    h.update(len(seed).to_bytes(8, "big"))
    h.update(seed)
    return int.from_bytes(h.digest(), "big") % P


def encode_element(v: int) -> bytes:
    if not 0 <= v < P:
        raise ValueError("field coordinate out of range")
    return v.to_bytes(FIELD_BYTES, "big")


def decode_element(b: bytes) -> int:
    if len(b) != FIELD_BYTES:
        raise ValueError(f"field coordinate is {FIELD_BYTES} bytes, got {len(b)}")
    v = int.from_bytes(b, "big")
    if v >= P:
        raise ValueError("field coordinate is not reduced mod p")
    return v


@dataclass(frozen=True)
class MaskingRecord:
    """What a member keeps locally after masking, for blame (never sent in the protocol).

    `carries` w satisfies, over the integers, input + self mask + sum_j sigma_ij pair mask_j
    = masked + 2**bits * w, where `input` is the member's vector as given to SecAgg+ (residues).
    """

    self_seed: bytes
    pair_seeds: Mapping[int, bytes]  # neighbour -> pairwise seed, every neighbour it masked with
    carries: np.ndarray  # int64 [length]
