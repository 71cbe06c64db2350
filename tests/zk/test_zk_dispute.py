"""Dispute path on anvil: a signed proof in the evidence that does not verify is recorded once, and,
through the ledger, slashes its trainer's stake."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from web3.exceptions import ContractLogicError
from zk_anvil import ANVIL, anvil_node, deploy
from zk_support import SMALL

from fedledger.zk.backend import Groth16Backend
from fedledger.zk.onchain import DISPUTE_CONTRACT, evidence_tree, sign_submission, submission_digest
from fedledger.zk.update import ProofContext, UpdateProver, chunk_public_inputs, commit_update

pytestmark = [
    pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning"),
    pytest.mark.anvil,
    pytest.mark.slow,
    pytest.mark.skipif(not ANVIL.exists(), reason="anvil not installed (make node)"),
]
ROUND = 3
R = 55555


def _chunk_submissions(prover, key: bytes, member: str, *, corrupt: bool, round_id: int = ROUND):
    rng = np.random.default_rng(len(member))
    x, e = rng.integers(-100, 100, 16), rng.integers(-10, 10, 16)
    secret, posted = commit_update(prover.spec, ProofContext("task", round_id, member), x, e, rng, check=False)
    proof = prover.prove_update(secret, posted, R)
    public = chunk_public_inputs(prover.spec, posted, 0, posted.state0, proof.chunks[0].state_out, R, proof.s)
    if corrupt:  # the trainer claims another linear-check value than the one it proved
        public[9] = (public[9] + 1) % 2**64
    return sign_submission(key, round_id, proof.chunks[0].proof, public)


def test_dispute_records_a_bad_proof_and_rejects_the_rest(small_prover) -> None:
    keys = [bytes([i + 1]) * 32 for i in range(4)]
    # dave proves a valid statement, but under a looser norm bound than the task's
    loose = UpdateProver(dataclasses.replace(SMALL, bound2x=SMALL.bound2x * 100), small_prover.backend)
    subs = [
        _chunk_submissions(small_prover, keys[0], "alice", corrupt=False),
        _chunk_submissions(small_prover, keys[1], "bob", corrupt=True),
        _chunk_submissions(small_prover, keys[2], "carol", corrupt=False),
        _chunk_submissions(loose, keys[3], "dave", corrupt=False),
    ]
    # an aggregator that lists bob's bad proof under alice's name, to get alice slashed
    subs.append(dataclasses.replace(subs[1], trainer=subs[0].trainer))
    root, paths = evidence_tree([s.leaf() for s in subs])
    with anvil_node() as w3:
        verifier = deploy(w3, Groth16Backend.export_vyper(small_prover.keys))
        zero = "0x" + "00" * 20
        dispute = deploy(
            w3,
            DISPUTE_CONTRACT.read_text(),
            verifier.address,
            zero,
            w3.eth.accounts[0],
            SMALL.chunk_size,
            1,
            SMALL.bound2x,
            SMALL.bound2e,
        )
        a, b, c = subs[0].args()[2:5]
        assert dispute.functions.submission_digest(ROUND, a, b, c, list(subs[0].public)).call() == (
            submission_digest(ROUND, subs[0].proof, subs[0].public)
        )
        with pytest.raises(ContractLogicError, match="dispute: no evidence for round"):
            dispute.functions.dispute(*subs[1].args(), paths[1]).call()
        with pytest.raises(ContractLogicError, match="dispute: not the poster"):
            dispute.functions.post_evidence_root(ROUND, root, R).call({"from": w3.eth.accounts[1]})
        w3.eth.wait_for_transaction_receipt(dispute.functions.post_evidence_root(ROUND, root, R).transact())

        # honest entries cannot be disputed
        for i in (0, 2):
            with pytest.raises(ContractLogicError, match="dispute: proof verifies"):
                dispute.functions.dispute(*subs[i].args(), paths[i]).call()
        # an entry that is not in the evidence, or attributed to someone who did not sign it
        with pytest.raises(ContractLogicError, match="dispute: not in the evidence"):
            dispute.functions.dispute(*subs[1].args(), paths[0]).call()
        framed = list(subs[1].args())
        framed[1] = subs[0].trainer
        with pytest.raises(ContractLogicError, match="dispute: not in the evidence"):
            dispute.functions.dispute(*framed, paths[1]).call()
        with pytest.raises(ContractLogicError, match="dispute: not signed by the offender"):
            dispute.functions.dispute(*subs[4].args(), paths[4]).call()
        # a proof that verifies, but of another statement than the round's, is an offence too
        assert dispute.functions.dispute(*subs[3].args(), paths[3]).call() == subs[3].leaf()

        # the bad one is recorded, once
        tx = dispute.functions.dispute(*subs[1].args(), paths[1]).transact({"from": w3.eth.accounts[2]})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        assert dispute.functions.offence(subs[1].leaf()).call() == subs[1].trainer
        events = dispute.events.ProofDisputed().process_receipt(receipt)
        assert events[0]["args"]["offender"] == subs[1].trainer
        with pytest.raises(ContractLogicError, match="dispute: already disputed"):
            dispute.functions.dispute(*subs[1].args(), paths[1]).call()
        assert 200_000 < receipt["gasUsed"] < 700_000


def test_dispute_recomputes_the_challenge_power_of_later_chunks(small_prover) -> None:
    rng = np.random.default_rng(5)
    x, e = rng.integers(-100, 100, 40), rng.integers(-10, 10, 40)
    secret, posted = commit_update(SMALL, ProofContext("task", ROUND, "erin"), x, e, rng)
    proof = small_prover.prove_update(secret, posted, R)
    key = b"\x09" * 32
    subs, state_in = [], posted.state0
    for k, ch in enumerate(proof.chunks):
        public = chunk_public_inputs(SMALL, posted, k, state_in, ch.state_out, R, proof.s)
        subs.append(sign_submission(key, ROUND, ch.proof, public))
        state_in = ch.state_out
    wrong = list(subs[1].public)
    wrong[8] = R  # r^1 instead of r^16 for chunk 1 (the circuit would accept a proof made so)
    subs.append(sign_submission(key, ROUND, subs[1].proof, wrong))
    root, paths = evidence_tree([s.leaf() for s in subs])
    with anvil_node() as w3:
        verifier = deploy(w3, Groth16Backend.export_vyper(small_prover.keys))
        dispute = deploy(
            w3,
            DISPUTE_CONTRACT.read_text(),
            verifier.address,
            "0x" + "00" * 20,
            w3.eth.accounts[0],
            SMALL.chunk_size,
            3,
            SMALL.bound2x,
            SMALL.bound2e,
        )
        w3.eth.wait_for_transaction_receipt(dispute.functions.post_evidence_root(ROUND, root, R).transact())
        for k in range(3):
            with pytest.raises(ContractLogicError, match="dispute: proof verifies"):
                dispute.functions.dispute(*subs[k].args(), paths[k]).call()
        assert dispute.functions.dispute(*subs[3].args(), paths[3]).call() == subs[3].leaf()


def test_a_disputed_bad_proof_slashes_the_trainer_through_the_ledger(small_prover, tmp_path) -> None:
    """End to end with the ledger: deploy the task's verifier and dispute contract, register it by
    governance, post the round's proof root; a signed bad proof costs its trainer slash_bps of its
    stake, once; a valid proof cannot be disputed."""
    from fedledger.ledger import DeployParams, Ledger, Role, SlashReason, TaskSpec, to_fixed
    from fedledger.ledger.backends import AnvilBackend
    from fedledger.ledger.errors import AlreadySlashed, NotAnOffence, NotAuthorized

    e18 = 10**18
    params = DeployParams(unbonding_delay=5_000, voting_period=600, timelock=300)
    backend = AnvilBackend(tmp_path)
    try:
        ledger = Ledger.attach(backend, params=params)
        try:
            members = {}
            roles = [(Role.TASK_OWNER, 0), (Role.AGGREGATOR, 200), (Role.VALIDATOR, 300), (Role.TRAINER, 10)]
            for i, (role, stake) in enumerate([*roles, (Role.TRAINER, 10)]):
                m = ledger.dev(i + 1)
                ledger.transfer_utility(m.address, 1_000 * e18)
                m.register(role, bytes([i + 1]) * 32)
                if stake:
                    m.stake(stake * e18)
                members[i] = m
            owner, validator, honest, cheat = members[0], members[2], members[3], members[4]
            task = owner.create_task(TaskSpec(b"\x01" * 32, 10 * e18, 3, to_fixed(10), committee_size=1))
            info = owner.open_round(task, to_fixed(1))

            subs = [
                _chunk_submissions(small_prover, bytes(m.account.key), name, corrupt=bad, round_id=info.round_id)
                for m, name, bad in ((honest, "honest", False), (cheat, "cheat", True))
            ]
            root, paths = evidence_tree([s.leaf() for s in subs])
            verifier = owner.deploy_verifier(Groth16Backend.export_vyper(small_prover.keys))
            dispute = owner.deploy_dispute(
                verifier, chunk_size=SMALL.chunk_size, chunks=1, bound2x=SMALL.bound2x, bound2e=SMALL.bound2e
            )
            owner.post_dispute_evidence(dispute, info.round_id, root, R)
            with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
                honest.dispute_proof(dispute, subs[1], paths[1])  # not registered for the task yet

            pid = validator.propose_task_dispute(task, dispute)
            ledger.advance_time(1)
            validator.vote_proposal(pid, True)
            ledger.advance_time(params.voting_period + 1)
            owner.queue(pid)
            ledger.advance_time(params.timelock)
            owner.execute(pid)
            assert ledger.task_dispute(task) == dispute

            with pytest.raises(NotAnOffence, match="proof verifies"):
                cheat.dispute_proof(dispute, subs[0], paths[0])
            before = ledger.stake_of(cheat.address)
            slash = honest.dispute_proof(dispute, subs[1], paths[1])
            cut = before * params.slash_bps // 10_000
            assert ledger.stake_of(cheat.address) == before - cut
            assert (slash.member, slash.amount, slash.reason) == (cheat.address, cut, SlashReason.BAD_PROOF)
            assert (slash.task_id, slash.round_id, slash.evidence) == (task, info.round_id, subs[1].leaf())
            with pytest.raises(AlreadySlashed):
                honest.dispute_proof(dispute, subs[1], paths[1])
            assert ledger.stake_of(cheat.address) == before - cut
            assert ledger.stake_of(honest.address) == 10 * e18
            assert ledger.slashes(task) == [slash]
            assert ledger.gas_log["dispute_proof"][0] < 800_000
        finally:
            ledger.close()
    finally:
        backend.close()
