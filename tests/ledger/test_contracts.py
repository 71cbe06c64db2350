"""Contract behaviour on a real anvil: each guarded path as a success/failure pair."""

from __future__ import annotations

import pytest
from ledger_fed import TASK, TEST_PARAMS, E, Fed, h, key

from fedledger.core.errors import PrivacyBudgetExceeded
from fedledger.ledger import GovAction, Role, RoundStatus, TaskParam, to_fixed
from fedledger.ledger.claims import reputation_tree, reward_tree
from fedledger.ledger.errors import (
    AlreadyClaimed,
    AlreadyVoted,
    BudgetExceeded,
    DeadlineError,
    InsufficientStake,
    InvalidArgument,
    InvalidProof,
    NotAuthorized,
    NotCommitteeMember,
    PoolExhausted,
    QuorumNotReached,
    UnbondingNotOver,
    WrongState,
)
from fedledger.secagg import InvalidKey

pytestmark = [pytest.mark.anvil]


# ---------------------------------------------------------------- who may mint, slash, set


def test_only_the_task_manager_mints_reward_tokens(fed: Fed) -> None:
    mint = fed.ledger.contracts["reward_token"].functions.mint(fed.ledger.address, 1)
    for who in (fed.ledger, fed.owner, fed.validators[0]):
        with pytest.raises(NotAuthorized, match="only the task manager mints"):
            who._tx("mint", mint)
    info, _ = fed.full_round()  # minting through finalization works
    # the validators' part that does not divide among the accepting ones stays in the escrow, unminted
    part = TASK.reward_per_round * TEST_PARAMS.validator_share_bps // 10_000
    unminted = part % len(info.committee)
    assert fed.ledger.contracts["reward_token"].functions.totalSupply().call() == TASK.reward_per_round - unminted


def test_only_the_task_manager_slashes(fed: Fed) -> None:
    victim = fed.validators[0].address
    slash = fed.ledger.contracts["staking"].functions.slash(victim, 10 * E, 1, h("evidence"), fed.task_id, 1, 0)
    for who in (fed.ledger, fed.owner, fed.aggregators[0]):
        with pytest.raises(NotAuthorized, match="only the task manager slashes"):
            who._tx("slash", slash)
    assert fed.ledger.stake_of(victim) == 100 * E


@pytest.mark.parametrize(
    ("contract", "fn", "args"),
    [
        ("task_manager", "set_slash_bps", (5_000,)),
        ("task_manager", "set_max_reward_per_round", (1,)),
        ("task_manager", "set_task_reward", (1, 1)),
        ("task_manager", "set_task_quorum", (1, 9_000)),
        ("task_manager", "set_task_committee_size", (1, 1)),
        ("task_manager", "set_task_privacy_budget", (1, 10**30)),
        ("staking", "set_min_stake", (3, 1)),
        ("staking", "set_treasury", ("0x" + "11" * 20,)),
    ],
)
def test_only_governance_changes_parameters(fed: Fed, contract: str, fn: str, args: tuple) -> None:
    call = getattr(fed.ledger.contracts[contract].functions, fn)(*args)
    for who in (fed.ledger, fed.owner):  # the deployer has no special power after wiring
        with pytest.raises(NotAuthorized, match="only governance"):
            who._tx(fn, call)


def test_wiring_happens_once(fed: Fed) -> None:
    tm = fed.ledger.contracts["task_manager"].address
    with pytest.raises(WrongState, match="minter already set"):
        fed.ledger._tx("wire", fed.ledger.contracts["reward_token"].functions.set_minter(tm))
    with pytest.raises(WrongState, match="already wired"):
        fed.ledger._tx("wire", fed.ledger.contracts["staking"].functions.wire(tm, tm, tm))
    with pytest.raises(WrongState, match="already wired"):
        fed.ledger._tx("wire", fed.ledger.contracts["registry"].functions.wire(tm))


# ---------------------------------------------------------------- registry and staking


def test_registration_rules(fed: Fed) -> None:
    with pytest.raises(WrongState, match="already registered"):
        fed.trainers[0].register(Role.TRAINER, key("k"))
    newcomer = fed.ledger.dev(90)
    with pytest.raises(InvalidArgument, match="unknown role"):
        newcomer._tx("register", newcomer.contracts["registry"].functions.register(9, h("k"), h("m")))
    with pytest.raises(InvalidKey):  # the client refuses a small-order key before any transaction...
        newcomer.register(Role.TRAINER, b"\x00" * 32)
    with pytest.raises(InvalidArgument, match="empty key-agreement key"):  # ...and the contract an empty one
        newcomer._tx("register", newcomer.contracts["registry"].functions.register(int(Role.TRAINER), b"\x00" * 32,
                                                                                   h("m")))
    with pytest.raises(WrongState, match="not a registered member"):
        newcomer.stake(1)
    member = newcomer.register(Role.TRAINER, key("x25519 newcomer"), h("meta"))
    assert (member.role, member.pubkey, member.stake, member.weight) == (Role.TRAINER, key("x25519 newcomer"), 0, 0)
    assert (
        fed.ledger.events("MemberRegistered", member=newcomer.address)[0].args["pubkey"] == "0x" + member.pubkey.hex()
    )
    registered = fed.ledger.events("MemberRegistered", member=newcomer.address)[0].args
    assert registered["pool_index"] == len(fed.trainers) + 1  # its number among the trainers: a label
    with pytest.raises(InvalidKey):
        newcomer.update_member(bytes.fromhex("ec" + "ff" * 30 + "7f"))  # y = -1: the order-2 point
    newcomer.update_member(key("rotated"))
    assert fed.ledger.member(newcomer.address).pubkey == key("rotated")


def test_stake_respects_the_role_minimum(fed: Fed) -> None:
    agg = fed.ledger.dev(91)
    fed.ledger.transfer_utility(agg.address, 1_000 * E)
    agg.register(Role.AGGREGATOR, key("k91"))
    with pytest.raises(InsufficientStake, match="below the role's minimum stake"):
        agg.stake(99 * E)
    agg.stake(100 * E)
    assert agg.member().weight == 0  # a member weighs only in the tasks it joined
    agg.join_task(fed.task_id)
    assert agg.weight_in(fed.task_id) == 100 * E
    with pytest.raises(InsufficientStake, match="remaining stake below the role's minimum"):
        agg.unbond(1 * E)
    with pytest.raises(InsufficientStake, match="exceeds the active stake"):
        agg.unbond(101 * E)
    with pytest.raises(InsufficientStake, match="insufficient balance"):
        agg.stake(5_000 * E)


def test_unbonding_respects_the_delay(fed: Fed) -> None:
    v = fed.validators[4]
    before = fed.ledger.utility_balance(v.address)
    v.unbond(300 * E)
    assert v.stake_of() == 0 and v.weight_in(fed.task_id) == 0
    amount, release = v.unbonding_of()
    assert amount == 300 * E and release == fed.ledger.timestamp + TEST_PARAMS.unbonding_delay
    with pytest.raises(UnbondingNotOver):
        v.withdraw()
    fed.ledger.advance_time(TEST_PARAMS.unbonding_delay - 100)
    with pytest.raises(UnbondingNotOver):
        v.withdraw()
    fed.ledger.advance_time(100)
    v.withdraw()
    assert fed.ledger.utility_balance(v.address) == before + 300 * E
    with pytest.raises(InsufficientStake, match="nothing to withdraw"):
        v.withdraw()


# ---------------------------------------------------------------- tasks and rounds


def test_only_task_owners_create_tasks_and_open_rounds(fed: Fed) -> None:
    with pytest.raises(NotAuthorized, match="only a registered task owner"):
        fed.trainers[0].create_task(TASK)
    with pytest.raises(NotAuthorized, match="only the task owner opens rounds"):
        fed.validators[0].open_round(fed.task_id)
    with pytest.raises(InvalidArgument, match="reward per round above the maximum"):
        fed.owner.create_task(type(TASK)(**{**_spec(TASK), "reward_per_round": TEST_PARAMS.max_reward_per_round + 1}))
    with pytest.raises(InvalidArgument, match="quorum out of range"):
        fed.owner.create_task(type(TASK)(**{**_spec(TASK), "quorum_bps": 6_000}))


def _spec(spec: object) -> dict:
    return {k: getattr(spec, k) for k in spec.__slots__}  # type: ignore[attr-defined]


def test_a_full_round(fed: Fed) -> None:
    info, tree = fed.full_round(privacy=1.0)
    rec = fed.ledger.round(fed.task_id, info.round_id)
    assert rec.status is RoundStatus.FINALIZED and rec.accept_weight == rec.committee_weight
    task = fed.ledger.task(fed.task_id)
    assert (task.finalized_rounds, task.privacy_spent) == (1, to_fixed(1.0))
    # validators who accepted share 10 % of the reward; the rest is the contributors' pool
    share = TASK.reward_per_round * TEST_PARAMS.validator_share_bps // 10_000 // len(info.committee)
    for v in info.committee:
        assert fed.ledger.reward_balance(v) == share
    root, pool, claimed = fed.ledger.reward_pool(fed.task_id, info.round_id)
    # the pool does not depend on how many accepted (the rest of the validators' part returns to the escrow)
    contributors_pool = TASK.reward_per_round - TASK.reward_per_round * TEST_PARAMS.validator_share_bps // 10_000
    assert (root, pool, claimed) == (tree.root, contributors_pool, 0)
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    names = [e.name for e in fed.ledger.events(task_id=fed.task_id, round_id=info.round_id)]
    assert names[:2] == ["RoundCommitted", "RoundOpened"]


def test_non_committee_and_double_votes_revert(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    outsider = fed.outsider(info)
    assert not outsider.is_committee_member(fed.task_id, info.round_id)
    with pytest.raises(NotCommitteeMember):
        outsider.vote(fed.task_id, info.round_id, True)
    with pytest.raises(NotCommitteeMember):
        fed.trainers[0].vote(fed.task_id, info.round_id, True)
    member = fed.at(info.committee[0])
    assert member.is_committee_member(fed.task_id, info.round_id)
    member.vote(fed.task_id, info.round_id, True)
    with pytest.raises(AlreadyVoted):
        member.vote(fed.task_id, info.round_id, False)


def test_votes_only_while_submitted(fed: Fed) -> None:
    info = fed.open()
    with pytest.raises(WrongState, match="not awaiting votes"):
        fed.at(info.committee[0]).vote(fed.task_id, info.round_id, True)
    with pytest.raises(WrongState, match="not awaiting votes"):
        fed.owner.finalize(fed.task_id, info.round_id)


def test_finalization_before_quorum_reverts(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    with pytest.raises(QuorumNotReached):
        fed.owner.finalize(fed.task_id, info.round_id)
    # accept votes one by one: finalization stays refused until >= 2/3 of committee weight accepted
    weights = {
        v: fed.ledger.contracts["task_manager"].functions.committee_weight_of(fed.task_id, info.round_id, v).call()
        for v in info.committee
    }
    total, accepted = sum(weights.values()), 0
    for v in sorted(info.committee, key=weights.__getitem__):
        fed.at(v).vote(fed.task_id, info.round_id, True)
        accepted += weights[v]
        if accepted * 3 >= total * 2:
            assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED
            break
        with pytest.raises(QuorumNotReached):
            fed.owner.finalize(fed.task_id, info.round_id)
    assert fed.ledger.round(fed.task_id, info.round_id).status is RoundStatus.FINALIZED


def test_rejection_then_reopen(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    fed.vote_all(info, accept=False)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert fed.ledger.reward_balance(info.committee[0]) == 0
    with pytest.raises(WrongState, match="current round not finalized"):
        fed.open()
    with pytest.raises(NotAuthorized, match="only the task owner reopens before the grace period"):
        fed.validators[0].reopen(fed.task_id, info.round_id)
    again = fed.owner.reopen(fed.task_id, info.round_id)  # the owner at once, anyone else a window later
    assert (again.round_id, again.attempt) == (info.round_id, 1) and again.seed != info.seed
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    fed.submit(again)
    fed.vote_all(again)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED


def test_missed_deadline_reopens_with_a_new_aggregator_and_slashes(fed: Fed) -> None:
    info = fed.open()
    late = fed.at(info.aggregator)
    with pytest.raises(DeadlineError, match="submission deadline not passed"):
        fed.trainers[0].reopen(fed.task_id, info.round_id)
    with pytest.raises(NotAuthorized, match="only the round's aggregator"):
        fed.validators[0].submit_result(fed.task_id, info.round_id, _result())
    fed.ledger.advance_time(TASK.submit_window + 1)
    with pytest.raises(DeadlineError, match="submission deadline passed"):
        late.submit_result(fed.task_id, info.round_id, _result())
    treasury = fed.ledger.contracts["governance"].address
    bonded = late.stake_of()
    with pytest.raises(NotAuthorized, match="only the task owner reopens before the grace period"):
        fed.trainers[0].reopen(fed.task_id, info.round_id)
    fed.ledger.advance_time(TASK.submit_window)
    again = fed.trainers[0].reopen(fed.task_id, info.round_id)  # anyone, once the grace period is over
    slashed = bonded * TEST_PARAMS.slash_bps // 10_000
    assert late.stake_of() == bonded - slashed
    assert fed.ledger.utility_balance(treasury) == slashed
    ev = fed.ledger.events("Slashed", member=late.address)[-1].args
    assert (ev["amount"], ev["reason"], ev["treasury"]) == (slashed, 1, treasury)
    assert again.attempt == 1 and again.aggregator != late.address
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    fed.submit(again)
    fed.vote_all(again)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED


def test_vote_timeout_reopens(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    fed.at(info.committee[0]).vote(fed.task_id, info.round_id, True)
    with pytest.raises(DeadlineError, match="voting deadline not passed"):
        fed.owner.reopen(fed.task_id, info.round_id)
    fed.ledger.advance_time(TASK.vote_window + 1)
    with pytest.raises(DeadlineError, match="voting deadline passed"):
        fed.at(info.committee[1]).vote(fed.task_id, info.round_id, True)
    again = fed.owner.reopen(fed.task_id, info.round_id)
    assert again.attempt == 1
    assert fed.ledger.events("RoundReopened", task_id=fed.task_id)[-1].args["reason"] == 2


def _result(spent: float = 1.0):
    from fedledger.ledger import RoundResult

    return RoundResult(h("m"), h("e"), h("s"), 4, to_fixed(spent), b"\x00" * 32, h("r"))


def test_over_budget_round_cannot_open(fed: Fed) -> None:
    info = fed.open()
    with pytest.raises(BudgetExceeded, match="above the round's bound"):  # a plan of at most 1.0 per round
        fed.submit(info, spent=2.0)
    fed.submit(info, spent=1.0)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    fed.full_round(privacy=2.0)
    info = fed.open()
    assert info.privacy_bound == TASK.privacy_budget  # exactly the budget is the bound
    with pytest.raises(BudgetExceeded, match="privacy spent above the round's bound"):
        fed.at(info.aggregator).submit_result(fed.task_id, info.round_id, _result(spent=3.1))
    with pytest.raises(InvalidArgument, match="below the task's"):
        fed.at(info.aggregator).submit_result(fed.task_id, info.round_id, _result(spent=1.5))
    # a task whose budget is spent before its rounds are: nothing opens
    task2 = fed.owner.create_task(TASK)
    _pass(fed, GovAction.TASK_PRIVACY_BUDGET, key=task2, value=to_fixed(1.0))
    for m in [*fed.aggregators, *fed.validators]:
        m.join_task(task2)
    info = fed.owner.open_round(task2)
    fed.at(info.aggregator).submit_result(task2, info.round_id, _result(spent=1.0))
    for v in info.committee:
        fed.at(v).vote(task2, info.round_id, True)
    fed.owner.finalize(task2, info.round_id)
    with pytest.raises(BudgetExceeded) as exc:
        fed.owner.open_round(task2)
    assert isinstance(exc.value, PrivacyBudgetExceeded) and exc.value.exit_code == PrivacyBudgetExceeded.exit_code


def test_a_task_ends_after_its_rounds(fed: Fed) -> None:
    for r in range(TASK.rounds):
        fed.full_round(privacy=0.5 * (r + 1))
    assert fed.ledger.task(fed.task_id).completed
    with pytest.raises(WrongState, match="all rounds are finalized"):
        fed.open()


# ---------------------------------------------------------------- reward claims


def test_reward_claims(fed: Fed) -> None:
    info, tree = fed.full_round()
    t0, t1 = fed.trainers[0], fed.trainers[1]
    with pytest.raises(InvalidProof):  # wrong amount
        t0.claim_reward(fed.task_id, info.round_id, 21 * E, tree.proof(t0.address))
    with pytest.raises(InvalidProof):  # someone else's proof
        t0.claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t1.address))
    with pytest.raises(InvalidProof):  # a proof for another round
        other = reward_tree(fed.task_id, info.round_id + 1, tree.values)
        t0.claim_reward(fed.task_id, info.round_id, 20 * E, other.proof(t0.address))
    with pytest.raises(WrongState, match="no reward root"):
        t0.claim_reward(fed.task_id, info.round_id + 1, 20 * E, tree.proof(t0.address))
    t0.claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t0.address))
    assert fed.ledger.reward_balance(t0.address) == 20 * E and fed.ledger.is_claimed(
        fed.task_id, info.round_id, t0.address
    )
    with pytest.raises(AlreadyClaimed):
        t0.claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t0.address))
    # anyone may claim on a member's behalf; the tokens go to the member
    fed.validators[0].claim_reward(fed.task_id, info.round_id, 20 * E, tree.proof(t1.address), account=t1.address)
    assert fed.ledger.reward_balance(t1.address) == 20 * E


def test_claims_are_capped_by_the_round_pool(fed: Fed) -> None:
    info = fed.open()
    greedy = reward_tree(fed.task_id, info.round_id, {t.address: 40 * E for t in fed.trainers})  # 160 > pool
    fed.submit(info, tree=greedy)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    _, pool, _ = fed.ledger.reward_pool(fed.task_id, info.round_id)
    paid = 0
    for t in fed.trainers:
        if paid + 40 * E > pool:
            with pytest.raises(PoolExhausted):
                t.claim_reward(fed.task_id, info.round_id, 40 * E, greedy.proof(t.address))
        else:
            t.claim_reward(fed.task_id, info.round_id, 40 * E, greedy.proof(t.address))
            paid += 40 * E
    assert fed.ledger.reward_pool(fed.task_id, info.round_id)[2] == paid <= pool


def test_single_leaf_tree_claims_with_an_empty_proof(fed: Fed) -> None:
    info = fed.open()
    solo = reward_tree(fed.task_id, info.round_id, {fed.trainers[2].address: 5 * E})
    fed.submit(info, tree=solo)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    assert solo.proof(fed.trainers[2].address) == []
    fed.trainers[2].claim_reward(fed.task_id, info.round_id, 5 * E, [])
    assert fed.ledger.reward_balance(fed.trainers[2].address) == 5 * E


# ---------------------------------------------------------------- reputation


def test_reputation_root_updates_scores_and_weights(fed: Fed) -> None:
    info = fed.open()
    v = fed.trainers[0]
    scores = {v.address: 9_000, fed.trainers[1].address: 1_000, fed.validators[0].address: 7_000}
    tree = reputation_tree(fed.task_id, info.round_id, scores)
    fed.submit(info, rep=tree.root)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    epoch = fed.ledger.reputation_epoch(fed.task_id, info.round_id)
    assert epoch == 1 and fed.ledger.reputation_of(v.address, fed.task_id) == 5_000
    with pytest.raises(InvalidProof):
        fed.trainers[3].apply_reputation(epoch, v.address, 10_000, tree.proof(v.address))
    fed.trainers[3].apply_reputation(epoch, v.address, 9_000, tree.proof(v.address))  # anyone may apply
    assert fed.ledger.reputation_of(v.address, fed.task_id) == 9_000
    assert v.weight_in(fed.task_id) == v.stake_of() * (5_000 + 9_000) // 10_000
    # a root scores trainers only: aggregators and validators are scored from what the chain sees
    with pytest.raises(InvalidArgument, match="roots score trainers only"):
        fed.trainers[3].apply_reputation(epoch, fed.validators[0].address, 7_000, tree.proof(fed.validators[0].address))
    with pytest.raises(WrongState, match="stale epoch"):
        fed.trainers[3].apply_reputation(epoch, v.address, 9_000, tree.proof(v.address))
    with pytest.raises(InvalidArgument, match="unknown epoch"):
        fed.trainers[3].apply_reputation(epoch + 1, v.address, 9_000, tree.proof(v.address))


# ---------------------------------------------------------------- selection


def test_selection_matches_the_off_chain_draw_over_many_rounds(fed: Fed) -> None:
    seen: set[str] = set()
    for _ in range(TASK.rounds):
        info, _ = fed.full_round(privacy=fed.ledger.task(fed.task_id).privacy_spent / 10**18 + 0.5)
        assert len(set(info.committee)) == len(info.committee) == TASK.committee_size
        assert info.aggregator in {a.address for a in fed.aggregators}
        fed.ledger.verify_selection(fed.task_id, info.round_id)
        seen |= set(info.committee)
        cohort = fed.ledger.cohort(fed.task_id, info.round_id, 3)
        assert len(cohort) == 3 and set(cohort) <= {t.address for t in fed.trainers}
    assert len(seen) >= 3


def test_a_round_never_opens_or_seals_with_a_short_committee(fed: Fed) -> None:
    """No shrinking committee: with fewer eligible validators than the committee size nothing opens."""
    for v in fed.validators[2:]:
        v.unbond(v.stake_of())
    with pytest.raises(WrongState, match="too few validators joined for a full committee"):
        fed.open()
    fed.validators[2].stake(100 * E)  # three eligible again: the round opens, committed but not drawn
    round_id = fed.owner.commit_round(fed.task_id)
    fed.validators[2].unbond(100 * E)  # ... and loses one before the seal: it takes effect from the next commit
    info = fed.owner.seal_round(fed.task_id, round_id)  # drawn from the pools frozen at the commitment: full
    assert len(set(info.committee)) == TASK.committee_size and fed.validators[2].address in info.committee
    fed.ledger.verify_selection(fed.task_id, info.round_id)


# ---------------------------------------------------------------- governance


def _pass(fed: Fed, action: GovAction, *, key: int = 0, value: int = 0, account: str | None = None) -> int:
    pid = fed.validators[4].propose(action, key=key, value=value, account=account)
    fed.ledger.advance_time(1)
    for v in fed.validators:
        v.vote_proposal(pid, True)
    fed.ledger.advance_time(TEST_PARAMS.voting_period + 1)
    fed.owner.queue(pid)
    fed.ledger.advance_time(TEST_PARAMS.timelock)
    fed.trainers[0].execute(pid)  # anyone executes
    return pid


def test_governance_changes_a_parameter_after_vote_and_timelock(fed: Fed) -> None:
    pid = fed.validators[4].propose(GovAction.SLASH_BPS, value=2_500)
    fed.ledger.advance_time(1)
    with pytest.raises(NotAuthorized, match="only governance"):
        fed.validators[4]._tx("x", fed.ledger.contracts["task_manager"].functions.set_slash_bps(2_500))
    for v in fed.validators[:3]:
        v.vote_proposal(pid, True)
    with pytest.raises(AlreadyVoted):
        fed.validators[0].vote_proposal(pid, False)
    with pytest.raises(InsufficientStake, match="no voting power"):
        fed.owner.vote_proposal(pid, True)
    with pytest.raises(DeadlineError, match="voting still open"):
        fed.owner.queue(pid)
    fed.ledger.advance_time(TEST_PARAMS.voting_period + 1)
    with pytest.raises(DeadlineError, match="voting closed"):
        fed.validators[3].vote_proposal(pid, True)
    fed.owner.queue(pid)
    with pytest.raises(DeadlineError, match="timelock not over"):
        fed.owner.execute(pid)
    fed.ledger.advance_time(TEST_PARAMS.timelock)
    fed.owner.execute(pid)
    assert fed.ledger.params()["slash_bps"] == 2_500
    assert fed.ledger.proposal(pid).executed
    with pytest.raises(WrongState, match="already executed"):
        fed.owner.execute(pid)


def test_governance_votes_use_the_stake_snapshot(fed: Fed) -> None:
    pid = fed.validators[0].propose(GovAction.TASK_QUORUM, key=fed.task_id, value=9_000)
    whale = fed.ledger.dev(92)
    fed.ledger.transfer_utility(whale.address, 100_000 * E)
    whale.register(Role.VALIDATOR, key("whale"))
    whale.stake(100_000 * E)  # after the snapshot: no voting power on this proposal
    with pytest.raises(InsufficientStake, match="no voting power"):
        whale.vote_proposal(pid, True)


def test_governance_quorum_and_defeat(fed: Fed) -> None:
    with pytest.raises(InsufficientStake, match="proposal threshold"):
        fed.trainers[0].propose(GovAction.SLASH_BPS, value=1)
    with pytest.raises(InvalidArgument, match="not whitelisted"):
        fed.validators[0]._tx("p", fed.ledger.contracts["governance"].functions.propose(99, 0, 0, fed.owner.address))
    small = fed.validators[0].propose(GovAction.SLASH_BPS, value=1)
    fed.ledger.advance_time(1)
    fed.trainers[0].vote_proposal(small, True)  # 10 of ~1,440 staked: below the 20 % quorum
    fed.ledger.advance_time(TEST_PARAMS.voting_period + 1)
    with pytest.raises(QuorumNotReached):
        fed.owner.queue(small)
    lost = fed.validators[0].propose(GovAction.SLASH_BPS, value=1)
    fed.ledger.advance_time(1)
    fed.validators[0].vote_proposal(lost, True)
    fed.validators[4].vote_proposal(lost, False)
    fed.ledger.advance_time(TEST_PARAMS.voting_period + 1)
    with pytest.raises(WrongState, match="defeated"):
        fed.owner.queue(lost)


def test_governance_setters_reach_tasks_stakes_and_treasury(fed: Fed) -> None:
    _pass(fed, GovAction.TASK_COMMITTEE_SIZE, key=fed.task_id, value=4)
    _pass(fed, GovAction.TASK_PRIVACY_BUDGET, key=fed.task_id, value=to_fixed(5))
    _pass(fed, GovAction.TASK_REWARD, key=fed.task_id, value=50 * E)
    _pass(fed, GovAction.MIN_STAKE, key=int(Role.TRAINER), value=20 * E)
    _pass(fed, GovAction.TASK_BOUNDS, key=int(TaskParam.MIN_WINDOW), value=120)
    assert fed.ledger.params()["min_window"] == 120
    task = fed.ledger.task(fed.task_id)
    assert (task.committee_size, task.privacy_budget, task.reward_per_round) == (4, to_fixed(5), 50 * E)
    assert fed.ledger.params()["min_stake_trainer"] == 20 * E
    # a trainer below the new minimum loses its weight once anyone refreshes it
    fed.owner.refresh_weight(fed.task_id, fed.trainers[0].address)
    assert fed.ledger.weight_in(fed.task_id, fed.trainers[0].address) == 0
    info = fed.open()
    assert len(info.committee) == 4
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    # slashed stake sits in the treasury until governance grants it
    fed.ledger.advance_time(TASK.submit_window + 1)
    fed.owner.reopen(fed.task_id, info.round_id)
    treasury = fed.ledger.contracts["governance"].address
    held = fed.ledger.utility_balance(treasury)
    assert held > 0
    before = fed.ledger.utility_balance(fed.trainers[3].address)
    _pass(fed, GovAction.TREASURY_GRANT, value=held, account=fed.trainers[3].address)
    assert fed.ledger.utility_balance(fed.trainers[3].address) == before + held
    assert fed.ledger.utility_balance(treasury) == 0


# ---------------------------------------------------------------- client plumbing


def test_gas_is_recorded_per_operation(fed: Fed) -> None:
    fed.full_round()
    report = fed.ledger.gas_report()
    for op in ("open_round", "submit_result", "vote", "finalize", "register", "stake"):
        assert report[op]["count"] >= 1 and 20_000 < report[op]["mean"] < 3_000_000
