"""Claiming what finalized rounds settled: rewards and reputation scores, with Merkle proofs.

The contracts hold only each round's reward and reputation roots; the amounts are in the round's evidence
(blob store). Anybody holding the evidence can claim for any member: the tokens go to the member, and the
contracts check every leaf against the root the committee accepted, so a wrong amount reverts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from eth_utils import to_checksum_address

from fedledger.core.blobstore import BlobStore
from fedledger.ledger import Ledger, Role, RoundStatus
from fedledger.ledger.claims import reputation_tree, reward_tree
from fedledger.protocol.evidence import Evidence, RoundManifest


@dataclass(frozen=True, slots=True)
class RoundSettlement:
    round_id: int
    rewards: Mapping[str, int]
    reputation: Mapping[str, int]


def finalized_settlements(ledger: Ledger, blobs: BlobStore, task_id: int) -> list[RoundSettlement]:
    """Each finalized round's rewards and reputation scores, read from its evidence, in round order."""
    out = []
    for round_id in range(1, ledger.task(task_id).current_round + 1):
        record = ledger.round(task_id, round_id)
        if record.status is not RoundStatus.FINALIZED:
            continue
        manifest = RoundManifest.find(blobs, record.evidence_root)
        settlement = Evidence.from_bytes(blobs.get(manifest.evidence)).settlement
        out.append(RoundSettlement(round_id, dict(settlement.rewards), dict(settlement.reputation)))
    return out


def claim_rewards(ledger: Ledger, blobs: BlobStore, task_id: int, accounts: Iterable[str] | None = None,
                  signer: Callable[[str], Ledger] | None = None) -> dict[str, int]:
    """Claim every unclaimed reward of `accounts` (default: everybody paid) in the task's finalized rounds.

    `signer(account)` is the ledger that sends the account's claim (default: `ledger` claims for everybody).
    Returns the amount claimed now per account.
    """
    wanted = None if accounts is None else {to_checksum_address(a) for a in accounts}
    claimed: dict[str, int] = {}
    for s in finalized_settlements(ledger, blobs, task_id):
        if not s.rewards:
            continue
        tree = reward_tree(task_id, s.round_id, s.rewards)
        for address, amount in tree.values.items():
            if (wanted is not None and address not in wanted) or amount == 0:
                continue
            if ledger.is_claimed(task_id, s.round_id, address):
                continue
            sender = signer(address) if signer is not None else ledger
            sender.claim_reward(task_id, s.round_id, amount, tree.proof(address), account=address)
            claimed[address] = claimed.get(address, 0) + amount
    return claimed


def apply_latest_reputation(ledger: Ledger, blobs: BlobStore, task_id: int, accounts: Iterable[str] | None = None,
                            signer: Callable[[str], Ledger] | None = None) -> dict[str, int]:
    """Bring `accounts`' (default: everybody scored) on-chain reputation to the last finalized round's score.

    Returns the scores applied now.
    """
    scored = [s for s in finalized_settlements(ledger, blobs, task_id) if s.reputation]
    if not scored:
        return {}
    last = scored[-1]
    tree = reputation_tree(task_id, last.round_id, last.reputation)
    epoch = ledger.reputation_epoch(task_id, last.round_id)
    wanted = None if accounts is None else {to_checksum_address(a) for a in accounts}
    applied: dict[str, int] = {}
    for address, score in tree.values.items():
        if (wanted is not None and address not in wanted) or ledger.reputation_of(address, task_id) == score:
            continue
        member = ledger.member(address)
        if member is None or member.role is not Role.TRAINER:
            # the root scores every role (`score_flow`); on chain it applies to trainers only (`Reputation.apply`):
            # aggregators and validators move by what the chain itself sees (`Reputation.adjust`)
            continue
        (signer(address) if signer is not None else ledger).apply_reputation(epoch, address, score,
                                                                             tree.proof(address))
        applied[address] = score
    return applied
