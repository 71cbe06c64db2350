"""Red-team attacks through the registry's key rotation (`Registry.update_member`), on the real roles and the
real contracts on anvil.

Found on the integrated code: every check of a signed message looked the sender's key up as it is on chain *now*
(`protocol.signing.Registry`, `protocol.audit`), while a member could replace its key and its metadata (the
data-set size that bounds its FedAvg weight) at any time, mid-round too. A trainer rotating its key after the
result was posted made every validator reject the honest result (the aggregator was slashed); any rotation made
an honest run fail its audit. Fixed beside the tests: the registry refuses a key or metadata change while the
member has joined any task, and the audit checks each round against the keys as they stood when it opened.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from fedledger.core.config import build_config
from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.errors import LedgerRevert, WrongState
from fedledger.protocol.audit import audit_run
from fedledger.protocol.roles import Network, RoundView, Trainer
from fedledger.protocol.signing import Registry
from fedledger.secagg.keys import Identity
from fedledger.sim import Simulation
from fedledger.sim.attacks import _rewrap
from fedledger.sim.onchain import TRAINER_BASE, ChainRounds

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
