"""Red-team attacks through the registry's key rotation (`Registry.update_member`), on the real roles and the
real contracts on anvil.

Also: update-proof keys of another Groth16 setup (the attacker's own), refused by validators and before signing
for a dispute contract (bottom of the file).

Found on the integrated code: every check of a signed message looked the sender's key up as it is on chain *now*
(`protocol.signing.Registry`, `protocol.audit`), while a member could replace its key and its metadata (the
data-set size that bounds its FedAvg weight) at any time, mid-round too. A trainer rotating its key after the
result was posted made every validator reject the honest result (the aggregator was slashed); any rotation made
an honest run fail its audit. Fixed beside the tests: the registry refuses a key or metadata change while the
member has joined any task, and the audit checks each round against the keys as they stood when it opened.
"""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedledger.core.config import build_config
from fedledger.core.errors import IntegrityError
from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.compiler import compile_source
from fedledger.ledger.errors import LedgerRevert, WrongState
from fedledger.protocol.audit import audit_run
from fedledger.protocol.roles import Network, RoundView, Trainer
from fedledger.protocol.rules import task_rules
from fedledger.protocol.signing import Registry
from fedledger.secagg.keys import Identity
from fedledger.sim import Simulation
from fedledger.sim.attacks import _rewrap
from fedledger.sim.onchain import TRAINER_BASE, ChainRounds
from fedledger.zk.backend import DevelopmentSetupWarning, Groth16Backend, proof_words, require_task_keys
from fedledger.zk.errors import InvalidProof, KeyMismatch
from fedledger.zk.update import (
    ProofContext,
    UpdateCommitment,
    UpdateProof,
    UpdateProver,
    chunk_public_inputs,
    commit_update,
    verify_update,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "zk"))
from zk_support import SMALL

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

SECURE = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 1, "lr": 0.1,
          "proofs": "none", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
          "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


def test_an_honest_run_still_audits_after_a_trainer_rotates_its_key(tmp_path: Path) -> None:
    Simulation(build_config(SECURE)).run(tmp_path)
    audit_run(tmp_path)  # honest: it audits
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        trainer = ledger.dev(TRAINER_BASE)
        metadata = trainer.member(trainer.address).metadata  # type: ignore[union-attr]
        new = Identity(secrets.token_bytes(32)).public_bytes
        with pytest.raises(WrongState, match="leave every task"):  # not while it has joined a task
            trainer.update_member(new, metadata)
        trainer.leave_task(1)  # between rounds (here: after the last one)
        trainer.update_member(new, metadata)
        ledger.persist()
    # the security property: what was honest stays verifiable
    audit_run(tmp_path)


class RotatingTrainer(Trainer):
    """Takes part honestly, then replaces its registered key as soon as the aggregator has posted the result."""

    rotated: set[tuple[int, int]]
    refused: list[str]

    @classmethod
    def wrapping(cls, role: Trainer) -> RotatingTrainer:
        out = _rewrap(cls, role)
        out.rotated, out.refused = set(), []
        return out

    def step(self, view: RoundView, idle: bool) -> bool:
        if view.record.status is RoundStatus.SUBMITTED and self.address in view.cohort and view.key not in self.rotated:
            self.rotated.add(view.key)
            member = self.ledger.member(self.address)
            assert member is not None
            new = Identity(secrets.token_bytes(32))
            try:
                self.ledger.update_member(new.public_bytes, member.metadata)
            except LedgerRevert as e:
                self.refused.append(str(e))
                return False
            self.identity = new  # it goes on signing with its new key
            return True
        return super().step(view, idle)


def test_a_trainer_cannot_get_an_honest_aggregator_slashed_by_rotating_its_key(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    build = ChainRounds.build_roles
    attackers: list[Trainer] = []

    def build_roles(self: ChainRounds, **kw: Any) -> None:
        build(self, **kw)
        # each validator is its own process with its own view of the chain as PKI (the simulation shares one
        # cache between all roles of the process, which a deployment does not)
        for v in self.validators:
            assert v.net is not None
            net = Network(v.net.chain_id, v.net.contract, Registry(v.net.registry.lookup), v.net.members)
            v.net = net
            v.checker.net = net
        self.trainers[0] = RotatingTrainer.wrapping(self.trainers[0])
        attackers.append(self.trainers[0])

    monkeypatch.setattr(ChainRounds, "build_roles", build_roles)
    res = Simulation(build_config(SECURE)).run(tmp_path)
    assert attackers and attackers[0].rotated  # type: ignore[attr-defined]  # it tried
    assert all("leave every task" in r for r in attackers[0].refused)  # type: ignore[attr-defined]
    # the security property: nobody but the trainer did anything wrong, so no aggregator is slashed
    assert res.ledger["slashed"] == [], f"an honest aggregator was slashed: {res.ledger['slashed']}"


# ---------------------------------------------------------------- Groth16 keys of another setup

_ROOT = Path(__file__).resolve().parents[2]
_R = 0x1234567890ABCDEF


def _task_backend() -> Groth16Backend:
    """The task's keys: the shared development cache of the zk tests (`tests/zk/conftest.py`)."""
    base = os.environ.get("FEDLEDGER_CACHE")
    return Groth16Backend((Path(base) if base else _ROOT / ".cache" / "fedledger") / "zk")


def _proof(prover: UpdateProver) -> tuple[list[int], bytes, UpdateCommitment, UpdateProof]:
    """An update proof of one chunk and its public inputs, as a trainer submits it."""
    rng = np.random.default_rng(7)
    x, e = rng.integers(-100, 100, SMALL.chunk_size), rng.integers(-10, 10, SMALL.chunk_size)
    secret, posted = commit_update(SMALL, ProofContext("task", 1, "trainer"), x, e, rng)
    proof = prover.prove_update(secret, posted, _R)
    public = chunk_public_inputs(SMALL, posted, 0, posted.state0, proof.chunks[0].state_out, _R, proof.s)
    return public, proof.chunks[0].proof, posted, proof


@pytest.fixture(scope="module")
def provers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpdateProver, UpdateProver]]:
    """(the task's prover, an attacker's prover with keys from its own single-party setup of the same circuit:
    whoever ran that setup knows its toxic waste and can prove anything under its verifying key)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        task = UpdateProver(SMALL, _task_backend())
        own = UpdateProver(SMALL, Groth16Backend(tmp_path_factory.mktemp("attacker-zk")))
    yield task, own
    task.close()
    own.close()


def test_a_proof_made_for_another_setup_never_counts_for_the_task(provers: tuple[UpdateProver, UpdateProver]) -> None:
    """Found open: verifying keys are per machine (a development setup, or keys imported from a file) and nothing
    bound a task to one: a verifier holding another setup's key accepts what that setup's owner proves (forgeries
    included, for whoever knows its toxic waste) and refuses honest proofs. Fixed: the task spec, whose hash is on
    chain, commits the update key's hash; validators (`task_rules`) check theirs against it before verifying."""
    task, own = provers
    assert own.keys.vk_hash != task.keys.vk_hash  # same circuit, another setup: another key
    public, chunk, posted, proof = _proof(own)
    verify_update(own.keys, SMALL, posted, proof, _R)  # under its own key the attacker's proof verifies ...
    with pytest.raises(InvalidProof):  # ... under the task's it does not
        verify_update(task.keys, SMALL, posted, proof, _R)
    # a validator handed the attacker's keys as "the task's" refuses to verify with them at all
    with pytest.raises(KeyMismatch, match="not the one the task committed to"):
        require_task_keys(own.keys, task.keys.vk_hash)
    require_task_keys(task.keys, task.keys.vk_hash)
    spec = {"dataset": "digits", "model": "logreg", "rounds": 1, "clients": 5, "proofs": "update",
            "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
            "zk_keys": {"update": task.keys.vk_hash}}
    with pytest.raises(KeyMismatch):  # the validators' and auditors' entry point
        task_rules(spec, keys=own.keys)
    assert public and chunk


def test_a_dispute_contract_verifying_with_another_key_is_refused_before_signing(
        fed: Any, provers: tuple[UpdateProver, UpdateProver]) -> None:
    """The dispute path: a verifier deployed from the attacker's own setup passes the attacker's proofs and fails
    the task's honest ones (an honest trainer signing for it could be slashed, BAD_PROOF). A trainer asks for the
    dispute domain with the verifier of the task's committed key and gets a refusal instead of a domain to sign."""
    from ledger_fed import pass_proposal

    task, own = provers
    owner = fed.owner
    public, chunk, _, _ = _proof(own)
    a, b, c = proof_words(chunk)
    bad = owner.deploy_verifier(Groth16Backend.export_vyper(own.keys))
    good = owner.deploy_verifier(Groth16Backend.export_vyper(task.keys))
    abi = compile_source(Groth16Backend.export_vyper(task.keys), "verifier").abi
    w3 = fed.ledger._s.w3
    assert w3.eth.contract(address=bad, abi=abi).functions.verifyProof(a, b, c, public).call()
    assert not w3.eth.contract(address=good, abi=abi).functions.verifyProof(a, b, c, public).call()
    dims = {"chunk_size": SMALL.chunk_size, "chunks": 1, "bound2x": SMALL.bound2x, "bound2e": SMALL.bound2e}
    dispute = owner.deploy_dispute(bad, fed.task_id, **dims)
    pass_proposal(fed, fed.validators[4].propose_task_dispute(fed.task_id, dispute))  # governance registers it
    assert fed.ledger.task_dispute(fed.task_id) == dispute
    trainer = fed.trainers[0]
    trainer.dispute_domain(fed.task_id)  # unchecked, the trainer would sign for it
    with pytest.raises(IntegrityError, match="not the verifier of the task's committed key"):
        trainer.dispute_domain(fed.task_id, verifier_source=Groth16Backend.export_vyper(task.keys))
    honest = owner.deploy_dispute(good, fed.task_id, **dims)
    domain = trainer.dispute_domain(fed.task_id, honest, verifier_source=Groth16Backend.export_vyper(task.keys))
    assert domain.dispute == honest
