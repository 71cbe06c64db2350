"""Slashing of proven faults on a real anvil: a rejected result, faulty trainers named by an
accepted result, committee members that did not vote, and bad update proofs disputed through the
dispute contract governance registered for the task."""

from __future__ import annotations

import dataclasses

import pytest
from eth_abi import encode
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fed import TASK, TEST_PARAMS, E, Fed, h, pass_proposal
from web3.exceptions import ContractLogicError

from fedledger.ledger import ProofBinding, RoundResult, RoundStatus, SlashReason, to_fixed
from fedledger.ledger.errors import (
    AlreadySlashed,
    DeadlineError,
    InvalidArgument,
    InvalidProof,
    NotAnOffence,
    NotAuthorized,
    QuorumNotReached,
    WrongState,
)
from fedledger.zk.backend import proof_words
from fedledger.zk.onchain import HALF_N, DisputeDomain, Submission, evidence_tree, sign_submission, submission_digest

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


def _public(*, challenge: int = R, bound2x: int = BOUND2X) -> list[int]:
    public = [0] * 12
    public[1], public[2], public[3] = 0, 1, 1  # chunk 0 of 1: first and last
    public[7], public[8], public[9], public[10], public[11] = challenge, 1, 5, bound2x, BOUND2E
    return public


BAD = _public(bound2x=BOUND2X * 100)  # claims a looser norm bound than the task's: an offence


def _deploy_dispute(fed: Fed, task_id: int | None = None) -> str:
    verifier = fed.owner.deploy_verifier(ACCEPT_ALL)
    return fed.owner.deploy_dispute(
        verifier, task_id or fed.task_id, chunk_size=CHUNK, chunks=1, bound2x=BOUND2X, bound2e=BOUND2E
    )


def _dispute_setup(fed: Fed, *, register: bool = True, task_id: int | None = None) -> DisputeDomain:
    task_id = task_id or fed.task_id
    dispute = _deploy_dispute(fed, task_id)
    if register:
        pass_proposal(fed, fed.validators[4].propose_task_dispute(task_id, dispute))
        assert fed.ledger.task_dispute(task_id) == dispute
    return fed.ledger.dispute_domain(task_id, dispute)


def _sign(member, domain: DisputeDomain, info, public: list[int], tag: int = 0) -> Submission:
    return sign_submission(bytes(member.account.key), domain, info.round_id, info.attempt, bytes([tag]) * 256, public)


def _post(fed: Fed, info, subs, *, challenge: int = R, faulty: tuple[str, ...] = (), task_id: int | None = None):
    """The round's aggregator posts a result with the proofs root over `subs` and `challenge`."""
    root, paths = evidence_tree([s.leaf() for s in subs])
    fed.at(info.aggregator).submit_result(
        task_id or fed.task_id, info.round_id, _result(fed, info, faulty), proofs_root=root, challenge=challenge
    )
    return root, paths


def _finalize(fed: Fed, info, task_id: int | None = None) -> None:
    for v in info.committee:
        fed.at(v).vote(task_id or fed.task_id, info.round_id, True)
    assert fed.owner.finalize(task_id or fed.task_id, info.round_id) is RoundStatus.FINALIZED


def _raw_dispute(fed: Fed, domain: DisputeDomain, sub: Submission, path: list[bytes], sender: str) -> None:
    """Call the dispute contract directly (no client-side checks): raises the contract's revert."""
    contract = fed.ledger.dispute_contract(domain.dispute)
    contract.functions.dispute(*sub.args(), path).call({"from": sender})


def test_a_disputed_bad_proof_slashes_its_trainer_once(fed: Fed) -> None:
    domain = _dispute_setup(fed)
    info = fed.open()
    t0, t1, t2 = fed.trainers[:3]
    subs = [
        _sign(t0, domain, info, _public()),  # proves the round's statement
        _sign(t1, domain, info, BAD),
        _sign(t1, domain, info, BAD, tag=1),  # a second bad chunk, same round
        _sign(fed.validators[0], domain, info, BAD),  # not a trainer
        _sign(t2, domain, info, BAD),
    ]
    root, paths = _post(fed, info, subs, faulty=(t2.address,))
    assert fed.ledger.round_binding(fed.task_id, info.round_id) == ProofBinding(root, R, info.attempt)
    posted = fed.ledger.events("ResultSubmitted", task_id=fed.task_id)[-1].args
    assert (posted["proofs_root"], posted["challenge"]) == ("0x" + root.hex(), R)
    # the committee has not accepted the root yet: nothing can be disputed against it
    with pytest.raises(WrongState, match="round not finalized"):
        fed.trainers[3].dispute_proof(subs[1], paths[1])
    _finalize(fed, info)  # slashes t2, named faulty (FAULTY_UPDATE)

    with pytest.raises(NotAnOffence, match="proof verifies"):
        fed.trainers[3].dispute_proof(subs[0], paths[0])
    bonded = t1.stake_of()
    slash = fed.trainers[3].dispute_proof(subs[1], paths[1])  # anyone disputes
    assert (slash.member, slash.reason, slash.evidence) == (t1.address, SlashReason.BAD_PROOF, subs[1].leaf())
    assert (slash.task_id, slash.round_id, slash.attempt, slash.amount) == (
        fed.task_id,
        info.round_id,
        info.attempt,
        _cut(bonded),
    )
    assert t1.stake_of() == bonded - _cut(bonded)
    with pytest.raises(AlreadySlashed, match="already disputed"):
        fed.trainers[3].dispute_proof(subs[1], paths[1])
    with pytest.raises(AlreadySlashed, match="update already slashed this round"):
        fed.trainers[3].dispute_proof(subs[2], paths[2])
    with pytest.raises(InvalidArgument, match="offender is not a trainer"):
        fed.trainers[3].dispute_proof(subs[3], paths[3])
    with pytest.raises(AlreadySlashed, match="update already slashed this round"):  # t2 paid at finalize
        fed.trainers[3].dispute_proof(subs[4], paths[4])
    assert t1.stake_of() == bonded - _cut(bonded)
    assert [s.reason for s in fed.ledger.slashes(fed.task_id)] == [SlashReason.FAULTY_UPDATE, SlashReason.BAD_PROOF]


def test_an_aggregator_posting_another_challenge_cannot_frame_an_honest_proof(fed: Fed) -> None:
    """The attack of a poster choosing the challenge: the root holds an honest proof of challenge R
    and the aggregator posts R + 1. Nobody can dispute before the committee accepts; a committee
    rejecting it leaves the attempt undisputable; even a committee that accepted it could not make
    the honest proof an offence, nor could a caller pass another challenge in calldata."""
    domain = _dispute_setup(fed)
    info = fed.open()
    honest = fed.trainers[0]
    sub = _sign(honest, domain, info, _public())
    bonded = honest.stake_of()
    _, paths = _post(fed, info, [sub], challenge=R + 1)
    with pytest.raises(NotAnOffence, match="proof answers another challenge"):
        fed.at(info.aggregator).dispute_proof(sub, paths[0])
    # the caller supplies the challenge it likes: the signed statement no longer matches
    for forged in (_public(challenge=R + 1), _public(challenge=0), _public(challenge=2**256 - 1)):
        tampered = dataclasses.replace(sub, public=tuple(forged))
        with pytest.raises(ContractLogicError, match="dispute: not in the proofs root"):
            _raw_dispute(fed, domain, tampered, paths[0], info.aggregator)
    # an extra word appended to the calldata is ignored by the ABI decoder: still the posted challenge
    contract = fed.ledger.dispute_contract(domain.dispute)
    data = contract.functions.dispute(*sub.args(), paths[0])._encode_transaction_data()
    with pytest.raises(ContractLogicError, match="dispute: proof answers another challenge"):
        fed.ledger.backend.w3.eth.call(
            {"to": domain.dispute, "from": info.aggregator, "data": data + (R + 1).to_bytes(32, "big").hex()}
        )
    snap = fed.ledger.snapshot()
    # (a) the committee rejects the result: the attempt's root and challenge never become disputable
    fed.vote_all(info, accept=False)
    assert fed.owner.finalize(fed.task_id, info.round_id) is RoundStatus.REJECTED
    again = fed.owner.reopen(fed.task_id, info.round_id)
    with pytest.raises(WrongState, match="not the round's current attempt"):
        fed.trainers[3].dispute_proof(sub, paths[0])
    honest_again = _sign(honest, domain, again, _public())
    _, paths_again = _post(fed, again, [honest_again])
    _finalize(fed, again)
    with pytest.raises(NotAnOffence, match="proof verifies"):
        fed.trainers[3].dispute_proof(honest_again, paths_again[0])
    with pytest.raises(WrongState, match="not the round's current attempt"):  # nor the old attempt's
        fed.trainers[3].dispute_proof(sub, paths[0])
    assert honest.stake_of() == bonded
    fed.ledger.revert(snap)
    # (b) a committee that accepts the wrong challenge still cannot make the honest proof an offence
    _finalize(fed, info)
    assert fed.ledger.round_binding(fed.task_id, info.round_id).challenge == R + 1
    with pytest.raises(NotAnOffence, match="proof answers another challenge"):
        fed.at(info.aggregator).dispute_proof(sub, paths[0])
    assert honest.stake_of() == bonded
    assert fed.ledger.slashes(fed.task_id) == []


def test_a_first_task_submission_replayed_against_a_second_task_reverts(fed: Fed) -> None:
    """Task 2's owner and aggregator put a task-1 submission (a really bad one, slashable in task 1)
    into task 2's proofs root and dispute it there: the trainer never signed anything for task 2."""
    domain1 = _dispute_setup(fed)
    task2 = fed.owner.create_task(TASK)
    for m in [*fed.aggregators, *fed.validators]:  # task 2's roles; the victim never joins task 2
        m.join_task(task2)
    domain2 = _dispute_setup(fed, task_id=task2)
    victim = fed.trainers[1]
    bonded = victim.stake_of()

    info1 = fed.open()
    original = _sign(victim, domain1, info1, BAD)
    _, paths1 = _post(fed, info1, [original])
    _finalize(fed, info1)

    info2 = fed.owner.open_round(task2)
    assert (info2.round_id, info2.attempt) == (info1.round_id, info1.attempt)  # same round and attempt numbers
    as_is = dataclasses.replace(original, domain=domain2)  # the leaf as task 2's contract computes it
    _, paths2 = _post(fed, info2, [as_is, original], task_id=task2)
    _finalize(fed, info2, task_id=task2)
    with pytest.raises(NotAnOffence, match="not signed by the offender"):
        fed.trainers[3].dispute_proof(as_is, paths2[0])
    with pytest.raises(ContractLogicError, match="dispute: not in the proofs root"):  # task 1's leaf
        _raw_dispute(fed, domain2, original, paths2[1], fed.trainers[3].address)
    assert victim.stake_of() == bonded and fed.ledger.slashes(task2) == []
    # where it was signed, the bad proof is slashable (once)
    slash = fed.trainers[3].dispute_proof(original, paths1[0])
    assert (slash.member, slash.task_id, slash.reason) == (victim.address, fed.task_id, SlashReason.BAD_PROOF)


def test_a_submission_signed_for_another_chain_or_contract_reverts(fed: Fed) -> None:
    domain = _dispute_setup(fed)
    other_contract = fed.ledger.dispute_domain(fed.task_id, _deploy_dispute(fed))  # same task, not registered
    other_chain = dataclasses.replace(domain, chain_id=domain.chain_id + 1)
    info = fed.open()
    victim = fed.trainers[1]
    foreign = [_sign(victim, d, info, BAD) for d in (other_chain, other_contract)]
    # the aggregator lists them as the registered contract computes their leaves, with the foreign signatures
    replayed = [dataclasses.replace(s, domain=domain) for s in foreign]
    _, paths = _post(fed, info, replayed)
    _finalize(fed, info)
    bonded = victim.stake_of()
    for sub, path in zip(replayed, paths, strict=True):
        with pytest.raises(NotAnOffence, match="not signed by the offender"):
            fed.trainers[3].dispute_proof(sub, path)
    # the client refuses a submission signed for another chain before sending anything
    with pytest.raises(InvalidArgument, match="signed for chain"):
        fed.trainers[3].dispute_proof(foreign[0], paths[0])
    # signed for the unregistered contract: that contract may not slash
    root, other_paths = evidence_tree([foreign[1].leaf()])
    assert root != fed.ledger.round_binding(fed.task_id, info.round_id).proofs_root
    with pytest.raises(InvalidProof, match="not in the proofs root"):
        fed.trainers[3].dispute_proof(foreign[1], other_paths[0])
    assert victim.stake_of() == bonded and fed.ledger.slashes() == []


def test_a_proof_of_a_member_not_in_the_round_reverts(fed: Fed) -> None:
    """Only a leaf in the posted root counts, and only under its own signer's name."""
    domain = _dispute_setup(fed)
    info = fed.open()
    inside, outside = fed.trainers[0], fed.trainers[2]
    sub = _sign(inside, domain, info, BAD)
    out = _sign(outside, domain, info, BAD)  # signed, but never in the round's root
    framed = dataclasses.replace(sub, trainer=outside.address)  # inside's signature under outside's name
    n = 2 * HALF_N + 1  # secp256k1 group order
    malleated = dataclasses.replace(sub, v=55 - sub.v, s=n - sub.s)  # same signer, another leaf (EIP-2)
    _, paths = _post(fed, info, [sub, framed, malleated])
    _finalize(fed, info)
    before = outside.stake_of()
    with pytest.raises(NotAnOffence, match="malformed signature"):
        fed.trainers[3].dispute_proof(malleated, paths[2])
    with pytest.raises(InvalidProof, match="not in the proofs root"):
        fed.trainers[3].dispute_proof(out, paths[0])
    with pytest.raises(NotAnOffence, match="not signed by the offender"):
        fed.trainers[3].dispute_proof(framed, paths[1])
    # and a proof of another round (the next one, whose root does not hold it) is refused too
    later = dataclasses.replace(sub, round_id=info.round_id + 1)
    with pytest.raises(WrongState):
        fed.trainers[3].dispute_proof(later, paths[0])
    assert outside.stake_of() == before and fed.ledger.slashes() == []


def test_only_the_registered_dispute_contract_slashes(fed: Fed) -> None:
    domain = _dispute_setup(fed, register=False)
    info = fed.open()
    sub = _sign(fed.trainers[1], domain, info, BAD)
    _, paths = _post(fed, info, [sub])
    _finalize(fed, info)
    bonded = fed.trainers[1].stake_of()
    with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
        fed.trainers[3].dispute_proof(sub, paths[0])
    # nor can anyone call the task manager's entry point directly
    direct = fed.ledger.contracts["task_manager"].functions.slash_for_proof(
        fed.task_id, info.round_id, info.attempt, fed.trainers[1].address, h("x")
    )
    for who in (fed.owner, fed.trainers[3], fed.aggregators[0]):
        with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
            who._tx("slash_for_proof", direct)
    # a registered contract may not slash for a round whose result is not finalized
    pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, domain.dispute))
    nxt = fed.open()
    later = _sign(fed.trainers[1], domain, nxt, BAD)
    _, later_paths = _post(fed, nxt, [later])
    with pytest.raises(WrongState, match="round not finalized"):
        fed.trainers[3].dispute_proof(later, later_paths[0])
    # once governance removes it, it cannot slash any more
    pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, None))
    assert fed.ledger.task_dispute(fed.task_id) is None
    with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
        fed.trainers[3].dispute_proof(sub, paths[0])
    assert fed.trainers[1].stake_of() == bonded and fed.ledger.slashes() == []


def _shifted(address: str, delta: int) -> str:
    """Another address: `address` + delta mod 2^160, as 20 bytes (leading zeros kept)."""
    return to_checksum_address(((int(address, 16) + delta) % 2**160).to_bytes(20, "big"))


_FIELDS = ("task", "round", "attempt", "member", "a", "b", "c", "input", "chain", "contract")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), index=st.integers(0, 11), delta=st.integers(1, 2**64))
def test_any_tampering_of_the_signed_struct_changes_the_digest_the_contract_checks(
    fed: Fed, field: str, index: int, delta: int
) -> None:
    """Whatever one field of the signed struct an attacker changes, the digest the dispute contract
    recovers the signer from is another one: the trainer's signature names someone else."""
    dispute = fed.owner.deploy_dispute(ZERO, fed.task_id, chunk_size=CHUNK, chunks=1, bound2x=BOUND2X, bound2e=BOUND2E)
    domain = fed.ledger.dispute_domain(fed.task_id, dispute)
    signer = fed.trainers[1]
    proof = bytes(range(256))
    public = _public()
    round_id, attempt, member = 1, 0, signer.address
    sig_domain = domain
    if field == "task":
        sig_domain = dataclasses.replace(domain, task_id=domain.task_id + delta)
    elif field == "chain":
        sig_domain = dataclasses.replace(domain, chain_id=domain.chain_id + delta)
    elif field == "contract":
        sig_domain = dataclasses.replace(
            domain, dispute=_shifted(domain.dispute, delta)
        )
    sub = sign_submission(bytes(signer.account.key), sig_domain, round_id, attempt, proof, public)
    if field == "round":
        round_id += delta
    elif field == "attempt":
        attempt += delta
    elif field == "member":
        member = _shifted(member, delta)
    elif field in ("a", "b", "c"):
        offset = {"a": 0, "b": 64, "c": 192}[field] + 32 * (index % {"a": 2, "b": 4, "c": 2}[field])
        word = (int.from_bytes(proof[offset : offset + 32], "big") + delta) % 2**256
        proof = proof[:offset] + word.to_bytes(32, "big") + proof[offset + 32 :]
    elif field == "input":
        public[index] = (public[index] + delta) % 2**256
    a, b, c = proof_words(proof)
    contract = fed.ledger.dispute_contract(domain.dispute)
    onchain = bytes(contract.functions.submission_digest(round_id, attempt, member, a, b, c, public).call())
    assert onchain == submission_digest(domain, round_id, attempt, member, proof, public)  # two encoders agree
    assert onchain != sub.digest()
    recovered = keys.Signature(vrs=(sub.v - 27, sub.r, sub.s)).recover_public_key_from_msg_hash(onchain)
    assert recovered.to_checksum_address() != signer.address


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


def test_a_dispute_contract_of_another_task_manager_is_refused_before_sending(fed: Fed) -> None:
    """A dispute contract reading another task manager would slash nothing here: the client refuses
    it before sending anything."""
    from fedledger.ledger.compiler import compile_source
    from fedledger.zk.onchain import DISPUTE_CONTRACT

    verifier = fed.owner.deploy_verifier(ACCEPT_ALL)
    art = compile_source(DISPUTE_CONTRACT.read_text(), "update_dispute")
    factory = fed.ledger.backend.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = fed.owner._tx(
        "deploy:update_dispute",
        factory.constructor(verifier, fed.owner.address, fed.task_id, CHUNK, 1, BOUND2X, BOUND2E),
    )
    address = receipt["contractAddress"]
    with pytest.raises(InvalidArgument, match="does not slash through this deployment"):
        fed.ledger.dispute_domain(fed.task_id, address)
    domain = DisputeDomain(fed.ledger.backend.chain_id, address, fed.task_id)
    sub = sign_submission(bytes(fed.trainers[1].account.key), domain, 1, 0, bytes(256), BAD)
    sent = len(fed.ledger.gas_log.get("dispute_proof", []))
    with pytest.raises(InvalidArgument, match="does not slash through this deployment"):
        fed.trainers[3].dispute_proof(sub, [])
    assert len(fed.ledger.gas_log.get("dispute_proof", [])) == sent
    with pytest.raises(InvalidArgument, match="does not serve task"):
        fed.ledger.dispute_domain(fed.task_id + 1, _deploy_dispute(fed))
