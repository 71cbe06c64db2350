"""Reward and reputation trees the contracts verify.

Both use `fedledger.core.merkle` unchanged (SHA-256, domain-separated leaves and nodes, sorted
pairs): the Vyper `merkle` module hashes exactly the same bytes, and SHA-256 is an EVM
precompile, so there is no separate keccak tree. A leaf's data is four ABI words:

    reward leaf:     abi_encode(task_id, round_id, account, amount)
    reputation leaf: abi_encode(task_id, round_id, member, score)

so a proof for one round can never be replayed in another.
"""

from __future__ import annotations

from collections.abc import Mapping

from eth_abi import encode
from eth_utils import to_checksum_address

from fedledger.core.merkle import MerkleTree

MAX_SCORE = 10_000


def leaf_data(task_id: int, round_id: int, account: str, value: int) -> bytes:
    return encode(
        ["uint256", "uint256", "address", "uint256"], [task_id, round_id, to_checksum_address(account), value]
    )


class ClaimTree:
    """(account -> value) for one round, with its root and per-account proofs."""

    def __init__(self, task_id: int, round_id: int, values: Mapping[str, int]) -> None:
        if not values:
            raise ValueError("a claim tree needs at least one account")
        self.task_id = task_id
        self.round_id = round_id
        self.values = {to_checksum_address(a): int(v) for a, v in sorted(values.items())}
        for a, v in self.values.items():
            if v < 0:
                raise ValueError(f"negative value for {a}")
        self._order = list(self.values)
        self._tree = MerkleTree([leaf_data(task_id, round_id, a, v) for a, v in self.values.items()])

    @property
    def root(self) -> bytes:
        return self._tree.root

    @property
    def total(self) -> int:
        return sum(self.values.values())

    def proof(self, account: str) -> list[bytes]:
        return self._tree.proof(self._order.index(to_checksum_address(account)))


def reward_tree(task_id: int, round_id: int, amounts: Mapping[str, int]) -> ClaimTree:
    return ClaimTree(task_id, round_id, amounts)


def reputation_tree(task_id: int, round_id: int, scores: Mapping[str, int]) -> ClaimTree:
    if any(not 0 <= s <= MAX_SCORE for s in scores.values()):
        raise ValueError(f"reputation scores lie in [0, {MAX_SCORE}]")
    return ClaimTree(task_id, round_id, scores)
