"""Attacks: each one injected, and detected or bounded as docs say."""

from __future__ import annotations

import pytest

from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError, IntegrityError
from fedledger.ledger.anvil import find_anvil
from fedledger.protocol.audit import audit_run
from fedledger.sim import Simulation
from fedledger.sim.attacks import AttackPlan

BASE = {"dataset": "digits", "partition": "iid", "clients": 10, "model": "logreg", "rounds": 6, "lr": 0.1}
needs_anvil = pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)")


def _run(out=None, **changes):
    return Simulation(build_config({**BASE, **changes})).run(out)


@pytest.mark.parametrize("spec", ["teleport:0.1", "sign_flip:2", "boost:x", "label_flip:-0.1"])
def test_bad_attack_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="bad --attack"):
        AttackPlan.parse(spec, 10, 0)


def test_attackers_are_a_seeded_fraction() -> None:
    plan = AttackPlan.parse("label_flip:0.3,free_ride:0.1", 10, 0)
    assert len(plan.members_doing("label_flip")) == 3 and len(plan.members_doing("free_ride")) == 1
    assert plan == AttackPlan.parse("label_flip:0.3,free_ride:0.1", 10, 0)


def test_boosted_updates_wreck_fedavg_and_are_bounded_by_the_median() -> None:
    clean = _run().final_accuracy
    fedavg = _run(attack="boost:0.2:-50").final_accuracy
    median = _run(attack="boost:0.2:-50", strategy="median").final_accuracy
    assert fedavg < clean - 0.2
    assert median > clean - 0.1


def test_label_flippers_are_bounded_by_trimmed_mean() -> None:
    clean = _run().final_accuracy
    trimmed = _run(attack="label_flip:0.2", strategy="trimmed_mean", trim_fraction=0.2).final_accuracy
    assert trimmed > clean - 0.1


def test_free_riders_add_nothing_and_do_not_stop_learning() -> None:
    res = _run(attack="free_ride:0.3")
    assert res.final_accuracy > 0.7
    assert res.attack is not None and len(res.attack["members"]["free_ride"]) == 3


def test_clipping_bounds_a_boosted_member_under_member_level_dp() -> None:
    private = {"dp": "member", "secagg": False, "epsilon": 50.0, "clip_norm": 0.5}
    clean = _run(privacy=private, rounds=3).final_accuracy
    boosted = _run(privacy=private, rounds=3, attack="boost:0.1:1000").final_accuracy
    assert boosted > clean - 0.15  # one clip norm of harm, not 1000x


@pytest.mark.slow
@needs_anvil
def test_a_malicious_aggregator_is_rejected_and_the_round_redone(tmp_path) -> None:
    chain = {"enabled": True, "chain": "auto", "committee": 3}
    honest = _run(tmp_path / "honest", rounds=3, ledger=chain)
    attacked = _run(tmp_path / "attacked", rounds=3, ledger=chain, attack="malicious_aggregator")
    assert any(r.attempts > 1 for r in attacked.rounds)  # its tampered results were rejected and redone
    assert attacked.final_model_hash == honest.final_model_hash
    audit_run(tmp_path / "attacked")


@pytest.mark.slow
@needs_anvil
def test_a_lazy_committee_lets_tampering_through_and_the_audit_names_the_round(tmp_path) -> None:
    chain = {"enabled": True, "chain": "auto", "committee": 3}
    res = _run(tmp_path, rounds=3, ledger=chain, attack="malicious_aggregator,lazy_validator:3")
    assert all(r.attempts == 1 for r in res.rounds)
    with pytest.raises(IntegrityError, match=r"^round \d: evidence: the model is not the aggregate"):
        audit_run(tmp_path)
