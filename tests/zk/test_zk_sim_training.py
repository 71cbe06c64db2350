"""Proof of training in the simulation: breast_cancer, logreg, every member proves every round."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.config import build_config
from fedledger.core.errors import ConfigError
from fedledger.data.federate import load_federated
from fedledger.models import build_model, get_flat
from fedledger.sim.training_proofs import TrainingProofs, check_config
from fedledger.zk import InvalidProof
from fedledger.zk.training import train_float

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

LR, EPOCHS, CAP = 0.5, 2, 16


@pytest.fixture(scope="module")
def data():
    return load_federated("breast_cancer", "iid", 10, seed=0)


def _proofs(backend, **kw) -> TrainingProofs:
    args = dict(features=30, classes=2, lr=LR, epochs=EPOCHS, capacity=CAP, task="test/bc", seed=3, backend=backend)
    args.update(kw)
    return TrainingProofs(**args)


def _rows(data, members):
    return [(torch.from_numpy(data.members[i].train.X), torch.from_numpy(data.members[i].train.y)) for i in members]


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        ({"model": "mlp"}, "--model logreg"),
        ({"privacy": {"dp": "member", "secagg": True}}, "--dp none"),
        ({"optimizer": "adam"}, "--optimizer sgd"),
        ({"momentum": 0.9}, "momentum 0"),
        ({"local_epochs": 1.5}, "integer --local-epochs"),
        ({"local_steps": 3}, "no --local-steps"),
        ({"heterogeneity": 0.5}, "--heterogeneity 0"),
    ],
)
def test_other_models_dp_and_optimizers_are_refused_with_what_to_use(changes, hint) -> None:
    base = {"proofs": "training", "model": "logreg", "dataset": "breast_cancer", "local_epochs": 2}
    check_config(build_config(base))  # the plain case is accepted
    with pytest.raises(ConfigError, match=hint):
        check_config(build_config({**base, **changes}))


def test_two_logit_model_is_logistic_regression_of_the_difference(backend, data) -> None:
    """The mapping the binary circuit relies on: GD on two logits == logistic GD of W1 - W0 at 2 lr."""
    tp = _proofs(backend)
    model = build_model("logreg", data.input_shape, data.num_classes, seed=1)
    g = get_flat(model)
    X = torch.from_numpy(data.members[0].train.X)
    y = torch.from_numpy(data.members[0].train.y)
    w = g[:60].reshape(2, 30).clone().requires_grad_(True)
    b = g[60:].clone().requires_grad_(True)
    for _ in range(3):  # float full-batch GD with the exact softmax, the simulation's model
        loss = torch.nn.functional.cross_entropy(X @ w.T + b, y)
        gw, gb = torch.autograd.grad(loss, (w, b))
        w, b = (w - LR * gw).detach().requires_grad_(True), (b - LR * gb).detach().requires_grad_(True)
    sim_delta = torch.cat([w.detach().reshape(-1), b.detach()]) - g
    v0 = np.concatenate([(g[30:60] - g[:30]).numpy(), [(g[61] - g[60]).item()]]).astype(np.float64)
    v = train_float(v0, X.numpy(), y.numpy(), 2 * LR, 3)
    mapped = tp.to_sim_delta((v - v0) * (1 << tp.frac))
    assert np.allclose(mapped, sim_delta.numpy(), atol=1e-5)
    # and the start model is the fixed-point image of the same difference
    assert np.array_equal(tp.start_model(g), np.rint(v0 * 256).astype(np.int64))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), rnd=st.integers(0, 1000), who=st.integers(0, 50))
def test_shards_cover_rows_and_the_round_draws_one(backend, n, rnd, who) -> None:
    tp = _proofs(backend)
    shards = tp.shards(n)
    assert np.array_equal(np.concatenate(shards), np.arange(n))
    assert all(1 <= len(s) <= CAP for s in shards) and len(shards) == -(-n // CAP)
    j = tp.shard_index(rnd, f"m{who}", len(shards))
    assert 0 <= j < len(shards) and j == tp.shard_index(rnd, f"m{who}", len(shards))


def test_shard_draw_is_uniform_over_rounds(backend) -> None:
    tp = _proofs(backend)
    counts = np.bincount([tp.shard_index(r, "m", 3) for r in range(3000)], minlength=3)
    assert np.all(np.abs(counts - 1000) < 120)  # each row trained on with probability 1/3 per round


def test_member_outside_the_data_policy_is_refused(backend, data) -> None:
    tp = _proofs(backend)
    X = data.members[0].train.X.copy()
    assert tp.commit_data("ok", X, data.members[0].train.y) is not None
    X[3, 7] = 40.0  # beyond the declared feature range [-32, 32)
    assert tp.commit_data("bad", X, data.members[0].train.y) is None
    assert "outside the declared range" in tp.refused["bad"]
    y = data.members[0].train.y.copy()
    y[0] = 5
    assert tp.commit_data("bad-label", data.members[0].train.X, y) is None
    assert "label" in tp.refused["bad-label"]


@pytest.mark.slow
def test_breast_cancer_ten_members_two_rounds(backend, data) -> None:
    members = list(range(10))
    names = [m.name for m in data.members]
    rows = _rows(data, members)
    model = build_model("logreg", data.input_shape, data.num_classes, seed=0)
    g = get_flat(model)
    with _proofs(backend, workers=2) as tp:
        for rnd in (1, 2):
            res = tp.round(rnd, g, members, rows, names)
            assert res.stats.to_json()["made"] == 10 and res.stats.verified == 10 and res.stats.rejected == 0
            assert list(res.members) == members
            w0 = tp.start_model(g)
            for i, m in enumerate(members):
                # the validated delta is the fixed-point reference on the round's shard
                X, y = rows[i]
                shard = tp.shards(len(y))[tp.shard_index(rnd, names[m], len(tp.shards(len(y))))]
                ref = tp.reference_update(w0, X[shard], y[shard])
                assert torch.equal(res.deltas[i], torch.tensor(tp.to_sim_delta(ref), dtype=torch.float32))
                assert res.rows[i] == len(shard)
            assert len(tp.commitments) == 10 and all(len(c.roots) == 3 for c in tp.commitments.values())
            weights = torch.tensor(res.rows / res.rows.sum(), dtype=torch.float32)
            g = g + weights @ res.deltas
        assert res.local_result().deltas.shape == (10, 62)

        # cheating members: a valid proof at another learning rate, or trained on other rows
        rnd, w0 = 3, tp.start_model(g)
        X1, y1 = rows[1]
        s1 = tp.shards(len(y1))[tp.shard_index(rnd, names[1], 3)]
        lr_cheat = tp.claim(rnd, w0, names[1], X1, y1, lr_fp=tp.lr_fp * 2)
        other = (rows[5][0], rows[5][1])  # member 5's rows, not its own committed ones
        data_cheat = tp.claim(rnd, w0, names[2], *other)
        with pytest.raises(InvalidProof):
            tp.verify(rnd, w0, lr_cheat)
        with pytest.raises(InvalidProof):
            tp.verify(rnd, w0, data_cheat)
        honest = tp.claim(rnd, w0, names[1], X1, y1)
        tp.verify(rnd, w0, honest)
        assert np.array_equal(honest.update, tp.reference_update(w0, X1[s1], y1[s1]))
        with pytest.raises(InvalidProof):  # a proof replayed in another round does not verify
            tp.verify(rnd + 1, w0, honest)
        res = tp.round(rnd, g, [0, 1, 2], rows[:3], names[:3], claims={1: lr_cheat, 2: data_cheat})
        assert res.stats.verified == 1 and res.stats.rejected == 2
        assert sorted(res.stats.rejected_members) == sorted([names[1], names[2]])
        assert list(res.members) == [0] and res.deltas.shape == (1, 62)


def test_data_quality_proofs_at_join_cover_every_shard(backend) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(0, 1, (12, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    tp = TrainingProofs(features=3, classes=2, lr=0.5, epochs=1, capacity=8, backend=backend, data_quality="prove")
    c = tp.commit_data("m", X, y)
    assert c is not None and len(c.roots) == 2 and len(c.quality_proofs) == 2
    assert [p.root for p in c.quality_proofs] == list(c.roots)  # the roots training proofs open
    assert tp.commit_data("m", X[:3], y[:3]) is c  # committed once: later rows do not replace it


def test_softmax_layout_round_trips_and_matches_float_gd(backend) -> None:
    """C > 2: the zk layout [W[c], b[c]] row by row maps to and from the simulation's W[C, F], b[C]."""
    from fedledger.zk.training import train_float_softmax

    tp = TrainingProofs(features=4, classes=3, lr=0.3, epochs=2, capacity=16, backend=backend)
    model = build_model("logreg", (4,), 3, seed=2)
    g = get_flat(model)
    rng = np.random.default_rng(5)
    X = torch.tensor(rng.normal(0, 1, (20, 4)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, 20))
    w, b = g[:12].reshape(3, 4).clone().requires_grad_(True), g[12:].clone().requires_grad_(True)
    for _ in range(2):
        gw, gb = torch.autograd.grad(torch.nn.functional.cross_entropy(X @ w.T + b, y), (w, b))
        w, b = (w - 0.3 * gw).detach().requires_grad_(True), (b - 0.3 * gb).detach().requires_grad_(True)
    sim_delta = torch.cat([w.detach().reshape(-1), b.detach()]) - g
    z0 = np.concatenate([g[:12].reshape(3, 4).numpy(), g[12:].numpy()[:, None]], 1).reshape(-1).astype(np.float64)
    z = train_float_softmax(z0, X.numpy(), y.numpy(), 0.3, 2, 3)
    assert np.allclose(tp.to_sim_delta((z - z0) * (1 << tp.frac)), sim_delta.numpy(), atol=1e-5)
    assert np.array_equal(tp.start_model(g), np.rint(z0 * 256).astype(np.int64))
    assert tp.lr_fp == round(0.3 * 256) and tp.spec.model == "softmax"
