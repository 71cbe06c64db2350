"""Red-team attack on a round with visible updates (no secure aggregation), against the real roles on anvil."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fedledger.core.config import build_config
from fedledger.ledger import SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.roles import RoundOutput, RoundView
from fedledger.sim import Simulation
from fedledger.sim.attacks import TamperingAggregator

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")]

VISIBLE = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 2, "lr": 0.1,
           "proofs": "none", "privacy": {"dp": "none"}, "strategy": "fedavg",
           "ledger": {"enabled": True, "chain": "auto", "committee": 3}}


def _omitting(self: TamperingAggregator, view: RoundView, output: RoundOutput) -> RoundOutput:
    """A tampered model (a small shift a held-out accuracy check does not see), posted without the evidence's
    update rows and weights: the signed updates are still in the transcript."""
    shift = 0.02 * torch.randn(output.model.shape, generator=torch.Generator().manual_seed(view.record.attempt))
    return replace(output, model=output.model + shift, deltas=None, weights=None)


def test_a_fedavg_model_posted_without_its_update_rows_is_still_recomputed(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TamperingAggregator, "publish", _omitting)
    sim = Simulation(build_config({**VISIBLE, "attack": "malicious_aggregator"}))
    res = sim.run(tmp_path)
    rejected = SlashReason.REJECTED_RESULT.name.lower()
    # the security property: the tampered FedAvg model is rejected and its aggregator slashed
    assert res.rounds[0].attempts >= 2 and {s["reason"] for s in res.ledger["slashed"]} == {rejected}, \
        f"a tampered model went through (attempts {[r.attempts for r in res.rounds]}, slashed {res.ledger['slashed']})"
