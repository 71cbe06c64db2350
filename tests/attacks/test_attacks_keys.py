"""Red-team attacks through the registry's key rotation (`Registry.update_member`), on the real roles and the
real contracts on anvil.

Every check of a signed message looks the sender's key up as it is on chain *now* (`protocol.signing.Registry`,
`protocol.audit`), while a member may replace its key and its metadata (the data-set size that bounds its
FedAvg weight) at any time. Each test asserts the security property; while the hole is open it fails
(`xfail(strict=True)`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from fedledger.core.config import build_config
from fedledger.ledger import Ledger, RoundStatus
from fedledger.ledger.anvil import find_anvil
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


@pytest.mark.xfail(strict=True, reason="attack: the audit checks old transcripts against the key a member has now; "
                                       "one update_member by any trainer makes an honest run fail its audit forever")
def test_an_honest_run_still_audits_after_a_trainer_rotates_its_key(tmp_path: Path) -> None:
    Simulation(build_config(SECURE)).run(tmp_path)
    audit_run(tmp_path)  # honest: it audits
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        trainer = ledger.dev(TRAINER_BASE)
        metadata = trainer.member(trainer.address).metadata  # type: ignore[union-attr]
        trainer.update_member(Identity(secrets.token_bytes(32)).public_bytes, metadata)
        ledger.persist()
    # the security property: what was honest stays verifiable
    audit_run(tmp_path)


class RotatingTrainer(Trainer):
    """Takes part honestly, then replaces its registered key as soon as the aggregator has posted the result."""

    rotated: set[tuple[int, int]]

    @classmethod
    def wrapping(cls, role: Trainer) -> RotatingTrainer:
        out = _rewrap(cls, role)
        out.rotated = set()
        return out

    def step(self, view: RoundView, idle: bool) -> bool:
        if view.record.status is RoundStatus.SUBMITTED and self.address in view.cohort and view.key not in self.rotated:
            self.rotated.add(view.key)
            member = self.ledger.member(self.address)
            assert member is not None
            new = Identity(secrets.token_bytes(32))
            self.ledger.update_member(new.public_bytes, member.metadata)
            self.identity = new  # it goes on signing with its new key
            return True
        return super().step(view, idle)


@pytest.mark.xfail(strict=True, reason="attack: a trainer rotates its key after the result is posted; validators "
                                       "check its transcript messages against the new key, reject, and the honest "
                                       "aggregator is slashed")
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
    assert attackers and attackers[0].rotated  # type: ignore[attr-defined]
    # the security property: nobody but the trainer did anything wrong, so no aggregator is slashed
    assert res.ledger["slashed"] == [], f"an honest aggregator was slashed: {res.ledger['slashed']}"
