"""Red-team attack by a task owner on the aggregators it draws, against the real roles on anvil.

Found open: the owner declared each round's privacy bound when it opened the round (`open_round(task, bound)`),
and the contract refuses a result whose privacy spent is above it. Under member-level DP the spent of an honest
round is fixed by the task spec's plan (validators recompute it); nothing tied the owner's bound to it. An owner
that opened with the least bound the contract took made every honest result unpostable: the drawn aggregator
missed its deadline, and the owner's reopen slashed it (MISSED_DEADLINE), attempt after attempt.

Fixed (issue 12 item 4): the task fixes its privacy plan at creation, with the spec (budget and per-round spend,
`TaskSpec.privacy_per_round`, which the simulation derives from the plan); the contract derives each round's
bound from it, and `open_round` takes no bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import keccak

from fedledger.core.config import build_config
from fedledger.ledger import Ledger, RoundStatus, SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.errors import LedgerRevert
from fedledger.protocol.roles import Aggregator, TaskOwner
from fedledger.sim import Simulation

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

SECURE = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 1, "lr": 0.1,
          "proofs": "none", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
          "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


def test_an_owner_cannot_get_honest_aggregators_slashed_with_a_low_privacy_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def low_bound(self: TaskOwner) -> None:
        # the attack: open with the least bound the contract used to take, what is already spent, through the
        # entry point that took a bound (sent as a call from the owner: it would revert as a transaction)
        task = self.ledger.task(self.task_id)
        data = keccak(b"open_round(uint256,uint256)")[:4] + encode(["uint256", "uint256"],
                                                                  [self.task_id, task.privacy_spent])
        try:
            tm = self.ledger.contracts["task_manager"].address
            self.ledger._s.w3.eth.call({"from": self.ledger.address, "to": tm, "data": data})
            tried.append("accepted")
        except Exception as e:  # the contract has no such function: it reverts
            tried.append(f"refused: {type(e).__name__}")
        self.ledger.open_round(self.task_id)  # the only way left: the bound is the contract's, from the plan
        self.ledger.persist()

    submit = Aggregator._submit
    refused: list[str] = []

    def surviving(self: Aggregator, *args: object, **kw: object) -> None:
        try:  # a daemon survives a reverted transaction (the simulation would stop on it)
            submit(self, *args, **kw)  # type: ignore[arg-type]
        except LedgerRevert as e:
            refused.append(str(e))

    monkeypatch.setattr(TaskOwner, "open", low_bound)
    monkeypatch.setattr(Aggregator, "_submit", surviving)
    sim = Simulation(build_config(SECURE))
    sim.run(tmp_path)  # the honest result is postable: the run finalizes its round
    assert tried and all(t.startswith("refused") for t in tried), tried
    assert not refused, refused
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        slashes = ledger.slashes()
        task = ledger.task(1)
        rec = ledger.round(1, 1)
    assert rec.status is RoundStatus.FINALIZED and 0 < rec.privacy_spent <= rec.privacy_bound
    assert rec.privacy_bound == min(task.privacy_per_round, task.privacy_budget)  # the plan's, not the owner's
    # the security property: an aggregator that computed the honest result is never slashed for it
    missed = [s for s in slashes if s.reason is SlashReason.MISSED_DEADLINE]
    assert not missed, f"{len(missed)} honest aggregator(s) slashed for a deadline the owner made them miss"
