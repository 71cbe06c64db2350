"""Smoke run on the in-process py-evm chain (`--chain memory`): same client, same contracts."""

from __future__ import annotations

import pytest
from ledger_fed import TASK, TEST_PARAMS, E, build_fed

from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.errors import AlreadyClaimed, NotCommitteeMember, QuorumNotReached

pytestmark = [pytest.mark.slow]


def test_memory_round_claim_and_reverts(memory_ledger: Ledger) -> None:
    fed = build_fed(memory_ledger, validator_stakes=(100, 200, 300))
    info = fed.open()
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    tree = fed.rewards(info)
    fed.submit(info, tree=tree)
    with pytest.raises(QuorumNotReached):
        fed.owner.finalize(fed.task_id, info.round_id)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is None
    with pytest.raises(NotCommitteeMember):
        fed.trainers[0].vote(fed.task_id, info.round_id, True)
    fed.vote_all(info)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is RoundStatus.FINALIZED
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED
    t = fed.trainers[0]
    t.claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t.address))
    with pytest.raises(AlreadyClaimed):
        t.claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t.address))
    assert fed.ledger.reward_balance(t.address) == 20 * E
    # the receipts-only index saw everything, including the deployment's own events
    assert fed.ledger.events("RoundFinalized", task_id=fed.task_id)[0].args["round_id"] == info.round_id
    assert fed.ledger.events("MinterSet")
    supply = fed.ledger.contracts["reward_token"].functions.totalSupply().call()
    assert TASK.reward_per_round - TEST_PARAMS.max_committee < supply <= TASK.reward_per_round  # residue escrowed
    snap = fed.ledger.snapshot()
    fed.ledger.advance_time(10)
    fed.ledger.revert(snap)
    assert fed.ledger.round(fed.task_id, info.round_id).status is RoundStatus.FINALIZED
