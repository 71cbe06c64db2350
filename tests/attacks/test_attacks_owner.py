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
from fedledger.sim.onchain import AGGREGATOR_BASE, OWNER_ACCOUNT, TRAINER_BASE, VALIDATOR_BASE

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


def test_members_refuse_a_task_whose_committed_privacy_spend_is_below_its_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found open after the fix above: the owner commits `privacy_per_round` at creation, and nothing tied that
    value to the spec. An owner committing half the plan's per-round spend made every honest result exceed its
    bound, the same trap one step earlier. Members now check the committed terms against the spec before they
    join (`protocol.terms.join_task`), so such a task gets no member, and so no round and no slash."""
    from fedledger.protocol.terms import TaskTermsError
    from fedledger.sim.federation import Simulation as Sim

    honest = Sim._privacy_per_round

    def half_the_plan(self: Sim, spec: dict[str, object]) -> int | None:  # the owner's own code: the attack
        planned = honest(self, spec)
        assert planned is not None and planned > 1
        return planned // 2

    monkeypatch.setattr(Sim, "_privacy_per_round", half_the_plan)
    with pytest.raises(TaskTermsError, match="privacy_per_round"):
        Simulation(build_config(SECURE)).run(tmp_path)
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        task = ledger.task(1)
        registered = [ledger.dev(a).address for a in (*range(AGGREGATOR_BASE, AGGREGATOR_BASE + 3),
                                                       *range(VALIDATOR_BASE, VALIDATOR_BASE + 3),
                                                       *range(TRAINER_BASE, TRAINER_BASE + 5))]
        assert all(ledger.member(a) is not None for a in registered)
        assert not any(ledger.joined(1, a) for a in registered)
        assert not ledger.slashes()
        with pytest.raises(LedgerRevert):  # no committee can be drawn from members that did not join
            ledger.dev(OWNER_ACCOUNT).commit_round(1)
    assert task.privacy_per_round < task.privacy_budget
