"""Record-level DP-SGD: trains, accounts per member, stops at the member's budget."""

from __future__ import annotations

import dp_accounting as dpa
import pytest
import torch
from torch import nn

from fedledger.core.errors import PrivacyBudgetExceeded, TrainingError
from fedledger.privacy import MemberAccountant, calibrate_noise, dpsgd_schedule, train_member_dpsgd


def _data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    return X, y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.slow
def test_trains_and_reports_the_member_epsilon() -> None:
    X, y = _data()
    model = _model()
    before = (model(X).argmax(1) == y).float().mean()
    acc = MemberAccountant()
    trained, eps = train_member_dpsgd(model, X, y, epochs=4, batch_size=40, lr=0.5, noise_multiplier=0.8,
                                      max_grad_norm=1.0, generator=torch.Generator().manual_seed(1),
                                      accountant_state=acc, delta=1e-5)
    after = (trained(X).argmax(1) == y).float().mean()
    assert after > max(0.8, float(before))
    q, steps = dpsgd_schedule(400, 40, 4)
    assert acc.history == [(0.8, q, steps)]
    ref = dpa.rdp.RdpAccountant()
    ref.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(0.8)), steps))
    assert eps == pytest.approx(ref.get_epsilon(1e-5))
    # the caller's model is untouched and the result is a plain module (no Opacus hooks)
    assert type(trained) is nn.Sequential
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in trained.parameters())
    # a second round adds to the same member ledger
    _, eps2 = train_member_dpsgd(trained, X, y, epochs=1, batch_size=40, lr=0.5, noise_multiplier=0.8,
                                 max_grad_norm=1.0, generator=torch.Generator().manual_seed(2),
                                 accountant_state=acc, delta=1e-5)
    assert eps2 > eps


@pytest.mark.slow
def test_member_stops_once_its_budget_is_spent() -> None:
    X, y = _data()
    q, steps = dpsgd_schedule(len(X), 40, 2)
    sigma = calibrate_noise(2.0, 1e-5, q, 3 * steps)  # budget covers 3 rounds of 2 epochs
    acc = MemberAccountant()
    model = _model()
    rounds = 0
    with pytest.raises(PrivacyBudgetExceeded):
        for _ in range(10):
            model, eps = train_member_dpsgd(model, X, y, epochs=2, batch_size=40, lr=0.3, noise_multiplier=sigma,
                                            max_grad_norm=1.0, generator=torch.Generator().manual_seed(rounds),
                                            accountant_state=acc, delta=1e-5, epsilon_budget=2.0)
            assert eps <= 2.0
            rounds += 1
    assert rounds == 3
    assert acc.steps == 3 * steps  # the refused round spent nothing


def test_same_generator_gives_the_same_model() -> None:
    X, y = _data()
    out = []
    for _ in range(2):
        m, _ = train_member_dpsgd(_model(), X, y, epochs=1, batch_size=50, lr=0.2, noise_multiplier=1.0,
                                  max_grad_norm=1.0, generator=torch.Generator().manual_seed(5),
                                  accountant_state=MemberAccountant(), delta=1e-5)
        out.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(out[0], out[1])


def test_batchnorm_models_are_refused() -> None:
    X, y = _data(64)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with pytest.raises(TrainingError, match="GroupNorm"):
        train_member_dpsgd(model, X, y, epochs=1, batch_size=16, lr=0.1, noise_multiplier=1.0, max_grad_norm=1.0,
                           generator=torch.Generator().manual_seed(0), accountant_state=MemberAccountant(),
                           delta=1e-5)


def test_tiny_member_survives_empty_poisson_batches() -> None:
    # q = 0.1 over 10 records: about a third of the 30 Poisson batches are empty
    X, y = _data(10)
    acc = MemberAccountant()
    model, eps = train_member_dpsgd(nn.Linear(6, 2), X, y, epochs=3, batch_size=1, lr=0.1, noise_multiplier=1.0,
                                    max_grad_norm=1.0, generator=torch.Generator().manual_seed(0),
                                    accountant_state=acc, delta=1e-5)
    assert acc.steps == 30 and eps > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
