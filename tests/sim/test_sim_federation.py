"""The simulation: determinism, resume, dropouts, heterogeneity and failure paths."""

from __future__ import annotations

import pytest

from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError, TrainingError
from fedledger.sim import Simulation

QUICK = {"dataset": "digits", "partition": "dirichlet:0.5", "clients": 8, "model": "logreg", "rounds": 3,
         "local_epochs": 1, "lr": 0.1, "batch_size": 16}


def _run(tmp_path=None, **changes):
    cfg = build_config({**QUICK, **changes})
    return Simulation(cfg).run(tmp_path)


def test_same_seed_same_model_other_seed_other_model() -> None:
    a, b, c = _run(seed=1), _run(seed=1), _run(seed=2)
    assert a.final_model_hash == b.final_model_hash
    assert a.final_model_hash != c.final_model_hash


def test_federation_learns() -> None:
    res = _run(rounds=8, model="mlp", local_epochs=2)
    assert res.rounds[-1].accuracy > 0.85
    assert res.rounds[-1].accuracy > res.rounds[0].accuracy


def test_stop_and_resume_gives_the_uninterrupted_model(tmp_path) -> None:
    whole = _run(rounds=5, strategy="fedadam")
    _run(tmp_path, rounds=2, strategy="fedadam")
    resumed = _run(tmp_path, rounds=5, strategy="fedadam")
    assert resumed.resumed_from == 2
    assert [r.round for r in resumed.rounds] == [1, 2, 3, 4, 5]
    assert resumed.final_model_hash == whole.final_model_hash


def test_resume_refuses_another_configuration(tmp_path) -> None:
    _run(tmp_path, rounds=1)
    with pytest.raises(ConfigError, match="different configuration"):
        _run(tmp_path, rounds=2, lr=0.2)


def test_dropouts_and_sampling_are_counted() -> None:
    res = _run(rounds=6, clients=10, fraction=0.5, dropout=0.4)
    for r in res.rounds:
        assert r.participants + r.dropped == 5
        assert r.bytes_down == 5 * r.bytes_up // max(1, r.participants) if r.participants else True
    assert sum(r.dropped for r in res.rounds) > 0


def test_heterogeneous_budgets_with_fednova_still_learn() -> None:
    res = _run(rounds=6, model="mlp", heterogeneity=0.9, strategy="fednova", local_epochs=2)
    assert res.final_accuracy > 0.8


def test_nan_loss_names_member_and_round() -> None:
    with pytest.raises(TrainingError, match=r"member .+ non-finite loss in round 1"):
        _run(lr=1e30, model="mlp")


def test_baseline_reports_ratio() -> None:
    res = _run(rounds=4, model="mlp", baseline=True, partition="iid")
    assert res.centralized_accuracy is not None and res.centralized_accuracy > 0.8
    assert res.accuracy_ratio == pytest.approx(res.final_accuracy / res.centralized_accuracy)
