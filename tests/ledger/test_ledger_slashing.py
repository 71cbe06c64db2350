"""Slashing of proven faults on a real anvil: a rejected result, faulty trainers named by an
accepted result, committee members that did not vote, and bad update proofs disputed through the
dispute contract governance registered for the task."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak
from ledger_fed import TASK, TEST_PARAMS, E, Fed, h, pass_proposal

from fedledger.ledger import RoundResult, RoundStatus, SlashReason, to_fixed
from fedledger.ledger.errors import (
    AlreadySlashed,
    DeadlineError,
    InvalidArgument,
    NotAnOffence,
    NotAuthorized,
    QuorumNotReached,
    WrongState,
)
from fedledger.zk.onchain import evidence_tree, sign_submission

pytestmark = [pytest.mark.anvil]
BPS = 10_000
ZERO = "0x" + "00" * 20


def _cut(bonded: int) -> int:
    return bonded * TEST_PARAMS.slash_bps // BPS


def _weights(fed: Fed, info) -> dict[str, int]:
    tm = fed.ledger.contracts["task_manager"].functions
    return {v: int(tm.committee_weight_of(fed.task_id, info.round_id, v).call()) for v in info.committee}


def _result(fed: Fed, info, faulty: tuple[str, ...] = ()) -> RoundResult:
    return RoundResult(
        model_hash=h(f"model {info.round_id}/{info.attempt}"),
        evidence_root=h(f"evidence {info.attempt}"),
        survivor_root=h("survivors"),
        survivor_count=len(fed.trainers),
        privacy_spent=to_fixed(1.0),
        reward_root=fed.rewards(info).root,
        faulty=faulty,
    )


# ---------------------------------------------------------------- rejected result


def test_a_result_the_quorum_rejects_slashes_its_aggregator(fed: Fed) -> None:
    info = fed.open()
    agg = fed.at(info.aggregator)
    bonded = agg.stake_of()
    result = _result(fed, info)
    agg.submit_result(fed.task_id, info.round_id, result)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is None
    fed.vote_all(info, accept=False)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert agg.stake_of() == bonded  # asking costs nothing
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert agg.stake_of() == bonded - _cut(bonded)
    [s] = fed.ledger.slashes(fed.task_id)
    evidence = keccak(
        encode(
            ["uint256", "uint256", "uint256", "bytes32", "bytes32"],
            [fed.task_id, info.round_id, info.attempt, result.model_hash, result.evidence_root],
        )
    )
    assert (s.member, s.amount, s.reason) == (agg.address, _cut(bonded), SlashReason.REJECTED_RESULT)
    assert s.evidence == evidence
    assert (s.task_id, s.round_id, s.attempt) == (fed.task_id, info.round_id, 0)
    rejected = fed.ledger.events("RoundRejected", task_id=fed.task_id)[-1].args
    assert (rejected["slashed"], rejected["slashed_amount"]) == (agg.address, _cut(bonded))
    # the redo does not draw the rejected aggregator first (two aggregators: it draws the other)
    again = fed.owner.reopen(fed.task_id, info.round_id)
    assert again.attempt == 1 and again.aggregator != agg.address and again.seed != info.seed
    fed.ledger.verify_selection(fed.task_id, info.round_id)
    assert fed.ledger.events("RoundReopened", task_id=fed.task_id)[-1].args["excluded"] == agg.address
    assert fed.ledger.slashes(fed.task_id + 1) == []


def test_a_minority_rejection_neither_slashes_nor_closes_the_vote_early(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    weights = _weights(fed, info)
    heavy, *rest = sorted(info.committee, key=weights.__getitem__, reverse=True)
    assert weights[heavy] * 3 > sum(weights.values())  # enough to block acceptance, not to reject
    fed.at(heavy).vote(fed.task_id, info.round_id, False)
    # acceptance is now impossible, but the aggregator cannot settle the round before the others vote
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is None
    with pytest.raises(QuorumNotReached):
        fed.at(info.aggregator).finalize(fed.task_id, info.round_id)
    for v in rest:
        fed.at(v).vote(fed.task_id, info.round_id, True)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED  # a split: everyone voted
    assert fed.ledger.slashes(fed.task_id) == []
    assert fed.ledger.events("RoundRejected", task_id=fed.task_id)[-1].args["slashed"] == ZERO


# ---------------------------------------------------------------- faulty trainers


def test_trainers_an_accepted_result_names_are_slashed_once(fed: Fed) -> None:
    info = fed.open()
    agg = fed.at(info.aggregator)
    t0, t1 = fed.trainers[0], fed.trainers[1]
    with pytest.raises(InvalidArgument, match="faulty member is not a trainer"):
        agg.submit_result(fed.task_id, info.round_id, _result(fed, info, (t0.address, fed.validators[0].address)))
    with pytest.raises(InvalidArgument, match="at most 32"):
        agg.submit_result(fed.task_id, info.round_id, _result(fed, info, (t0.address,) * 33))
    before = {t.address: t.stake_of() for t in fed.trainers}
    result = _result(fed, info, (t0.address, t1.address, t0.address))  # a repeat is slashed once
    agg.submit_result(fed.task_id, info.round_id, result)
    assert fed.ledger.round(fed.task_id, info.round_id).faulty == result.faulty
    assert fed.ledger.events("ResultSubmitted", task_id=fed.task_id)[-1].args["faulty"] == list(result.faulty)
    assert t0.stake_of() == before[t0.address]  # nothing happens before finalization
    fed.vote_all(info)
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is RoundStatus.FINALIZED
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED
    assert fed.ledger.finalize_outcome(fed.task_id, info.round_id) is None  # settled
    slashes = fed.ledger.slashes(fed.task_id)
    assert [(s.member, s.reason, s.evidence) for s in slashes] == [
        (t0.address, SlashReason.FAULTY_UPDATE, result.evidence_root),
        (t1.address, SlashReason.FAULTY_UPDATE, result.evidence_root),
    ]
    for t in fed.trainers:
        cut = _cut(before[t.address]) if t in (t0, t1) else 0
        assert t.stake_of() == before[t.address] - cut
        assert fed.ledger.is_punished(fed.task_id, info.round_id, t.address) == (cut > 0)
    # slashed below the trainers' minimum stake: out of the cohort pool until they top up
    assert fed.ledger.member(t0.address).weight == 0


def test_faulty_trainers_of_a_rejected_result_are_not_slashed(fed: Fed) -> None:
    info = fed.open()
    t0 = fed.trainers[0]
    bonded = t0.stake_of()
    fed.at(info.aggregator).submit_result(fed.task_id, info.round_id, _result(fed, info, (t0.address,)))
    fed.vote_all(info, accept=False)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert t0.stake_of() == bonded
    assert [s.reason for s in fed.ledger.slashes(fed.task_id)] == [SlashReason.REJECTED_RESULT]
    # the redo's result (without the list) finalizes without touching the trainer
    again = fed.owner.reopen(fed.task_id, info.round_id)
    fed.submit(again)
    fed.vote_all(again)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED
    assert t0.stake_of() == bonded and fed.ledger.round(fed.task_id, info.round_id).faulty == ()


# ---------------------------------------------------------------- validators that do not vote


def test_a_vote_timeout_slashes_the_silent_members_not_the_aggregator(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    weights = _weights(fed, info)
    voter, *silent = sorted(info.committee, key=weights.__getitem__)
    fed.at(voter).vote(fed.task_id, info.round_id, True)
    with pytest.raises(DeadlineError, match="voting deadline not passed"):
        fed.owner.reopen(fed.task_id, info.round_id)
    bonded = {a: fed.ledger.stake_of(a) for a in [*info.committee, info.aggregator]}
    vote_deadline = fed.ledger.round(fed.task_id, info.round_id).vote_deadline
    fed.ledger.advance_time(TASK.vote_window + 1)
    with pytest.raises(QuorumNotReached):
        fed.owner.finalize(fed.task_id, info.round_id)
    with pytest.raises(NotAuthorized, match="before the grace period"):
        fed.trainers[2].reopen(fed.task_id, info.round_id)
    fed.ledger.advance_time(TASK.vote_window)
    again = fed.trainers[2].reopen(fed.task_id, info.round_id)  # anyone, one window after the deadline
    slashes = fed.ledger.slashes(fed.task_id)
    assert sorted(s.member for s in slashes) == sorted(silent)
    for s in slashes:
        evidence = keccak(
            encode(
                ["uint256", "uint256", "uint256", "address", "uint256"],
                [fed.task_id, info.round_id, 0, s.member, vote_deadline],
            )
        )
        assert (s.reason, s.evidence, s.attempt) == (SlashReason.MISSED_VOTE, evidence, 0)
        assert s.amount == _cut(bonded[s.member])
        assert fed.ledger.stake_of(s.member) == bonded[s.member] - s.amount
    assert fed.ledger.stake_of(voter) == bonded[voter]
    assert fed.ledger.stake_of(info.aggregator) == bonded[info.aggregator]
    assert again.attempt == 1 and again.seed != info.seed
    ev = fed.ledger.events("RoundReopened", task_id=fed.task_id)[-1].args
    assert (ev["reason"], ev["excluded"], ev["slashed_amount"]) == (2, ZERO, sum(s.amount for s in slashes))
    fed.ledger.verify_selection(fed.task_id, info.round_id)


def test_a_decided_round_cannot_be_timed_out(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    fed.vote_all(info, accept=False)
    fed.ledger.advance_time(TASK.vote_window + 1)
    with pytest.raises(WrongState, match="round can be finalized"):  # a quorum rejected: finalize slashes
        fed.owner.reopen(fed.task_id, info.round_id)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    assert [s.reason for s in fed.ledger.slashes(fed.task_id)] == [SlashReason.REJECTED_RESULT]


def test_silent_and_dissenting_members_get_no_validator_reward(fed: Fed) -> None:
    info = fed.open()
    fed.submit(info)
    weights = _weights(fed, info)
    light, *heavy = sorted(info.committee, key=weights.__getitem__)
    for v in heavy:  # the two heaviest of three reach 2/3 and the task's quorum
        fed.at(v).vote(fed.task_id, info.round_id, True)
    snap = fed.ledger.snapshot()
    for dissent in (None, False):
        if dissent is not None:
            fed.at(light).vote(fed.task_id, info.round_id, dissent)
        assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.FINALIZED
        share = TASK.reward_per_round * TEST_PARAMS.validator_share_bps // BPS // len(heavy)
        assert [fed.ledger.reward_balance(v) for v in heavy] == [share] * len(heavy)
        assert fed.ledger.reward_balance(light) == 0
        assert fed.ledger.slashes(fed.task_id) == []  # quorum reached: nobody is slashed
        fed.ledger.revert(snap)
        snap = fed.ledger.snapshot()


# ---------------------------------------------------------------- bad proofs (dispute contract)

CHUNK = 16
R = 987654321
BOUND2X, BOUND2E = 10_000_000, 1_000_000
# a stand-in Groth16 verifier that accepts every proof: what is tested here is the statement
# check, the signature, inclusion and the slashing path (tests/zk/test_zk_dispute.py uses real proofs)
ACCEPT_ALL = """# pragma version ~=0.4.3
@external
@view
def verifyProof(a: uint256[2], b: uint256[2][2], c: uint256[2], input: uint256[12]) -> bool:
    return True
"""


def _public(*, challenge: int = R) -> list[int]:
    public = [0] * 12
    public[1], public[2], public[3] = 0, 1, 1  # chunk 0 of 1: first and last
    public[7], public[8], public[9], public[10], public[11] = challenge, 1, 5, BOUND2X, BOUND2E
    return public


def _dispute_setup(fed: Fed, *, register: bool = True):
    verifier = fed.owner.deploy_verifier(ACCEPT_ALL)
    dispute = fed.owner.deploy_dispute(verifier, chunk_size=CHUNK, chunks=1, bound2x=BOUND2X, bound2e=BOUND2E)
    if register:
        pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, dispute))
        assert fed.ledger.task_dispute(fed.task_id) == dispute
    return dispute


def _sign(member, round_id: int, public: list[int], tag: int = 0):
    return sign_submission(bytes(member.account.key), round_id, bytes([tag]) * 256, public)


def test_a_disputed_bad_proof_slashes_its_trainer_once(fed: Fed) -> None:
    dispute = _dispute_setup(fed)
    info = fed.open()
    t0, t1, t2 = fed.trainers[:3]
    subs = [
        _sign(t0, info.round_id, _public()),  # proves the round's statement
        _sign(t1, info.round_id, _public(challenge=R + 1)),  # claims another challenge: an offence
        _sign(t1, info.round_id, _public(challenge=R + 2), tag=1),  # a second bad chunk, same round
        _sign(fed.validators[0], info.round_id, _public(challenge=R + 1)),  # not a trainer
        _sign(t2, info.round_id, _public(challenge=R + 1)),
    ]
    root, paths = evidence_tree([s.leaf() for s in subs])
    with pytest.raises(NotAuthorized, match="not the poster"):
        t0.post_dispute_evidence(dispute, info.round_id, root, R)
    fed.owner.post_dispute_evidence(dispute, info.round_id, root, R)

    with pytest.raises(NotAnOffence, match="proof verifies"):
        fed.trainers[3].dispute_proof(dispute, subs[0], paths[0])
    bonded = t1.stake_of()
    slash = fed.trainers[3].dispute_proof(dispute, subs[1], paths[1])  # anyone disputes
    assert (slash.member, slash.reason, slash.evidence) == (t1.address, SlashReason.BAD_PROOF, subs[1].leaf())
    assert (slash.task_id, slash.round_id, slash.amount) == (fed.task_id, info.round_id, _cut(bonded))
    assert t1.stake_of() == bonded - _cut(bonded)
    with pytest.raises(AlreadySlashed, match="already disputed"):
        fed.trainers[3].dispute_proof(dispute, subs[1], paths[1])
    with pytest.raises(AlreadySlashed, match="update already slashed this round"):
        fed.trainers[3].dispute_proof(dispute, subs[2], paths[2])
    with pytest.raises(InvalidArgument, match="offender is not a trainer"):
        fed.trainers[3].dispute_proof(dispute, subs[3], paths[3])
    assert t1.stake_of() == bonded - _cut(bonded)
    assert fed.ledger.slashes(fed.task_id) == [slash]

    # the accepted result names t1 (already slashed for this update) and t2: t2 alone pays more
    before2 = t2.stake_of()
    fed.at(info.aggregator).submit_result(fed.task_id, info.round_id, _result(fed, info, (t1.address, t2.address)))
    fed.vote_all(info)
    fed.owner.finalize(fed.task_id, info.round_id)
    assert t1.stake_of() == bonded - _cut(bonded)
    assert t2.stake_of() == before2 - _cut(before2)
    with pytest.raises(AlreadySlashed):  # and after that, t2's own bad proof is the same offence
        fed.trainers[3].dispute_proof(dispute, subs[4], paths[4])
    assert [s.reason for s in fed.ledger.slashes(fed.task_id)] == [SlashReason.BAD_PROOF, SlashReason.FAULTY_UPDATE]


def test_only_the_registered_dispute_contract_slashes(fed: Fed) -> None:
    dispute = _dispute_setup(fed, register=False)
    info = fed.open()
    sub = _sign(fed.trainers[1], info.round_id, _public(challenge=R + 1))
    root, paths = evidence_tree([sub.leaf()])
    fed.owner.post_dispute_evidence(dispute, info.round_id, root, R)
    bonded = fed.trainers[1].stake_of()
    with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
        fed.trainers[3].dispute_proof(dispute, sub, paths[0])
    # nor can anyone call the task manager's entry point directly
    direct = fed.ledger.contracts["task_manager"].functions.slash_for_proof(fed.trainers[1].address, 1, h("x"))
    for who in (fed.owner, fed.trainers[3], fed.aggregators[0]):
        with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
            who._tx("slash_for_proof", direct)
    # a registered contract may not slash for a round its task has not opened
    pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, dispute))
    later = _sign(fed.trainers[1], info.round_id + 1, _public(challenge=R + 1))
    later_root, later_paths = evidence_tree([later.leaf()])
    fed.owner.post_dispute_evidence(dispute, info.round_id + 1, later_root, R)
    with pytest.raises(InvalidArgument, match="unknown round"):
        fed.trainers[3].dispute_proof(dispute, later, later_paths[0])
    # once governance removes it, it cannot slash any more
    pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, None))
    assert fed.ledger.task_dispute(fed.task_id) is None
    with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
        fed.trainers[3].dispute_proof(dispute, sub, paths[0])
    assert fed.trainers[1].stake_of() == bonded and fed.ledger.slashes() == []


def test_stake_checkpoints_follow_slashes_for_governance_snapshots(fed: Fed) -> None:
    """Governance reads voting power at past blocks from packed stake checkpoints; a slash is one."""
    st = fed.ledger.contracts["staking"].functions
    agg = fed.aggregators[0]
    history: list[tuple[int, int, int]] = []  # (block, agg's stake, total) at the end of the block

    def mark() -> None:
        history.append((fed.ledger.block_number, agg.stake_of(), int(st.total_staked().call())))

    mark()
    agg.stake(50 * E)
    mark()
    fed.ledger.advance_time(1)  # a few blocks without a change in between
    fed.ledger.advance_time(1)
    info = fed.open()
    while info.aggregator != agg.address:  # the other aggregator misses deadlines until agg is drawn
        fed.ledger.advance_time(TASK.submit_window + 1)
        fed.owner.recommit(fed.task_id, info.round_id)
        mark()
        info = fed.owner.seal_round(fed.task_id, info.round_id)
    fed.ledger.advance_time(TASK.submit_window + 1)
    fed.owner.recommit(fed.task_id, info.round_id)  # slashes agg (in this block; the seal comes later)
    mark()
    agg.unbond(agg.stake_of() - 100 * E)
    mark()
    fed.ledger.advance_time(1)
    assert len({s for _, s, _ in history}) == 4
    for (block, stake, total), nxt in zip(history, [*history[1:], (fed.ledger.block_number, 0, 0)], strict=True):
        for b in range(block, nxt[0]):  # every block until the next change reads this value
            assert int(st.stake_at(agg.address, b).call()) == stake
            assert int(st.total_stake_at(b).call()) == total


def test_a_dispute_contract_of_another_slasher_is_refused_before_sending(fed: Fed) -> None:
    """A dispute contract without the task manager as its slasher would record an offence and
    slash nothing: the client refuses it before sending anything."""
    from fedledger.ledger.compiler import compile_source
    from fedledger.zk.onchain import DISPUTE_CONTRACT

    verifier = fed.owner.deploy_verifier(ACCEPT_ALL)
    art = compile_source(DISPUTE_CONTRACT.read_text(), "update_dispute")
    factory = fed.ledger.backend.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = fed.owner._tx(
        "deploy:update_dispute", factory.constructor(verifier, ZERO, fed.owner.address, CHUNK, 1, BOUND2X, BOUND2E)
    )
    sub = _sign(fed.trainers[1], 1, _public(challenge=R + 1))
    sent = len(fed.ledger.gas_log.get("dispute_proof", []))
    with pytest.raises(InvalidArgument, match="does not slash through this deployment"):
        fed.trainers[3].dispute_proof(receipt["contractAddress"], sub, [])
    assert len(fed.ledger.gas_log.get("dispute_proof", [])) == sent
