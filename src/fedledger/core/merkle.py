"""Binary Merkle trees over domain-separated leaves, with inclusion proofs.

Leaves and inner nodes are hashed in different domains (second-preimage safety). An odd node
at any level is promoted unchanged. Inner nodes hash the *sorted* pair so a proof is just the
list of siblings, which is also what an on-chain verifier wants.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.core.errors import IntegrityError
from fedledger.core.hashing import Usage, domain_hash


def leaf_hash(data: bytes) -> bytes:
    return domain_hash(Usage.MERKLE_LEAF, data)


def _node(a: bytes, b: bytes) -> bytes:
    lo, hi = (a, b) if a <= b else (b, a)
    return domain_hash(Usage.MERKLE_NODE, lo, hi)


class MerkleTree:
    """A tree built once from its leaves' data; `root` and `proof(i)` are then cheap."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        level = [leaf_hash(x) for x in leaves]
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self._levels.append(nxt)
            level = nxt

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def __len__(self) -> int:
        return len(self._levels[0])

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} out of range for {len(self)} leaves")
        path = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        return path


def verify_proof(root: bytes, data: bytes, proof: Sequence[bytes]) -> None:
    """Raise `IntegrityError` unless `data` is a leaf of the tree with this root."""
    node = leaf_hash(data)
    for sibling in proof:
        node = _node(node, sibling)
    if node != root:
        raise IntegrityError("Merkle proof does not lead to the expected root")
