"""Domain-separated hashing.

Every hash in fedledger names what it hashes: the same bytes hashed for two purposes give
unrelated digests, so a commitment can never be replayed as a model hash or a Merkle leaf.
SHA-256 is the off-chain hash; contracts see the 32-byte digests as `bytes32`.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum


class Usage(StrEnum):
    """The purposes a digest can serve; each one is its own hash domain."""

    BLOB = "blob"
    MODEL = "model"
    MERKLE_LEAF = "merkle-leaf"
    MERKLE_NODE = "merkle-node"
    TASK_SPEC = "task-spec"
    UPDATE_COMMIT = "update-commit"
    EVIDENCE = "evidence"
    SEED = "seed"
    SECAGG_SIGNATURE = "secagg-signature"
    SECAGG_KDF = "secagg-kdf"
    SECAGG_MASK = "secagg-mask"
    SECAGG_COMMIT = "secagg-commit"
    SECAGG_GRAPH = "secagg-graph"
    DP_ROTATION = "dp-rotation"
    DP_NOISE = "dp-noise"
    DATASET = "dataset"
    RNG = "rng"


_PREFIX = b"fedledger/v1/"


def domain_hash(usage: Usage, *parts: bytes) -> bytes:
    """SHA-256 over the usage tag and length-prefixed parts (so part boundaries are unambiguous)."""
    h = hashlib.sha256()
    tag = _PREFIX + usage.value.encode()
    h.update(len(tag).to_bytes(2, "big") + tag)
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def hex32(digest: bytes) -> str:
    """The 0x-prefixed hex form used in results files and on the chain."""
    if len(digest) != 32:
        raise ValueError(f"expected a 32-byte digest, got {len(digest)} bytes")
    return "0x" + digest.hex()
