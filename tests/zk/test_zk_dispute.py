"""Dispute path on anvil with real Groth16 proofs: a signed proof in a finalized round's proofs root
that is an offence is recorded once and slashes its trainer's stake through the ledger; honest
proofs, entries outside the root and entries under another signer's name cannot be disputed."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from web3.exceptions import ContractLogicError
from zk_anvil import ANVIL
from zk_support import SMALL

from fedledger.secagg.keys import Identity
from fedledger.zk.backend import Groth16Backend, proof_words
from fedledger.zk.onchain import DisputeDomain, Submission, evidence_tree, sign_submission
from fedledger.zk.update import ProofContext, UpdateProver, chunk_public_inputs, commit_update

pytestmark = [
    pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning"),
    pytest.mark.anvil,
    pytest.mark.slow,
    pytest.mark.skipif(not ANVIL.exists(), reason="anvil not installed (make node)"),
]
R = 55555
E18 = 10**18


def _chunk_submission(prover, key: bytes, member: str, domain: DisputeDomain, round_id: int, *, corrupt: bool):
    rng = np.random.default_rng(len(member))
    x, e = rng.integers(-100, 100, 16), rng.integers(-10, 10, 16)
    secret, posted = commit_update(prover.spec, ProofContext("task", round_id, member), x, e, rng, check=False)
    proof = prover.prove_update(secret, posted, R)
    public = chunk_public_inputs(prover.spec, posted, 0, posted.state0, proof.chunks[0].state_out, R, proof.s)
    if corrupt:  # the trainer claims another linear-check value than the one it proved
        public[9] = (public[9] + 1) % 2**64
    return sign_submission(key, domain, round_id, 0, proof.chunks[0].proof, public)


@dataclass
class World:
    """A ledger with one task, its registered dispute contract and an open first round."""

    ledger: object
    owner: object
    aggregator: object
    validator: object
    trainers: list
    task: int
    dispute: str
    domain: DisputeDomain
    round_id: int
    params: object

    def key(self, i: int) -> bytes:
        return bytes(self.trainers[i].account.key)

    def post(self, subs: Sequence[Submission]) -> list[list[bytes]]:
        """The aggregator posts the result with the proofs root over `subs` and challenge R."""
        from fedledger.ledger import RoundResult, to_fixed

        root, paths = evidence_tree([s.leaf() for s in subs])
        result = RoundResult(b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, len(subs), to_fixed(1))
        self.aggregator.submit_result(self.task, self.round_id, result, proofs_root=root, challenge=R)
        return paths

    def accept(self) -> None:
        """The committee (one validator) accepts the result: the round is finalized."""
        from fedledger.ledger import RoundStatus

        self.validator.vote(self.task, self.round_id, True)
        assert self.owner.finalize(self.task, self.round_id) is RoundStatus.FINALIZED

    def register_dispute(self) -> None:
        params = self.params
        pid = self.validator.propose_task_dispute(self.task, self.dispute)
        self.ledger.advance_time(1)
        self.validator.vote_proposal(pid, True)
        self.ledger.advance_time(params.voting_period + 1)
        self.owner.queue(pid)
        self.ledger.advance_time(params.timelock)
        self.owner.execute(pid)
        assert self.ledger.task_dispute(self.task) == self.dispute


@contextlib.contextmanager
def _world(tmp_path: Path, prover: UpdateProver, *, chunks: int = 1, register: bool = True) -> Iterator[World]:
    from fedledger.ledger import DeployParams, Ledger, Role, TaskSpec, to_fixed
    from fedledger.ledger.backends import AnvilBackend

    params = DeployParams(unbonding_delay=5_000, voting_period=600, timelock=300, max_window=2_000, min_committee=1)
    backend = AnvilBackend(tmp_path)
    try:
        ledger = Ledger.attach(backend, params=params)
        try:
            members = []
            roles = [(Role.TASK_OWNER, 0), (Role.AGGREGATOR, 200), (Role.VALIDATOR, 300)] + [(Role.TRAINER, 10)] * 4
            for i, (role, stake) in enumerate(roles):
                m = ledger.dev(i + 1)
                ledger.transfer_utility(m.address, 1_000 * E18)
                m.register(role, Identity(bytes([i + 1]) * 32).public_bytes)
                if stake:
                    m.stake(stake * E18)
                members.append(m)
            owner, aggregator, validator, trainers = members[0], members[1], members[2], members[3:]
            task = owner.create_task(
                TaskSpec(
                    b"\x01" * 32, 10 * E18, 3, to_fixed(10), committee_size=1, submit_window=1_000, vote_window=1_000
                )
            )
            for m in members[1:]:  # only members who joined a task are drawn, named or slashed in it
                m.join_task(task)
            verifier = owner.deploy_verifier(Groth16Backend.export_vyper(prover.keys))
            dispute = owner.deploy_dispute(
                verifier, task, chunk_size=SMALL.chunk_size, chunks=chunks, bound2x=SMALL.bound2x, bound2e=SMALL.bound2e
            )
            world = World(
                ledger,
                owner,
                aggregator,
                validator,
                trainers,
                task,
                dispute,
                ledger.dispute_domain(task, dispute),
                0,
                params,
            )
            if register:
                world.register_dispute()
            world.round_id = owner.open_round(task).round_id
            yield world
        finally:
            ledger.close()
    finally:
        backend.close()


def _call(world: World, sub: Submission, path: list[bytes]) -> bytes:
    """eth_call of `dispute` (nothing sent): the leaf it would record, or the contract's revert."""
    contract = world.ledger.dispute_contract(world.dispute)
    return bytes(contract.functions.dispute(*sub.args(), path).call({"from": world.owner.address}))


def test_dispute_slashes_a_bad_proof_once_and_rejects_the_rest(small_prover, tmp_path) -> None:
    from fedledger.ledger import SlashReason
    from fedledger.ledger.errors import AlreadySlashed, NotAnOffence, NotAuthorized, WrongState

    # dave proves a valid statement, but under a looser norm bound than the task's
    loose = UpdateProver(dataclasses.replace(SMALL, bound2x=SMALL.bound2x * 100), small_prover.backend)
    with _world(tmp_path, small_prover, register=False) as w:

        def sub(i: int, name: str, prover: UpdateProver = small_prover, bad: bool = False) -> Submission:
            return _chunk_submission(prover, w.key(i), name, w.domain, w.round_id, corrupt=bad)

        subs = [sub(0, "alice"), sub(1, "bob", bad=True), sub(2, "carol"), sub(3, "dave", loose)]
        # an aggregator that lists bob's bad proof under alice's name, to get alice slashed
        subs.append(dataclasses.replace(subs[1], trainer=subs[0].trainer))
        contract = w.ledger.dispute_contract(w.dispute)
        a, b, c = proof_words(subs[0].proof)
        digest = contract.functions.submission_digest(w.round_id, 0, subs[0].trainer, a, b, c, list(subs[0].public))
        assert bytes(digest.call()) == subs[0].digest()

        with pytest.raises(ContractLogicError, match="dispute: no proofs root for round"):
            _call(w, subs[1], [])
        paths = w.post(subs)
        # the task manager refuses to slash before governance registered the contract for the task,
        with pytest.raises(NotAuthorized, match="only a registered dispute contract"):
            w.trainers[2].dispute_proof(subs[1], paths[1])
        w.register_dispute()
        # and before the committee accepted the posted root and challenge
        with pytest.raises(WrongState, match="round not finalized"):
            w.trainers[2].dispute_proof(subs[1], paths[1])
        w.accept()

        # honest entries cannot be disputed
        for i in (0, 2):
            with pytest.raises(NotAnOffence, match="proof verifies"):
                w.trainers[3].dispute_proof(subs[i], paths[i])
        # an entry that is not in the root, or attributed to someone who did not sign it
        with pytest.raises(ContractLogicError, match="dispute: not in the proofs root"):
            _call(w, subs[1], paths[0])
        framed = dataclasses.replace(subs[1], trainer=subs[2].trainer)
        with pytest.raises(ContractLogicError, match="dispute: not in the proofs root"):
            _call(w, framed, paths[1])
        with pytest.raises(ContractLogicError, match="dispute: not signed by the offender"):
            _call(w, subs[4], paths[4])
        # a proof that verifies, but of another statement than the round's, is an offence too
        assert _call(w, subs[3], paths[3]) == subs[3].leaf()

        # the bad one is slashed, once
        bob = w.trainers[1]
        before = w.ledger.stake_of(bob.address)
        slash = w.trainers[2].dispute_proof(subs[1], paths[1])
        cut = before * w.params.slash_bps // 10_000
        assert w.ledger.stake_of(bob.address) == before - cut
        assert (slash.member, slash.amount, slash.reason) == (bob.address, cut, SlashReason.BAD_PROOF)
        assert (slash.task_id, slash.round_id, slash.attempt, slash.evidence) == (w.task, w.round_id, 0, subs[1].leaf())
        assert contract.functions.offence(subs[1].leaf()).call() == bob.address
        [event] = w.ledger.backend.w3.eth.get_logs(
            {"address": w.dispute, "topics": [contract.events.ProofDisputed().topic], "fromBlock": 0}
        )
        assert contract.events.ProofDisputed().process_log(event)["args"]["disputer"] == w.trainers[2].address
        with pytest.raises(AlreadySlashed, match="already disputed"):
            w.trainers[2].dispute_proof(subs[1], paths[1])
        assert w.ledger.stake_of(bob.address) == before - cut
        for honest in (w.trainers[0], w.trainers[2]):
            assert w.ledger.stake_of(honest.address) == 10 * E18
        assert w.ledger.slashes(w.task) == [slash]
        assert 200_000 < w.ledger.gas_log["dispute_proof"][0] < 800_000


def test_dispute_recomputes_the_challenge_power_of_later_chunks(small_prover, tmp_path) -> None:
    rng = np.random.default_rng(5)
    x, e = rng.integers(-100, 100, 40), rng.integers(-10, 10, 40)
    with _world(tmp_path, small_prover, chunks=3) as w:
        secret, posted = commit_update(SMALL, ProofContext("task", w.round_id, "erin"), x, e, rng)
        proof = small_prover.prove_update(secret, posted, R)
        subs, state_in = [], posted.state0
        for k, ch in enumerate(proof.chunks):
            public = chunk_public_inputs(SMALL, posted, k, state_in, ch.state_out, R, proof.s)
            subs.append(sign_submission(w.key(0), w.domain, w.round_id, 0, ch.proof, public))
            state_in = ch.state_out
        wrong = list(subs[1].public)
        wrong[8] = R  # r^1 instead of r^16 for chunk 1 (the circuit would accept a proof made so)
        subs.append(sign_submission(w.key(0), w.domain, w.round_id, 0, subs[1].proof, wrong))
        paths = w.post(subs)
        w.accept()
        for k in range(3):
            with pytest.raises(ContractLogicError, match="dispute: proof verifies"):
                _call(w, subs[k], paths[k])
        assert _call(w, subs[3], paths[3]) == subs[3].leaf()
