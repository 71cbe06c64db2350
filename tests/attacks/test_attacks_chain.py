"""Red-team attacks on the contracts (issue 12's rules) that still work, on the real contracts on anvil.

Each test asserts the security property. Both are fixed: the stakeless variant (joining takes the role's minimum
stake), and the reroll by a staked member (the registry freezes the task's aggregator and validator pools when a
round commits; the seal draws from them as they stood then and never commits again because of a pool change).
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak
from ledger_fed import Fed, h, key

from fedledger.ledger import Role, RoundStatus
from fedledger.ledger.errors import InsufficientStake
from fedledger.ledger.selection import select_aggregator

pytestmark = [pytest.mark.anvil]

SEED_TAG = keccak(b"fedledger/v1/seed")


def _predicted_aggregator(fed: Fed, round_id: int) -> str:
    """What `seal` will draw, computed off chain the moment the committed block exists (round_machine.seal)."""
    rec = fed.ledger.round(fed.task_id, round_id)
    value = bytes(fed.ledger._s.w3.eth.get_block(rec.commit_block)["hash"])
    seed = keccak(encode(["bytes32", "bytes32", "uint256", "uint256", "uint256", "bytes32"],
                         [SEED_TAG, value, fed.task_id, round_id, rec.attempt, rec.seed]))
    return select_aggregator(seed, fed.ledger.pool(fed.task_id, Role.AGGREGATOR))


def test_a_member_cannot_reroll_a_committed_draw_by_touching_the_pools(fed: Fed) -> None:
    tm = fed.ledger.contracts["task_manager"].functions
    attacker = fed.validators[0]  # any member with stake in the task: a 1-wei top-up changes its pool weight
    round_id = fed.owner.commit_round(fed.task_id)
    committed = fed.ledger.round(fed.task_id, round_id).commit_block
    first = ""
    for _ in range(40):
        if fed.ledger.round(fed.task_id, round_id).status is not RoundStatus.SEALING:
            break  # the honest seal drew the round
        fed.ledger.backend.mine()  # the committed block exists: its draw is known to everybody
        drawn = _predicted_aggregator(fed, round_id)
        first = first or drawn
        if drawn != first:
            break  # the attacker got another aggregator than the committed block gave
        attacker.stake(1)  # 1 wei: the pools changed since the commitment
        fed.trainers[0]._tx("seal", tm.seal(fed.task_id, round_id))  # the honest seal, right after
    rec = fed.ledger.round(fed.task_id, round_id)
    assert rec.status is RoundStatus.OPEN and rec.commit_block == committed  # sealed on the committed block
    # the security property: once its block is known, nobody changes the draw a round committed to
    assert rec.aggregator == first, "the attacker rerolled the aggregator draw with 1-wei top-ups"
    fed.ledger.verify_selection(fed.task_id, round_id)


def test_a_stakeless_outsider_cannot_keep_a_round_from_sealing(fed: Fed) -> None:
    """Found open: a stakeless trainer's join changed the pools' version, so an outsider joining before every seal
    kept the round from ever opening (and could fill a pool). Fixed: joining takes the role's minimum stake."""
    tm = fed.ledger.contracts["task_manager"].functions
    round_id = fed.owner.commit_round(fed.task_id)
    for i in range(5):
        fed.ledger.backend.mine()
        sybil = fed.ledger.dev(300 + i)  # no tokens, no stake: registering and joining cost only gas
        sybil.register(Role.TRAINER, key(f"sybil {i}"), h(f"sybil {i}"))
        with pytest.raises(InsufficientStake, match="before joining a task"):
            sybil.join_task(fed.task_id)
        assert fed.ledger.stake_of(sybil.address) == 0
        fed.owner._tx("seal", tm.seal(fed.task_id, round_id))  # the honest seal, right after
        if fed.ledger.round(fed.task_id, round_id).status is RoundStatus.OPEN:
            break
    # the security property: an outsider without stake cannot stop a round from opening
    assert fed.ledger.round(fed.task_id, round_id).status is RoundStatus.OPEN, \
        "five seals in a row committed again: each time a stakeless outsider had joined just before"
