# pragma version ~=0.4.3
"""
@title merkle
@notice Verifies inclusion proofs for `fedledger.core.merkle` trees, byte for byte:
        leaf = sha256(u16(len(tag)) || "fedledger/v1/merkle-leaf" || u64(len(data)) || data)
        node = sha256(u16(len(tag)) || "fedledger/v1/merkle-node" || u64(32) || lo || u64(32) || hi)
        where (lo, hi) is the sorted pair, so a proof is only the list of siblings.
        Stateless: importers need neither `uses` nor `initializes`.
"""

MAX_DEPTH: constant(uint256) = 32
# u16(24) || "fedledger/v1/merkle-leaf"
_LEAF_TAG: constant(Bytes[26]) = b"\x00\x18fedledger/v1/merkle-leaf"
# u16(24) || "fedledger/v1/merkle-node"
_NODE_TAG: constant(Bytes[26]) = b"\x00\x18fedledger/v1/merkle-node"
_LEN32: constant(Bytes[8]) = b"\x00\x00\x00\x00\x00\x00\x00\x20"
_LEN128: constant(Bytes[8]) = b"\x00\x00\x00\x00\x00\x00\x00\x80"


@internal
@pure
def _leaf128(data: Bytes[128]) -> bytes32:
    """@dev The leaf hash of exactly 128 bytes of data (four ABI words)."""
    assert len(data) == 128, "merkle: leaf data must be 128 bytes"
    return sha256(concat(_LEAF_TAG, _LEN128, data))


@internal
@pure
def _node(a: bytes32, b: bytes32) -> bytes32:
    if convert(a, uint256) <= convert(b, uint256):
        return sha256(concat(_NODE_TAG, _LEN32, a, _LEN32, b))
    return sha256(concat(_NODE_TAG, _LEN32, b, _LEN32, a))


@internal
@pure
def _verify(root: bytes32, leaf: bytes32, proof: DynArray[bytes32, MAX_DEPTH]) -> bool:
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        node = self._node(node, sibling)
    return node == root
