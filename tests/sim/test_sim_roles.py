"""The round protocol run by its roles on a real chain: faults, slashing, settlement, crash recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.core.blobstore import BlobStore
from fedledger.core.config import build_config
from fedledger.ledger import Ledger, SlashReason
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.audit import audit_run
from fedledger.protocol.evidence import Evidence, RoundManifest
from fedledger.sim import Simulation
from fedledger.sim.onchain import CONTRIBUTOR_POOL

BASE = {"dataset": "digits", "partition": "iid", "clients": 6, "model": "logreg", "rounds": 3, "lr": 0.1,
        "dropout": 0.2, "ledger": {"enabled": True, "chain": "auto", "committee": 3}}
needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")
pytestmark = [pytest.mark.slow, needs_anvil]


def _run(out: Path, **changes):
    return Simulation(build_config({**BASE, **changes})).run(out)


def _settlement(out: Path, task_id: int, round_id: int) -> Evidence:
    blobs = BlobStore(out / "blobs")
    with Ledger.connect("auto", out, deploy_if_missing=False) as ledger:
        root = ledger.round(task_id, round_id).evidence_root
    return Evidence.from_bytes(blobs.get(RoundManifest.find(blobs, root).evidence))


def test_an_honest_run_pays_its_contributors_and_scores_them(tmp_path: Path) -> None:
    res = _run(tmp_path, ledger={**BASE["ledger"], "claim_rewards": True})
    assert all(r.finalized and r.attempts == 1 for r in res.rounds)
    assert all(r.stages.get("chain", 0) > 0 and r.stages.get("validation", 0) > 0 for r in res.rounds)
    assert res.ledger is not None and res.ledger["slashed"] == []
    audit_run(tmp_path)
    task = res.ledger["task_id"]
    paid: dict[str, int] = {}
    trainers: set[str] = set()
    for rnd in range(1, 4):
        s = _settlement(tmp_path, task, rnd).settlement
        assert len(s.contributors) == res.rounds[rnd - 1].participants
        # the whole contributors' pool is split (trainers by the committee's consensus score, the aggregator's
        # and the scoring validators' parts), and a trainer is paid exactly when its consensus score is positive
        assert s.scores is not None and sum(s.rewards.values()) == CONTRIBUTOR_POOL
        assert {a for a in s.rewards if a in s.contributors} == \
            {a for a in s.contributors if s.scores["consensus"][a] > 0}
        trainers |= set(s.contributors)
        for a, v in s.rewards.items():
            if a in s.contributors:
                paid[a] = paid.get(a, 0) + v
    last = _settlement(tmp_path, task, 3).settlement.reputation
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        for address, amount in paid.items():
            assert ledger.reward_balance(address) == amount  # every trainer claimed every round it earned
        for address, score in last.items():
            if address in trainers:  # the root applies to trainers on chain (others move by `Reputation.adjust`)
                assert ledger.reputation_of(address) == score
    assert any(score > 5_000 for a, score in last.items() if a in trainers)  # contributors gained


def test_a_late_aggregator_is_slashed_and_replaced_with_the_same_result(tmp_path: Path) -> None:
    honest = _run(tmp_path / "honest", rounds=2)
    late = _run(tmp_path / "late", rounds=2, attack="late_aggregator")
    assert late.rounds[0].attempts == 2 and late.rounds[1].attempts == 1
    assert late.final_model_hash == honest.final_model_hash
    assert late.ledger is not None
    slashes = late.ledger["slashed"]
    assert [(s["round"], s["reason"]) for s in slashes] == [(1, "missed_deadline")]
    assert slashes[0]["amount"] > 0
    audit_run(tmp_path / "late")


def test_a_malicious_aggregator_is_slashed_by_the_committees_rejection(tmp_path: Path) -> None:
    res = _run(tmp_path, rounds=2, attack="malicious_aggregator")
    assert res.ledger is not None
    reasons = {s["reason"] for s in res.ledger["slashed"]}
    assert reasons == {SlashReason.REJECTED_RESULT.name.lower()}
    assert sum(r.attempts for r in res.rounds) == 2 + len(res.ledger["slashed"])
    audit_run(tmp_path)


def test_a_silent_validator_does_not_stop_a_round_that_reaches_quorum(tmp_path: Path) -> None:
    res = _run(tmp_path, rounds=2, attack="silent_validator:1")
    assert all(r.finalized and r.attempts == 1 for r in res.rounds)
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        voted = {str(e.args["voter"]) for e in ledger.events("Voted", task_id=res.ledger["task_id"])}
        silent = ledger.dev(40).address  # the first validator account is the silent one
        assert silent not in voted and len(voted) == 2
        assert ledger.reward_balance(silent) == 0  # only validators who voted with the outcome are paid
        assert all(ledger.reward_balance(v) > 0 for v in voted)


def _cli(out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FEDLEDGER_KILL_AT"}
    if kill_at:
        env["FEDLEDGER_KILL_AT"] = kill_at
    cmd = [sys.executable, "-c", "from fedledger.cli.main import main; raise SystemExit(main())", "run", "--plain",
           "--dataset", "digits", "--partition", "iid", "--clients", "6", "--model", "logreg", "--rounds", "3",
           "--lr", "0.1", "--chain", "auto", "--out", str(out), "--quiet"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("stage", ["open", "submitted", "finalized"])
def test_a_run_killed_inside_a_round_resumes_it_from_the_chain(tmp_path: Path, stage: str) -> None:
    whole = _cli(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    killed = _cli(tmp_path / "killed", kill_at=f"2:{stage}")
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no clean-up ran
    again = _cli(tmp_path / "killed")
    assert again.returncode == 0, again.stderr
    expected = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["final_model_hash"] == expected["final_model_hash"]
    assert resumed["resumed_from_round"] == 1
    found = {"open": "open", "submitted": "submitted", "finalized": "finalized"}[stage]
    assert resumed["recovery"]["round"] == 2 and resumed["recovery"]["found_on_chain"] == found
    assert resumed["recovery"]["seconds_to_finalize"] > 0
    assert [r["model_hash"] for r in resumed["rounds"]] == [r["model_hash"] for r in expected["rounds"]]
    audit_run(tmp_path / "killed")


def test_a_member_that_masks_another_vector_is_named_left_out_and_slashed(tmp_path: Path) -> None:
    # the noise is sized for a dropout margin (dropout 0.1), so the sum without the cheater is still released
    res = _run(tmp_path, rounds=1, dropout=0.1, clients=6, proofs="update", attack="mask_swap:0.2",
               privacy={"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20})
    cheaters = set(res.attack["members"]["mask_swap"])  # two of six; a cheater that drops out cheats nobody
    r = res.rounds[0]
    named = {int(name.split("-")[1]) for name in r.proofs["culprits"]}
    assert r.finalized and named and named <= cheaters
    assert r.participants == 6 - r.dropped - len(named) and r.proofs["linear_check"] is True
    slashes = res.ledger["slashed"]
    assert {(s["round"], s["reason"]) for s in slashes} == {(1, "faulty_update")}
    with Ledger.connect("auto", tmp_path, deploy_if_missing=False) as ledger:
        assert {s["member"] for s in slashes} == {ledger.dev(100 + i).address for i in named}  # trainer i: 100 + i
    audit_run(tmp_path)


def test_an_honest_aggregator_is_not_slashed_for_an_accuracy_drop_of_a_recomputed_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validators whose own held-out data says every new model is much worse (non-IID validators, DP noise,
    poisoned members) still accept a model they recomputed from the members' signed updates: the drop is not
    the aggregator's doing, and a rejection would slash it and (under DP) spend a privacy release."""
    from fedledger.protocol import roles

    original = roles.Validator.__init__

    def pessimistic(self, *args, **kwargs) -> None:
        accuracy: dict[bytes, float] = {}

        def evaluate(model) -> float:  # each model first seen scores 0.5 below the one before it
            return accuracy.setdefault(model.numpy().tobytes(), max(0.0, 1.0 - 0.5 * len(accuracy)))

        original(self, *args, **{**kwargs, "evaluate": evaluate})

    monkeypatch.setattr(roles.Validator, "__init__", pessimistic)
    res = _run(tmp_path, rounds=2, dropout=0.0)
    assert all(r.finalized and r.attempts == 1 for r in res.rounds)
    assert res.ledger is not None and res.ledger["slashed"] == []
