"""Privacy inside the simulation: what results.json reports and what the run refuses."""

from __future__ import annotations

import pytest

from fedledger.cli.main import main
from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError
from fedledger.ledger.anvil import find_anvil
from fedledger.sim import Simulation

MEMBER = {"dataset": "digits", "partition": "iid", "clients": 12, "model": "logreg", "rounds": 2, "lr": 0.1,
          "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20}}


def _run(out=None, **changes):
    return Simulation(build_config({**MEMBER, **changes})).run(out)


def test_member_level_spends_at_most_the_budget_and_reports_it() -> None:
    res = _run(dropout=0.2)
    eps = [r.epsilon_spent for r in res.rounds]
    assert eps == sorted(eps) and eps[-1] <= 8.0 * (1 + 1e-6)
    assert all(r.survivors == r.participants and r.participants + r.dropped == 12 for r in res.rounds)
    block = res.privacy
    assert block["unit"] == "member" and block["amplification_by_subsampling"] is False
    assert block["secure_aggregation"]["protocol"] == "SecAgg+"
    # what SecAgg+ sent: at least each survivor's 20-bit packed vector (1,024 rotated coordinates for d = 650)
    assert res.rounds[0].bytes_up > res.rounds[0].participants * 1024 * 20 // 8


def _interrupt_after_first_round(record) -> None:
    raise KeyboardInterrupt


def test_member_level_run_resumes_to_the_same_model(tmp_path) -> None:
    # the noise is a secret: only a deterministic run (secrets derived from the seed) reproduces the model
    whole = _run(rounds=3, deterministic=True)
    with pytest.raises(KeyboardInterrupt):
        Simulation(build_config({**MEMBER, "rounds": 3, "deterministic": True})).run(
            tmp_path, on_round=_interrupt_after_first_round)
    resumed = _run(tmp_path, rounds=3, deterministic=True)
    assert resumed.resumed_from == 1
    assert resumed.final_model_hash == whole.final_model_hash
    assert resumed.rounds[-1].epsilon_spent == pytest.approx(whole.rounds[-1].epsilon_spent)
    assert resumed.randomness["deterministic"] is True


def test_a_member_level_run_resumes_with_fresh_secrets_and_the_same_accounting(tmp_path) -> None:
    whole = _run(rounds=3)
    with pytest.raises(KeyboardInterrupt):
        Simulation(build_config({**MEMBER, "rounds": 3})).run(tmp_path, on_round=_interrupt_after_first_round)
    resumed = _run(tmp_path, rounds=3)
    assert resumed.resumed_from == 1 and resumed.randomness["deterministic"] is False
    assert resumed.final_model_hash != whole.final_model_hash  # other noise: another model
    assert [r.epsilon_spent for r in resumed.rounds] == pytest.approx([r.epsilon_spent for r in whole.rounds])
    with pytest.raises(ConfigError, match="different configuration"):
        _run(tmp_path, rounds=3, deterministic=True)  # a run does not switch where its secrets come from


@pytest.mark.slow
def test_record_level_reports_the_largest_member_epsilon() -> None:
    res = Simulation(build_config({"dataset": "breast_cancer", "partition": "iid", "clients": 3, "rounds": 2,
                                   "model": "logreg", "lr": 0.1, "privacy": {"dp": "record", "epsilon": 2.0}})).run()
    eps = [r.epsilon_spent for r in res.rounds]
    assert 0 < eps[0] < eps[1] <= 2.0 * (1 + 1e-3)
    assert res.privacy["unit"] == "record" and res.privacy["parameters"]["noise_multiplier"] > 0
    assert res.final_accuracy > 0.6


def test_a_private_run_cannot_resume_with_another_round_count(tmp_path) -> None:
    _run(tmp_path, rounds=1)
    with pytest.raises(ConfigError, match="different configuration"):
        _run(tmp_path, rounds=3)  # the noise was planned for one round


def test_secagg_without_dp_sums_quantized_updates_through_secagg() -> None:
    # issue 17, item 2: --secagg alone is no longer refused; SecAgg+ carries 16-bit packed vectors, nothing accounted
    res = _run(privacy={"dp": "none", "secagg": True, "bits": 16, "clip_norm": 5.0}, rounds=2, dropout=0.38,
               lr=0.5, deterministic=True)
    assert res.privacy["unit"] == "none" and res.privacy["secure_aggregation"] is True
    assert all(r.epsilon_spent is None for r in res.rounds)
    r = res.rounds[-1]
    assert r.survivors + r.dropped == 12 and r.bytes_up > r.survivors * 1024 * 16 // 8
    assert res.final_accuracy > 0.8


@pytest.mark.slow
@pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed")
def test_secagg_without_dp_runs_in_the_ledgers_roles(tmp_path) -> None:
    # issue 17, item 2 on a chain: trainers clip, quantize and mask; the aggregator sums through SecAgg+ (38% of the
    # cohort may drop); the committee replays the transcript; the update proofs bind what each member fed in
    plain = {"dp": "none", "secagg": True, "bits": 16, "clip_norm": 5.0}
    chain = {"enabled": True, "chain": "auto", "committee": 3}
    res = _run(tmp_path, clients=6, privacy=plain, ledger=chain, dropout=0.38, lr=0.5, proofs="update")
    assert all(r.finalized for r in res.rounds) and res.ledger["slashed"] == []
    assert res.ledger["privacy_spent"] == 0 and all(r.epsilon_spent is None for r in res.rounds)
    assert all(r.proofs["made"] == r.proofs["verified"] > 0 for r in res.rounds)
    released = [r for r in res.rounds if r.survivors]  # fewer survivors than SecAgg+'s threshold: not released
    assert released and all(r.proofs["made"] == r.survivors for r in released)
    off = _run(clients=6, privacy=plain, dropout=0.38, lr=0.5, deterministic=True)
    assert res.final_accuracy == pytest.approx(off.final_accuracy, abs=0.05)  # same recipe, other dropouts
    assert main(["audit", str(tmp_path)]) == 0


def test_record_level_dp_through_secagg_is_refused_on_a_chain() -> None:
    with pytest.raises(ConfigError, match="off chain only"):
        Simulation(build_config({**MEMBER, "privacy": {"dp": "record", "secagg": True, "epsilon": 3.0},
                                 "ledger": {"enabled": True, "chain": "memory"}}))


def test_record_level_through_secagg_spends_the_budget_as_central_dpsgd() -> None:
    res = _run(privacy={"dp": "record", "secagg": True, "epsilon": 3.0}, clients=5, rounds=2, baseline=True,
               deterministic=True)
    block, central = res.privacy, res.central_dp
    assert block["unit"] == "record" and block["secure_aggregation"]["protocol"] == "SecAgg+"
    noise = block["distributed_noise"]
    assert noise["steps_planned"] == central["steps"] and noise["sample_rate"] == central["sample_rate"]
    assert noise["noise_multiplier"] >= central["noise_multiplier"]
    assert res.rounds[-1].epsilon_spent == pytest.approx(3.0, rel=2e-3) and res.rounds[-1].epsilon_spent <= 3.0


def test_robust_strategies_cannot_see_private_updates() -> None:
    with pytest.raises(ConfigError, match="individual updates"):
        _run(strategy="median")


def test_no_privacy_block_says_so() -> None:
    res = _run(privacy={"dp": "none"}, rounds=1)
    assert res.privacy["unit"] == "none" and res.rounds[0].epsilon_spent is None


@pytest.mark.slow
def test_update_proofs_are_made_and_verified_for_every_survivor() -> None:
    res = _run(rounds=1, clients=6, dropout=0.2, proofs="update")
    r = res.rounds[0]
    assert r.proofs is not None
    assert r.proofs["made"] == r.proofs["verified"] == r.survivors and r.proofs["rejected"] == 0
    assert res.zk is not None and res.zk["keys"]["development_only"] is True


def test_proofs_need_member_level_dp() -> None:
    with pytest.raises(ConfigError, match="--dp member"):
        _run(privacy={"dp": "none"}, proofs="update")


@pytest.mark.slow
def test_proof_of_training_proves_and_verifies_every_member_update(tmp_path) -> None:
    cfg = build_config({"dataset": "breast_cancer", "partition": "iid", "clients": 4, "model": "logreg",
                        "rounds": 1, "lr": 0.5, "local_epochs": 2, "proofs": "training"})
    res = Simulation(cfg).run(tmp_path)
    proofs = res.rounds[0].proofs
    assert proofs is not None and proofs["made"] == proofs["verified"] == res.rounds[0].participants == 4
    assert proofs["rejected"] == 0 and res.rounds[0].stages["proofs"] > 0
    assert res.zk is not None and res.zk["keys"]["development_only"]
    assert res.final_accuracy > 0.8


def test_proof_of_training_refuses_models_it_cannot_prove() -> None:
    cfg = build_config({"dataset": "breast_cancer", "clients": 4, "model": "mlp", "proofs": "training"})
    with pytest.raises(ConfigError, match="logreg"):
        Simulation(cfg)
