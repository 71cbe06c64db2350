"""Token conservation over random operation sequences (hypothesis, on anvil with snapshots).

Each example runs a random sequence of transfers, stakes, unbonds, withdrawals, clock moves,
rounds (finalized with reward claims, finalized naming faulty trainers, rejected by the
committee, missed and reopened, or timed out with silent committee members: the last four
slash) on the module's federation, checks the invariants, and reverts the chain to where it
started.

Invariants:
- utility tokens: the supply never changes and is exactly held by the known accounts, the
  staking contract and the treasury; staking holds exactly the active plus unbonding stake;
  the treasury holds exactly the sum of the slashes the index lists;
- reward tokens: the supply is the reward of the finalized rounds; the rewards contract holds
  exactly what its pools have not paid out.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fed import TASK, TEST_PARAMS, E, Fed

from fedledger.ledger import RoundStatus
from fedledger.ledger.errors import LedgerRevert, WrongState

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

member = st.integers(min_value=0, max_value=10)  # index into fed's members (trainers, validators, aggregators)
ROUND_KINDS = ["finalize", "faulty", "reject", "miss", "timeout"]
amount = st.integers(min_value=1, max_value=400).map(lambda x: x * E)
ops = st.one_of(
    st.tuples(st.just("transfer"), member, member, amount),
    st.tuples(st.just("stake"), member, amount),
    st.tuples(st.just("unbond"), member, amount),
    st.tuples(st.just("withdraw"), member),
    st.tuples(st.just("time"), st.integers(min_value=1, max_value=2 * TEST_PARAMS.unbonding_delay)),
    st.tuples(st.just("round"), st.sampled_from(ROUND_KINDS), st.integers(0, 3)),
)


def _members(fed: Fed) -> list:
    return [*fed.trainers, *fed.validators, *fed.aggregators]


def _check_invariants(fed: Fed, finalized: int) -> None:
    L = fed.ledger
    c = L.contracts
    staking, treasury, rewards = c["staking"].address, c["governance"].address, c["rewards"].address
    escrow = c["task_manager"].address
    holders = [L.address, fed.owner.address, *(m.address for m in _members(fed))]
    utility = c["utility_token"].functions
    assert utility.totalSupply().call() == TEST_PARAMS.token_supply
    held = sum(L.utility_balance(a) for a in holders)
    assert held + L.utility_balance(staking) + L.utility_balance(treasury) + L.utility_balance(escrow) == (
        TEST_PARAMS.token_supply
    )
    # the task manager holds the owner's deposit and every reward it funded (paid or still escrowed)
    funded = int(c["task_manager"].functions.total_funded().call())
    assert L.utility_balance(escrow) == funded + TEST_PARAMS.task_deposit
    bonded = sum(L.stake_of(m.address) + L.unbonding_of(m.address)[0] for m in _members(fed))
    assert L.utility_balance(staking) == bonded
    assert c["staking"].functions.total_staked().call() == sum(L.stake_of(m.address) for m in _members(fed))
    assert L.utility_balance(treasury) == sum(s.amount for s in L.slashes())

    reward = c["reward_token"].functions
    # each finalized round mints its reward less the validators' remainder unit(s) that do not divide among
    # the accepting members (fewer than the committee), which stay in the escrow (checked just below)
    supply = reward.totalSupply().call()
    low = finalized * (TASK.reward_per_round - TEST_PARAMS.max_committee)
    assert low <= supply <= finalized * TASK.reward_per_round <= funded
    assert L.task(fed.task_id).escrow == funded - reward.totalSupply().call()
    assert sum(L.reward_balance(a) for a in holders) + L.reward_balance(rewards) == reward.totalSupply().call()
    unpaid = 0
    for r in range(1, L.task(fed.task_id).current_round + 1):
        _, pool, claimed = L.reward_pool(fed.task_id, r)
        unpaid += pool - claimed
    assert L.reward_balance(rewards) == unpaid


def _round(fed: Fed, kind: str, claims: int) -> int:
    """Drive one round; return how many rounds got finalized."""
    task = fed.ledger.task(fed.task_id)
    if task.completed:
        return 0
    if task.current_round and fed.ledger.round(fed.task_id, task.current_round).status != RoundStatus.FINALIZED:
        return 0
    try:
        info = fed.open()
    except LedgerRevert:  # e.g. validators or aggregators all unbonded by earlier operations
        return 0
    if kind == "miss":
        fed.ledger.advance_time(2 * TASK.submit_window + 1)  # past the owner's grace period: anyone reopens
        info = fed.trainers[0].reopen(fed.task_id, info.round_id)
    if kind == "timeout":  # one member votes, the others stay silent past the deadline
        fed.submit(info, spent=task.privacy_spent / E)
        fed.at(info.committee[0]).vote(fed.task_id, info.round_id, True)
        fed.ledger.advance_time(TASK.vote_window + 1)
        try:
            info = fed.owner.reopen(fed.task_id, info.round_id)
        except WrongState:  # one vote of a heavy member can be the quorum
            fed.owner.finalize(fed.task_id, info.round_id)
            return 1
    tree = fed.rewards(info, amount=10 * E)
    faulty = tuple(t.address for t in fed.trainers[:claims]) if kind == "faulty" else ()
    fed.submit(info, tree=tree, spent=task.privacy_spent / E, faulty=faulty)
    fed.vote_all(info, accept=kind != "reject")
    status = fed.owner.finalize(fed.task_id, info.round_id)
    if status is not RoundStatus.FINALIZED:
        info = fed.owner.reopen(fed.task_id, info.round_id)
        tree = fed.rewards(info, amount=10 * E)
        fed.submit(info, tree=tree, spent=task.privacy_spent / E)
        fed.vote_all(info)
        fed.owner.finalize(fed.task_id, info.round_id)
    for t in fed.trainers[:claims]:
        t.claim_reward(fed.task_id, info.round_id, 10 * E, tree.proof(t.address))
    return 1


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(ops, min_size=1, max_size=8))
def test_tokens_are_conserved(module_fed: Fed, sequence: list[tuple]) -> None:
    fed = module_fed
    snap = fed.ledger.snapshot()
    members = _members(fed)
    finalized = 0
    try:
        for op in sequence:
            try:
                if op[0] == "transfer":
                    members[op[1]].transfer_utility(members[op[2]].address, op[3])
                elif op[0] == "stake":
                    members[op[1]].stake(op[2])
                elif op[0] == "unbond":
                    members[op[1]].unbond(op[2])
                elif op[0] == "withdraw":
                    members[op[1]].withdraw()
                elif op[0] == "time":
                    fed.ledger.advance_time(op[1])
                else:
                    finalized += _round(fed, op[1], op[2])
            except LedgerRevert:
                pass  # a refused operation must change nothing: the invariants below check it
        _check_invariants(fed, finalized)
    finally:
        fed.ledger.revert(snap)
