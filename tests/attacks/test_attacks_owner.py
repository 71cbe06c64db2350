"""Red-team attack by a task owner on the aggregators it draws, against the real roles on anvil.

The owner declares each round's privacy bound when it opens the round (`open_round(task, privacy_bound)`), and
the contract refuses a result whose privacy spent is above it. Under member-level DP the spent of an honest round
is fixed by the task spec's plan (validators recompute it); nothing ties the owner's bound to it. An owner that
opens with the least bound the contract takes makes every honest result unpostable: the drawn aggregator misses
its deadline, and the owner's reopen slashes it (MISSED_DEADLINE), attempt after attempt.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from fedledger.core.config import build_config
from fedledger.core.errors import IntegrityError
from fedledger.ledger import Ledger, SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.ledger.errors import LedgerRevert
from fedledger.protocol.roles import Aggregator, TaskOwner
from fedledger.sim import Simulation

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

SECURE = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 1, "lr": 0.1,
          "proofs": "none", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20},
          "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


@pytest.mark.xfail(strict=True, reason="attack: the owner opens rounds with a privacy bound below the spec's "
                                       "per-round spend; honest results revert and each drawn aggregator is "
                                       "slashed for a missed deadline")
def test_an_owner_cannot_get_honest_aggregators_slashed_with_a_low_privacy_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def low_bound(self: TaskOwner, privacy_bound: int | None) -> None:
        self.ledger.open_round(self.task_id, self.ledger.task(self.task_id).privacy_spent)  # the least it takes
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
    with contextlib.suppress(IntegrityError):  # the round never finalizes: no honest result can be posted
        sim.run(tmp_path)
    assert refused and all("privacy" in r for r in refused)
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        slashes = ledger.slashes()
    # the security property: an aggregator that computed the honest result is never slashed for it
    missed = [s for s in slashes if s.reason is SlashReason.MISSED_DEADLINE]
    assert not missed, f"{len(missed)} honest aggregator(s) slashed for a deadline the owner made them miss"
