"""The attacks of issue 12 (items 1, 2, 4, 5, 6), each performed against the real contracts on anvil,
each asserted to fail for the attacker."""

from __future__ import annotations

from collections import Counter
from itertools import accumulate

import pytest
from eth_abi import encode
from eth_utils import keccak
from ledger_fed import TASK, TEST_PARAMS, E, Fed, h, key, pass_proposal
from web3.exceptions import ContractLogicError

from fedledger.ledger import GovAction, Role, RoundStatus, SlashReason, TaskParam, TaskSpec, to_fixed
from fedledger.ledger.claims import reputation_tree
from fedledger.ledger.compiler import compile_source
from fedledger.ledger.errors import (
    BudgetExceeded,
    DeadlineError,
    InsufficientStake,
    InvalidArgument,
    LedgerRevert,
    NotAuthorized,
    WrongState,
)
from fedledger.ledger.selection import COMMITTEE_TAG, MAX_DRAWS, draw, select_aggregator, select_committee

pytestmark = [pytest.mark.anvil]

JUNK = TaskSpec(spec_hash=h("junk"), reward_per_round=0, rounds=1, privacy_budget=1, committee_size=3,
                submit_window=5, vote_window=5)


def _outsider(fed: Fed, i: int, tokens: int = 0):
    m = fed.ledger.dev(i)
    if tokens:
        fed.ledger.transfer_utility(m.address, tokens)
    m.register(Role.TASK_OWNER, key(f"outsider {i}"))
    return m


def _stakes(fed: Fed) -> dict[str, int]:
    return {m.address: fed.ledger.stake_of(m.address) for m in [*fed.aggregators, *fed.validators, *fed.trainers]}


# ---------------------------------------------------------------- 1. the stakeless reopen loop


def test_a_stakeless_outsider_cannot_create_a_task_without_paying_or_with_short_windows(fed: Fed) -> None:
    broke = _outsider(fed, 70)
    with pytest.raises(InvalidArgument, match="window below the minimum"):
        broke.create_task(JUNK)
    ok_windows = TaskSpec(**{**{k: getattr(JUNK, k) for k in JUNK.__slots__}, "submit_window": 60, "vote_window": 60})
    with pytest.raises(InsufficientStake, match="insufficient balance"):  # the deposit is not free
        broke.create_task(ok_windows)
    rich = _outsider(fed, 71, tokens=1_000 * E)
    long = TaskSpec(**{**{k: getattr(JUNK, k) for k in JUNK.__slots__}, "submit_window": 2_001, "vote_window": 60})
    with pytest.raises(InvalidArgument, match="window above the maximum"):
        rich.create_task(long)
    # nor can governance lift the maximum to where a member could unbond out of a round's slash
    pid = fed.validators[4].propose(
        GovAction.TASK_BOUNDS, key=int(TaskParam.MAX_WINDOW), value=TEST_PARAMS.unbonding_delay // 2
    )
    with pytest.raises(LedgerRevert, match="windows must stay below the unbonding delay"):
        pass_proposal(fed, pid)


def test_the_junk_task_reopen_loop_slashes_nobody_who_did_not_join(fed: Fed) -> None:
    attacker = _outsider(fed, 72, tokens=1_000 * E)
    spec = TaskSpec(**{**{k: getattr(JUNK, k) for k in JUNK.__slots__}, "submit_window": 60, "vote_window": 60})
    junk = attacker.create_task(spec)  # it pays the deposit
    assert fed.ledger.utility_balance(attacker.address) == 1_000 * E - TEST_PARAMS.task_deposit
    before = _stakes(fed)
    with pytest.raises(WrongState, match="no eligible aggregator joined"):  # nobody honest joined the junk task
        attacker.open_round(junk)
    # even with its own sybil aggregator and validators, only they can be drawn for its task
    sybils = []
    for i, role in enumerate([Role.AGGREGATOR, Role.VALIDATOR, Role.VALIDATOR, Role.VALIDATOR]):
        s = fed.ledger.dev(73 + i)
        fed.ledger.transfer_utility(s.address, 300 * E)
        s.register(role, key(f"sybil {i}"))
        s.stake(300 * E)
        s.join_task(junk)
        sybils.append(s.address)
    info = attacker.open_round(junk)
    for _ in range(6):
        fed.ledger.advance_time(61)
        info = attacker.reopen(junk, info.round_id)
        assert {info.aggregator, *info.committee} <= set(sybils)
    assert _stakes(fed) == before
    assert {s.member for s in fed.ledger.slashes()} <= set(sybils)


def test_a_reopen_loop_on_a_joined_task_slashes_each_member_at_most_once_per_round(fed: Fed) -> None:
    info = fed.open()
    outsider = _outsider(fed, 78)
    fed.ledger.advance_time(TASK.submit_window + 1)
    with pytest.raises(NotAuthorized, match="before the grace period"):
        outsider.reopen(fed.task_id, info.round_id)
    for _ in range(8):  # the aggregators never submit: the outsider loops past each grace period
        fed.ledger.advance_time(2 * TASK.submit_window + 1)
        info = outsider.reopen(fed.task_id, info.round_id)
    per_member = Counter(s.member for s in fed.ledger.slashes(fed.task_id) if s.round_id == info.round_id)
    assert set(per_member) <= {a.address for a in fed.aggregators}
    assert max(per_member.values()) == 1  # 8 reopens, at most one slash per aggregator
    for a in fed.aggregators:
        assert a.stake_of() >= 200 * E - 200 * E * TEST_PARAMS.slash_bps // 10_000


def test_a_window_below_the_current_minimum_slashes_nobody(fed: Fed) -> None:
    pid = fed.validators[4].propose(GovAction.TASK_BOUNDS, key=int(TaskParam.MIN_WINDOW), value=TASK.submit_window + 1)
    pass_proposal(fed, pid)  # governance raised the minimum above the task's windows
    info = fed.open()
    before = _stakes(fed)
    fed.ledger.advance_time(TASK.submit_window + 1)
    again = fed.owner.reopen(fed.task_id, info.round_id)  # the aggregator missed a (now too short) deadline
    assert _stakes(fed) == before and fed.ledger.slashes(fed.task_id) == []
    fed.submit(again)
    fed.ledger.advance_time(TASK.vote_window + 1)
    fed.owner.reopen(fed.task_id, info.round_id)  # the committee was silent: still nobody is slashed
    assert _stakes(fed) == before


# ---------------------------------------------------------------- 1. the takeover


def test_the_committee_never_shrinks_to_an_attacker(fed: Fed) -> None:
    """The attacker drained the others and became the whole committee of a shrunk draw: no more."""
    attacker = fed.ledger.dev(79)
    fed.ledger.transfer_utility(attacker.address, 1_000 * E)
    attacker.register(Role.VALIDATOR, key("attacker"))
    attacker.stake(1_000 * E)
    attacker.join_task(fed.task_id)
    fed.by_address[attacker.address] = attacker
    for v in fed.validators[1:]:  # every honest validator but one drops out
        v.unbond(v.stake_of())
    with pytest.raises(WrongState, match="too few validators joined for a full committee"):
        fed.open()
    fed.validators[1].stake(100 * E)  # one honest validator back: a full committee of 3, 2 of them honest
    for _ in range(3):
        info, _ = fed.full_round(privacy=fed.ledger.task(fed.task_id).privacy_spent / E + 0.5)
        assert len(set(info.committee)) == TASK.committee_size
        assert sum(1 for v in info.committee if v != attacker.address) >= 2


# ---------------------------------------------------------------- 2. nothing minted beyond funding


def test_rewards_are_paid_from_the_escrow_never_minted_beyond_it(fed: Fed) -> None:
    owner_before = fed.ledger.utility_balance(fed.owner.address)
    supply = fed.ledger.contracts["reward_token"].functions.totalSupply
    funded = fed.ledger.contracts["task_manager"].functions.total_funded
    assert funded().call() == TASK.reward_per_round * TASK.rounds
    with pytest.raises(LedgerRevert, match="reward above the funded budget"):  # governance cannot mint more either
        pass_proposal(fed, fed.validators[4].propose(GovAction.TASK_REWARD, key=fed.task_id, value=101 * E))
    for _ in range(TASK.rounds):
        fed.full_round(privacy=fed.ledger.task(fed.task_id).privacy_spent / E + 0.5)
    residue = fed.ledger.task(fed.task_id).escrow  # the validators' part that does not divide stays escrowed
    assert supply().call() + residue == funded().call() == TASK.reward_per_round * TASK.rounds
    assert residue < TASK.rounds * TEST_PARAMS.max_committee
    with pytest.raises(WrongState, match="all rounds are finalized"):
        fed.open()
    fed.owner.close_task(fed.task_id)  # finished: the deposit and the undivided residue come back
    assert fed.ledger.utility_balance(fed.owner.address) == owner_before + TEST_PARAMS.task_deposit + residue
    assert supply().call() <= funded().call()


def test_an_abandoned_task_forfeits_its_deposit_and_refunds_the_unspent_budget(fed: Fed) -> None:
    treasury = fed.ledger.contracts["governance"].address
    owner_before, treasury_before = fed.ledger.utility_balance(fed.owner.address), fed.ledger.utility_balance(treasury)
    fed.full_round()
    with pytest.raises(NotAuthorized, match="only the task owner closes"):
        fed.trainers[0].close_task(fed.task_id)
    fed.owner.close_task(fed.task_id)
    paid = fed.ledger.contracts["reward_token"].functions.totalSupply().call()
    assert TASK.reward_per_round - TEST_PARAMS.max_committee < paid <= TASK.reward_per_round  # round 1's reward
    refund = TASK.reward_per_round * TASK.rounds - paid  # the rounds never run and round 1's undivided residue
    assert fed.ledger.utility_balance(fed.owner.address) == owner_before + refund
    assert fed.ledger.utility_balance(treasury) == treasury_before + TEST_PARAMS.task_deposit
    with pytest.raises(WrongState, match="task is closed"):
        fed.open()


def test_a_round_committed_before_the_close_never_seals(fed: Fed) -> None:
    round_id = fed.owner.commit_round(fed.task_id)
    fed.owner.close_task(fed.task_id)  # nothing pending: the round was not drawn yet
    with pytest.raises(WrongState, match="task is closed"):
        fed.trainers[0].seal_round(fed.task_id, round_id)
    assert fed.ledger.contracts["reward_token"].functions.totalSupply().call() == 0


# ---------------------------------------------------------------- 4. grinding the draw

GRINDER = """
# pragma version ~=0.4.3
interface ITaskManager:
    def open_round(task_id: uint256) -> uint256: nonpayable
    def reopen(task_id: uint256, round_id: uint256): nonpayable
    def committee(task_id: uint256, round_id: uint256) -> DynArray[address, 32]: view
    def create_task(spec_hash: bytes32, reward_per_round: uint256, rounds: uint256, privacy_budget: uint256,
                    privacy_per_round: uint256, committee_size: uint256, quorum_bps: uint256,
                    submit_window: uint256, vote_window: uint256) -> uint256: nonpayable

interface IRegistry:
    def register(role: uint256, pubkey: bytes32, metadata: bytes32): nonpayable

interface IToken:
    def approve(spender: address, amount: uint256) -> bool: nonpayable

tm: immutable(ITaskManager)
want: public(address)

@deploy
def __init__(tm_: ITaskManager, registry: IRegistry, token: IToken, want_: address):
    tm = tm_
    self.want = want_
    extcall registry.register(4, keccak256("grinder"), empty(bytes32))
    extcall token.approve(tm_.address, max_value(uint256))

@external
def create(spec: bytes32, rounds: uint256) -> uint256:
    return extcall tm.create_task(spec, 0, rounds, 10**19, 10**18, 3, 6667, 1000, 1000)

@external
def open_if_drawn(task_id: uint256):
    # open, try to seal in the same transaction to see the draw, keep it only if `want` is drawn
    round_id: uint256 = extcall tm.open_round(task_id)
    sealed: bool = raw_call(tm.address, abi_encode(task_id, round_id, method_id=method_id("seal(uint256,uint256)")),
                            revert_on_failure=False)
    assert self.want in staticcall tm.committee(task_id, round_id), "grinder: unfavourable draw"

@external
def reopen_if_drawn(task_id: uint256, round_id: uint256):
    extcall tm.reopen(task_id, round_id)
    sealed: bool = raw_call(tm.address, abi_encode(task_id, round_id, method_id=method_id("seal(uint256,uint256)")),
                            revert_on_failure=False)
    assert self.want in staticcall tm.committee(task_id, round_id), "grinder: unfavourable draw"

@external
def open_blind(task_id: uint256) -> uint256:
    return extcall tm.open_round(task_id)
"""


def _grinder(fed: Fed, want: str):
    art = compile_source(GRINDER, "grinder")
    c = fed.ledger.contracts
    factory = fed.ledger._s.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = fed.ledger._tx("deploy:grinder", factory.constructor(
        c["task_manager"].address, c["registry"].address, c["utility_token"].address, want))
    grinder = fed.ledger._s.w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)
    fed.ledger.transfer_utility(grinder.address, 1_000 * E)
    return grinder


def test_a_contract_that_opens_and_reverts_on_an_unfavourable_draw_learns_nothing(fed: Fed) -> None:
    want = fed.validators[0].address  # the attacker's validator
    grinder = _grinder(fed, want)
    receipt = fed.ledger._tx("grinder:create", grinder.functions.create(h("grind"), 5))
    task_id = int(fed.ledger._events(receipt, "TaskCreated")[0].args["task_id"])
    for m in [*fed.aggregators, *fed.validators]:
        m.join_task(task_id)
    # every attempt reverts: in the opening transaction the draw does not exist (the seal needs a later block)
    for _ in range(5):
        with pytest.raises(LedgerRevert, match="unfavourable draw"):
            fed.ledger._tx("grinder:open", grinder.functions.open_if_drawn(task_id))
    assert fed.ledger.task(task_id).current_round == 0
    snap = fed.ledger.snapshot()
    fed.ledger._tx("grinder:open_blind", grinder.functions.open_blind(task_id))
    with pytest.raises(DeadlineError, match="seal block not mined yet"):  # the next block is the committed one
        fed.ledger._tx("seal", fed.ledger.contracts["task_manager"].functions.seal(task_id, 1))
    fed.ledger.revert(snap)
    # opening blind commits to the next block: whoever seals and whenever (within 256 blocks), the draw is
    # the one that block's hash and the pools fixed at the commitment give
    fed.ledger._tx("grinder:open_blind", grinder.functions.open_blind(task_id))
    rec = fed.ledger.round(task_id, 1)
    assert rec.status is RoundStatus.SEALING and rec.committee == ()
    fed.ledger.backend.mine()
    snap = fed.ledger.snapshot()
    early = fed.trainers[0].seal_round(task_id, 1)
    fed.ledger.revert(snap)
    for _ in range(20):
        fed.ledger.backend.mine()
    late = fed.validators[0].seal_round(task_id, 1)
    assert (early.seed, early.aggregator, early.committee) == (late.seed, late.aggregator, late.committee)
    fed.ledger.verify_selection(task_id, 1)
    # and the reopen path is no different
    fed.ledger.advance_time(1_001)
    with pytest.raises(LedgerRevert, match="unfavourable draw"):
        fed.ledger._tx("grinder:reopen", grinder.functions.reopen_if_drawn(task_id, 1))


def test_a_stake_top_up_after_the_committed_block_changes_nothing_in_the_draw(fed: Fed) -> None:
    """The grinding of issue 12: once the committed block's hash is known, an attacker tops its stake up (or joins,
    or unbonds) until it is drawn. The pools are frozen at the commitment: the seal draws from them as they stood
    then, with the weights of then, and never commits again because of a change made after."""
    round_id = fed.owner.commit_round(fed.task_id)
    committed = fed.ledger.round(fed.task_id, round_id).commit_block
    frozen = {r: fed.ledger.pool(fed.task_id, r) for r in (Role.AGGREGATOR, Role.VALIDATOR)}
    fed.ledger.backend.mine()
    seed_block_hash = fed.ledger._s.w3.eth.get_block(committed)["hash"]
    assert seed_block_hash  # known to everybody now; the attacker changes the pools to steer the draw
    fed.validators[0].stake(1_000 * E)  # a big top-up: it would now be drawn far more often
    fed.aggregators[0].unbond(fed.aggregators[0].stake_of())  # an aggregator drops to weight 0
    late = fed.ledger.dev(77)  # and a new validator joins with a large stake
    fed.ledger.transfer_utility(late.address, 5_000 * E)
    late.register(Role.VALIDATOR, key("late validator"))
    late.stake(5_000 * E)
    late.join_task(fed.task_id)
    assert fed.ledger.pool(fed.task_id, Role.VALIDATOR) != frozen[Role.VALIDATOR]
    tm = fed.ledger.contracts["task_manager"].functions
    receipt = fed.trainers[0]._tx("seal", tm.seal(fed.task_id, round_id))
    opened = fed.ledger._events(receipt, "RoundOpened")
    assert opened, "the seal committed again after a pool change"
    rec = fed.ledger.round(fed.task_id, round_id)
    assert rec.status is RoundStatus.OPEN and rec.commit_block == committed
    # the draw is the committed block's, from the pools and weights as they stood at the commitment
    assert rec.aggregator == select_aggregator(rec.seed, frozen[Role.AGGREGATOR])
    assert rec.committee == tuple(select_committee(rec.seed, frozen[Role.VALIDATOR], TASK.committee_size))
    assert late.address not in rec.committee
    weights = dict(frozen[Role.VALIDATOR])
    for v in rec.committee:  # each member votes with the weight it was drawn with
        assert int(tm.committee_weight_of(fed.task_id, round_id, v).call()) == weights[v]
    assert rec.committee_weight == sum(weights[v] for v in rec.committee)
    fed.ledger.verify_selection(fed.task_id, round_id)  # the off-chain replica agrees
    # the changes take effect from the next commitment on: a reopen draws from the pools as they are now
    fed.ledger.advance_time(TASK.submit_window + 1)
    again = fed.owner.reopen(fed.task_id, round_id)
    now = {r: fed.ledger.pool(fed.task_id, r) for r in (Role.AGGREGATOR, Role.VALIDATOR)}
    assert again.aggregator == select_aggregator(again.seed, now[Role.AGGREGATOR], rec.aggregator)
    assert again.aggregator != fed.aggregators[0].address  # it unbonded before this commitment: no weight
    assert again.committee == tuple(select_committee(again.seed, now[Role.VALIDATOR], TASK.committee_size))
    weights = dict(now[Role.VALIDATOR])
    assert again.committee_weight == sum(weights[v] for v in again.committee)
    fed.ledger.verify_selection(fed.task_id, round_id)


# ---------------------------------------------------------------- 5. the privacy budget


def test_the_privacy_budget_cannot_be_exceeded_or_raised_once_rounds_ran(fed: Fed) -> None:
    info = fed.open()  # the bound is the contract's: spent (0) + the plan's 1.0 per round
    assert info.privacy_bound == TASK.privacy_per_round
    with pytest.raises(BudgetExceeded, match="privacy spent above the round's bound"):
        fed.submit(info, spent=1.5)
    pid = fed.validators[4].propose(GovAction.TASK_PRIVACY_BUDGET, key=fed.task_id, value=to_fixed(100))
    with pytest.raises(LedgerRevert, match="privacy budget is fixed once a round has opened"):
        pass_proposal(fed, pid)
    assert fed.ledger.task(fed.task_id).privacy_budget == TASK.privacy_budget


def test_the_privacy_budget_is_set_before_the_first_round_only(fed: Fed) -> None:
    pass_proposal(fed, fed.validators[4].propose(GovAction.TASK_PRIVACY_BUDGET, key=fed.task_id, value=to_fixed(2)))
    info, _ = fed.full_round(privacy=1.0)
    assert info.privacy_bound == to_fixed(1.0)
    info = fed.open()
    assert info.privacy_bound == to_fixed(2.0)  # spent + 1.0, within the lowered budget
    with pytest.raises(BudgetExceeded, match="privacy spent above the round's bound"):
        fed.submit(info, spent=2.1)
    fed.submit(info, spent=2.0)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    with pytest.raises(BudgetExceeded, match="exceed the privacy budget"):  # the budget is spent: nothing opens
        fed.open()
    assert fed.ledger.task(fed.task_id).privacy_spent <= fed.ledger.task(fed.task_id).privacy_budget


def test_the_owner_cannot_declare_a_round_bound_below_the_plan(fed: Fed) -> None:
    """Issue 12 item 4: the owner used to pass each round's bound; one below an honest round's spend made every
    honest result revert (and its aggregator miss the deadline). The bound now derives from the task's plan, and
    the old entry point taking a bound does not exist."""
    tm = fed.ledger.contracts["task_manager"]
    selector = keccak(b"open_round(uint256,uint256)")[:4]
    data = selector + encode(["uint256", "uint256"], [fed.task_id, 0])
    with pytest.raises(ContractLogicError):  # no such function: the call reverts
        fed.ledger._s.w3.eth.call({"from": fed.owner.address, "to": tm.address, "data": data})
    spent = 0
    for _ in range(TASK.rounds):
        info = fed.open()
        assert info.privacy_bound == min(spent + TASK.privacy_per_round, TASK.privacy_budget)  # type: ignore[operator]
        spent = info.privacy_bound  # an honest round spending the plan's whole per-round amount always posts
        fed.submit(info, spent=spent / E)
        fed.vote_all(info)
        fed.owner.finalize(fed.task_id, info.round_id)
    assert fed.ledger.task(fed.task_id).privacy_spent == TASK.privacy_budget


# ---------------------------------------------------------------- 6. reputation per task, every role


def test_a_penalty_in_one_task_is_not_undone_by_an_epoch_of_another(fed: Fed) -> None:
    t = fed.trainers[0]
    info = fed.open()
    tree = reputation_tree(fed.task_id, info.round_id, {t.address: 1_000})
    fed.submit(info, rep=tree.root)
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    t.apply_reputation(fed.ledger.reputation_epoch(fed.task_id, info.round_id), t.address, 1_000, tree.proof(t.address))
    # a second task (its owner the attacker's accomplice) scores the same trainer high in a later epoch
    other = fed.owner.create_task(TASK)
    for m in [*fed.aggregators, *fed.validators, *fed.trainers]:
        m.join_task(other)
    info2 = fed.owner.open_round(other)
    tree2 = reputation_tree(other, info2.round_id, {t.address: 10_000})
    fed.at(info2.aggregator).submit_result(other, info2.round_id, _result(info2, tree2.root))
    for v in info2.committee:
        fed.at(v).vote(other, info2.round_id, True)
    fed.owner.finalize(other, info2.round_id)
    t.apply_reputation(fed.ledger.reputation_epoch(other, info2.round_id), t.address, 10_000, tree2.proof(t.address))
    assert fed.ledger.reputation_of(t.address, other) == 10_000
    assert fed.ledger.reputation_of(t.address, fed.task_id) == 1_000  # the penalty stands where it was earned
    assert t.weight_in(fed.task_id) == t.stake_of() * (5_000 + 1_000) // 10_000


def test_aggregators_and_validators_are_scored_and_weighted_by_their_conduct(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    voter, *silent = info.committee
    fed.at(voter).vote(fed.task_id, info.round_id, True)
    fed.ledger.advance_time(TASK.vote_window + 1)
    again = fed.owner.reopen(fed.task_id, info.round_id)  # the silent members are slashed and lose score
    for v in silent:
        assert fed.ledger.reputation_of(v, fed.task_id) == 4_000
        stake = fed.ledger.stake_of(v)
        expected = stake * 9_000 // 10_000 if stake >= TEST_PARAMS.min_stakes[Role.VALIDATOR - 1] else 0
        assert fed.ledger.weight_in(fed.task_id, v) == expected
    fed.submit(again)
    fed.vote_all(again)
    fed.owner.finalize(fed.task_id, again.round_id)
    for a in [again.aggregator, *again.committee]:  # a finalized result raises its aggregator and accepters
        assert fed.ledger.reputation_of(a, fed.task_id) in (5_100, 4_100)
    fed.owner.refresh_weight(fed.task_id, again.aggregator)  # anyone refreshes a raised weight
    agg = again.aggregator
    assert fed.ledger.weight_in(fed.task_id, agg) == fed.ledger.stake_of(agg) * (5_000 + 5_100) // 10_000
    assert {s.reason for s in fed.ledger.slashes(fed.task_id)} == {SlashReason.MISSED_VOTE}


def _result(info, rep_root: bytes):
    from fedledger.ledger import RoundResult
    from fedledger.ledger.claims import reward_tree

    return RoundResult(model_hash=h("m2"), evidence_root=h("e2"), survivor_root=h("s2"), survivor_count=1,
                       privacy_spent=to_fixed(1.0), reputation_root=rep_root,
                       reward_root=reward_tree(info.task_id, info.round_id, {info.aggregator: E}).root)


def test_a_whale_validator_still_gets_a_full_committee_matching_the_off_chain_draw(fed: Fed) -> None:
    """With one validator holding ~all the weight, 128 draws do not find two others: the contract
    walks on in pool order instead of shrinking the committee, and the replica does the same."""
    whale = fed.validators[0]
    fed.ledger.transfer_utility(whale.address, 10**8 * E)
    whale.stake(10**8 * E)
    info = fed.open()
    assert len(set(info.committee)) == TASK.committee_size and whale.address in info.committee
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    pool = fed.ledger.pool(fed.task_id, Role.VALIDATOR)
    prefix = list(accumulate(w for _, w in pool))
    drawn = {pool[draw(info.seed, COMMITTEE_TAG, j, prefix)][0] for j in range(MAX_DRAWS)}
    assert len(drawn) < TASK.committee_size  # the draws alone would have left the committee short


def test_the_owner_role_seals_a_round_a_crash_left_committed(fed: Fed, tmp_path) -> None:
    """A task owner that crashed between the commitment and the seal finds the round SEALING on chain
    and seals it (the real role code, `protocol.roles.TaskOwner`)."""
    from fedledger.core.blobstore import BlobStore
    from fedledger.protocol.roles import RoundView, TaskOwner
    from fedledger.protocol.transport import InProcessTransport

    round_id = fed.owner.commit_round(fed.task_id)  # ... and the process died here
    owner = TaskOwner(fed.owner, fed.task_id, InProcessTransport(), BlobStore(tmp_path / "blobs"))
    record = fed.ledger.round(fed.task_id, round_id)
    assert record.status is RoundStatus.SEALING
    view = RoundView(record=record, cohort=(), global_model=h("model 0"), previous_evidence=None,
                     now=fed.ledger.timestamp)
    assert owner.step(view, idle=False)
    sealed = fed.ledger.round(fed.task_id, round_id)
    assert sealed.status is RoundStatus.OPEN and len(sealed.committee) == TASK.committee_size
    fed.ledger.verify_selection(fed.task_id, round_id)
