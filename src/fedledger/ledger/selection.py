"""Off-chain replicas of the registry's draws, so anyone can check a round's roles.

The registry keeps one pool per task and role (trainer, aggregator, validator) holding the
members who joined the task, in the order they joined, each with a weight = stake * (5000 +
score in the task) / 10000, or zero below the role's minimum stake. A round's seed is
keccak256(abi_encode(SEED_TAG, randomness of the committed block, task, round, attempt,
previous seed)), fixed at `seal`, once the committed block exists. A draw `j` under a tag picks

    t = keccak256(abi_encode(seed, tag, j)) mod total_weight

and the first member whose running sum of weights exceeds t (the contract finds it in a
Fenwick tree; here a prefix sum and a bisection give the same member). The aggregator is the
first draw (redrawn up to 8 times while it hits the member excluded after a missed deadline or a
rejection, then the next member with weight after it in pool order);
the committee takes draws 0, 1, 2, ... skipping repeats until it has committee_size members;
if 128 draws do not fill it (very uneven weights) it walks on from the last draw to the next
member with weight in pool order. A round never seals with fewer members than committee_size.

Trainer cohorts are not drawn on chain at all: `select_cohort` ranks the eligible trainers by
keccak256(seed, "cohort", address) and takes the first `size`; everybody computes the same list
from the seed and the registry snapshot and nothing per trainer is written on chain.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

AGGREGATOR_TAG = keccak(b"fedledger/v1/aggregator")
COMMITTEE_TAG = keccak(b"fedledger/v1/committee")
COHORT_TAG = keccak(b"fedledger/v1/cohort")
MAX_COMMITTEE = 32
MAX_DRAWS = 128
AGGREGATOR_TRIES = 8
ROLES_PER_TASK = 4


def pool_id(task_id: int, role: int) -> int:
    """The registry's pool number of a task's role."""
    return task_id * ROLES_PER_TASK + int(role)


def _next_after(pool: Sequence[tuple[str, int]], prefix: Sequence[int], address: str) -> str:
    """The next member with weight after `address` in pool order (wrapping), as `pools._next_after`."""
    position = next(i for i, (a, _) in enumerate(pool) if to_checksum_address(a) == to_checksum_address(address))
    return to_checksum_address(pool[bisect_right(prefix, prefix[position] % prefix[-1])][0])


def draw(seed: bytes, tag: bytes, j: int, prefix: Sequence[int]) -> int:
    """The 0-based position drawn by draw `j`, given the running sums of the pool's weights."""
    total = prefix[-1]
    if total <= 0:
        raise ValueError("cannot draw from a pool without weight")
    t = int.from_bytes(keccak(encode(["bytes32", "bytes32", "uint256"], [seed, tag, j])), "big") % total
    return bisect_right(prefix, t)


def select_aggregator(seed: bytes, pool: Sequence[tuple[str, int]], excluded: str | None = None) -> str:
    """The aggregator the contract draws from `pool` = [(address, weight)] in pool order."""
    prefix = list(accumulate(w for _, w in pool))
    eligible = sum(1 for _, w in pool if w > 0)
    excluded_cs = to_checksum_address(excluded) if excluded else None
    chosen = ""
    for j in range(AGGREGATOR_TRIES):
        chosen = to_checksum_address(pool[draw(seed, AGGREGATOR_TAG, j, prefix)][0])
        if chosen != excluded_cs or eligible <= 1:
            break
    if chosen == excluded_cs and eligible > 1:  # every try hit it: the next member with weight after it
        chosen = _next_after(pool, prefix, chosen)
    return chosen


def select_committee(seed: bytes, pool: Sequence[tuple[str, int]], size: int) -> list[str]:
    """The validator committee the contract draws from `pool` = [(address, weight)] in pool order."""
    prefix = list(accumulate(w for _, w in pool))
    if sum(1 for _, w in pool if w > 0) < size:
        raise ValueError(f"a committee of {size} needs {size} validators with weight")
    committee: list[str] = []
    last = ""
    for j in range(MAX_DRAWS + 2 * MAX_COMMITTEE):
        if len(committee) >= size:
            break
        if j < MAX_DRAWS:
            last = to_checksum_address(pool[draw(seed, COMMITTEE_TAG, j, prefix)][0])
        else:
            last = _next_after(pool, prefix, last)
        if last not in committee:
            committee.append(last)
    return committee


def select_cohort(seed: bytes, trainers: Sequence[str], size: int) -> list[str]:
    """`size` trainers ranked by keccak256(seed, cohort tag, address): uniform, public, verifiable."""

    def rank(address: str) -> bytes:
        return keccak(encode(["bytes32", "bytes32", "address"], [seed, COHORT_TAG, address]))

    return [to_checksum_address(a) for a in sorted(trainers, key=rank)[: max(size, 0)]]


def in_cohort(seed: bytes, trainers: Sequence[str], size: int, address: str) -> bool:
    return to_checksum_address(address) in select_cohort(seed, trainers, size)
