"""The central DP baselines (issue 17, item 1): with --baseline a DP run also trains the central model under
the same privacy unit, epsilon, delta, steps and accountant, and reports three numbers."""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pytest
import torch

from fedledger.core.config import build_config
from fedledger.privacy.baseline import clip_rows
from fedledger.sim import Simulation


def _run(dp: str, clients: int, epsilon: float = 3.0) -> dict:
    cfg = build_config(dict(dataset="digits", model="logreg", clients=clients, rounds=2, max_samples=600,
                            baseline=True, privacy=dict(dp=dp, epsilon=epsilon)))
    return Simulation(cfg).run().to_json()


def _reference_epsilon(event: dpa.DpEvent, delta: float) -> float:
    acc = dpa.rdp.RdpAccountant()
    acc.compose(event)
    return float(acc.get_epsilon(delta))


@pytest.mark.slow
def test_record_level_central_dpsgd_spends_the_runs_epsilon_by_the_same_accountant() -> None:
    out = _run("record", 3)
    central, spent = out["central_dp"], out["privacy"]["epsilon_spent"]
    assert central["unit"] == "record" and central["delta"] == out["privacy"]["delta"] == 1e-5
    # both sides calibrated to the budget by the same accountant: equal to its 0.1% calibration tolerance
    assert central["epsilon"] == pytest.approx(spent, rel=2e-3) and central["epsilon"] <= 3.0 + 1e-9
    # and the figure is dp-accounting's for the steps the central model actually took
    q, steps, sigma = central["sample_rate"], central["steps"], central["noise_multiplier"]
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    assert central["epsilon"] == pytest.approx(_reference_epsilon(event, 1e-5), rel=1e-9)
    # one central step sees the batch of all members of a round, for as many rounds as the run
    assert central["batch_size"] == 3 * out["config"]["batch_size"] and steps >= out["config"]["rounds"]
    # three numbers
    assert {"centralized_accuracy", "central_dp_accuracy", "final_accuracy"} <= set(out)
    assert out["central_dp_ratio"] == pytest.approx(out["final_accuracy"] / out["central_dp_accuracy"])


@pytest.mark.slow
def test_member_level_central_dp_spends_the_runs_epsilon_by_the_same_accountant() -> None:
    out = _run("member", 10)
    central, spent = out["central_dp"], out["privacy"]["epsilon_spent"]
    plan = out["privacy"]["parameters"]
    assert central["unit"] == "member" and central["members"] == 10 and central["steps"] == 2
    assert central["epsilon"] == pytest.approx(spent, rel=2e-3) and central["epsilon"] <= 3.0 + 1e-9
    event = dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(central["noise_multiplier"]), central["steps"])
    assert central["epsilon"] == pytest.approx(_reference_epsilon(event, 1e-5), rel=1e-9)
    # the trusted server's continuous Gaussian is never noisier than the distributed discrete one it stands for
    assert central["noise_multiplier"] <= plan["noise_multiplier"] * (1 + 1e-6)


def test_clip_rows_bounds_every_row_and_keeps_short_ones() -> None:
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clipped = clip_rows(rows, 1.0)
    assert torch.allclose(clipped.norm(dim=1), torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(clipped[0], torch.tensor([0.6, 0.8])) and torch.equal(clipped[1], rows[1])
    assert np.isfinite(clipped.numpy()).all()
