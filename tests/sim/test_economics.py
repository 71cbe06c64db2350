"""The economics simulation (sim/economics.py) and `fedledger economics`."""

from __future__ import annotations

import json

import pytest

from fedledger.cli.main import main
from fedledger.core.errors import ConfigError
from fedledger.protocol.incentives import MAX_SCORE, split_pool
from fedledger.sim.economics import EconomicsConfig, run_economics

SMALL = EconomicsConfig(rounds=8, members=10, validators=5, aggregators=3, seed=3)


@pytest.fixture(scope="module")
def small() -> dict:
    return run_economics(SMALL)


def test_result_has_the_promised_fields(small):
    for key in ("reputation_quality_spearman", "reputation_quality_pearson", "honest_reward_share", "net_by_kind",
                "flag_precision", "flag_recall", "settings", "group_release_privacy", "rounds", "members"):
        assert key in small
    assert {"honest", "free_rider", "poisoner"} <= set(small["net_by_kind"])
    assert small["settings"]["rounds"] == SMALL.rounds and len(small["rounds"]) == SMALL.rounds
    assert 0 <= small["honest_reward_share"] <= 1 and 0 <= small["flag_precision"] <= 1


def test_tokens_are_conserved_every_round(small):
    """Trainers' and validators' payouts never exceed their pools; trainers' sum to the pool when anyone is paid;
    every party's rewards add up to what the rounds paid."""
    pools = split_pool(SMALL.pool, {"trainers": SMALL.role_weights[0], "aggregator": SMALL.role_weights[1],
                                    "validators": SMALL.role_weights[2]})
    for r in small["rounds"]:
        paid = sum(r["trainer_rewards"].values())
        assert paid == pools["trainers"] or (paid == 0 and not r["trainer_rewards"])
        assert sum(r["validator_rewards"].values()) <= pools["validators"]
    total = sum(m["rewards"] for m in small["members"])
    assert total == sum(small["rewards_paid"].values()) <= SMALL.rounds * SMALL.pool


def test_reputation_bounded_and_adversaries_lose(small):
    for m in small["members"]:
        assert all(0 <= s <= MAX_SCORE for s in m["reputation_history"])
    kinds = {m["name"]: m for m in small["members"]}
    poisoners = [m for m in kinds.values() if m["kind"] == "poisoner"]
    assert all(m["net"] < 0 for m in poisoners)
    malicious = [m for m in kinds.values() if m["kind"] == "malicious_aggregator"]
    for r in small["rounds"]:  # a tampered model is never finalized while honest validators hold the stake
        for attempt in r["aggregator_attempts"]:
            assert not (attempt["tampered"] and attempt["finalized"])
    tampered = sum(a["tampered"] for r in small["rounds"] for a in r["aggregator_attempts"])
    assert all(m["rewards"] == 0 for m in malicious)
    assert all((m["slashed"] > 0) == (tampered > 0) for m in malicious)


def test_free_riders_never_in_the_faulty_list_but_scaled_poisoners_are(small):
    """A zero update passes every proof (only scoring can find it); a scaled update breaks the proven bound."""
    kinds = {m["name"]: m["kind"] for m in small["members"]}
    faulty = {name for r in small["rounds"] for name in r["faulty"]}
    assert all(kinds[name] == "poisoner" for name in faulty)


def test_deterministic_given_the_seed():
    cfg = EconomicsConfig(rounds=3, members=6, validators=3, aggregators=2, seed=11)
    a, b = run_economics(cfg), run_economics(cfg)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        EconomicsConfig(members=2)
    with pytest.raises(ConfigError):
        EconomicsConfig(adversarial=0.6)
    with pytest.raises(ConfigError):
        EconomicsConfig(confidence=1.0)


def test_nobody_is_paid_before_the_rounds_can_tell_members_apart(small):
    """Round 1 has fewer rows (groups) than members: the regression has (almost) no residual freedom, no member
    is shown to contribute, and the trainers' pool stays in the budget."""
    assert small["rounds"][0]["trainer_rewards"] == {}
    assert any(r["trainer_rewards"] for r in small["rounds"])  # later rounds pay


def test_cli_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "econ"
    code = main(["economics", "--rounds", "3", "--members", "6", "--validators", "3", "--aggregators", "2",
                 "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "economics.json").read_text())
    assert payload["settings"]["members"] == 6
    assert (out / "economics.png").stat().st_size > 0
    assert "honest share of rewards" in capsys.readouterr().out


@pytest.mark.slow
def test_default_run_reaches_most_targets():
    """The default run (docs/incentives.md quotes its figures): 20% adversarial in every role under secure
    aggregation. Asserted here: what the mechanism reaches at this seed, with a margin."""
    res = run_economics(EconomicsConfig())
    assert res["reputation_quality_spearman"] >= 0.9
    assert res["honest_reward_share"] >= 0.9
    assert res["net_by_kind"]["poisoner"]["all_below_stake"]
    assert res["net_by_kind"]["free_rider"]["all_below_stake"]
    assert res["net_by_kind"]["dishonest_validator"]["all_below_stake"]
    assert res["net_by_kind"]["malicious_aggregator"]["all_below_stake"]
    assert res["flag_precision"] >= 0.9 and res["flag_recall"] >= 0.9
    # the per-member bounds are reported
    trainers = [m for m in res["members"] if m["role"] == "trainer"]
    assert all(m["lower_bound"] is not None and m["lower_bound"] <= m["estimate"] <= m["upper_bound"]
               for m in trainers)
