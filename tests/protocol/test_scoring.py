"""What a validator scores and the settlement derived from the committee's vectors (`fedledger.protocol.scoring`).

The visible-round scores are Shapley values over real signed-update rows with a real held-out utility (a
logistic model on synthetic data), not planted numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.errors import IntegrityError
from fedledger.protocol.incentives import split_pool
from fedledger.protocol.scoring import (
    ScoreRules,
    ScoreVector,
    alignment_scores,
    hidden_scores,
    member_scores,
    score_settlement,
    visible_scores,
)

D = 5


def _task(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D)
    x = rng.normal(size=(400, D))
    return x, (x @ w > 0).astype(np.float64)


def _accuracy(x: np.ndarray, y: np.ndarray):
    def utility(model: torch.Tensor) -> float:
        return float(((x @ model.numpy().astype(np.float64) > 0) == (y > 0)).mean())

    return utility


def _local_update(x: np.ndarray, y: np.ndarray, start: np.ndarray, noise: float,
                  rng: np.random.Generator) -> np.ndarray:
    yy = np.where(rng.random(len(y)) < noise, 1 - y, y)
    w = start.copy()
    for _ in range(30):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * x.T @ (p - yy) / len(yy)
    return w - start


def test_a_zero_update_free_rider_in_a_visible_round_scores_and_earns_zero() -> None:
    x, y = _task()
    rng = np.random.default_rng(1)
    start = np.zeros(D)
    rows = [_local_update(x[i * 80:(i + 1) * 80], y[i * 80:(i + 1) * 80], start, noise, rng)
            for i, noise in enumerate([0.0, 0.1, 0.3])]
    rows.append(np.zeros(D))  # the free rider sends nothing
    deltas = np.stack(rows).astype(np.float32)
    weights = np.full(4, 0.25)
    utility = _accuracy(x[320:], y[320:])
    phi = visible_scores(torch.zeros(D), deltas, weights, utility, np.random.default_rng(2))
    assert phi[3] == 0.0 and phi[:3].sum() > 0
    members = ["a", "b", "c", "free"]
    scores = member_scores(members, members, (), dict(zip(members, phi, strict=True)), dict.fromkeys(members, 80))
    out = score_settlement(90_000, members, {"v1": scores, "v2": scores, "v3": scores},
                           {"v1": 1, "v2": 1, "v3": 1}, ["v1", "v2", "v3"], "agg", ())
    assert "free" not in out.rewards and sum(out.rewards.values()) == 90_000


def test_hidden_rounds_attribute_improvement_to_contributors_by_regression() -> None:
    """Secure rounds: only cohorts and measured improvements; a member present only in rounds that did not
    improve gets the lowest value."""
    members = ["good", "ok", "free"]
    history = [(("good", "ok", "free"), 0.3), (("good", "free"), 0.2), (("ok", "free"), 0.1),
               (("good", "ok"), 0.35), (("free",), 0.0), (("good",), 0.2), (("ok",), 0.1)]
    phi = hidden_scores(history, members)
    assert phi[0] > phi[1] > phi[2]
    assert abs(phi[2]) < 0.05


def test_a_faulty_member_scores_zero() -> None:
    s = member_scores(["a", "b"], ["a", "b"], ["b"], {"a": 0.2, "b": 0.9}, {"a": 1, "b": 1})
    assert s[0] > 0 and s[1] == 0


def test_a_score_vector_blob_is_canonical() -> None:
    v = ScoreVector(1, 2, 1, b"\x01" * 32, "0xab", ("0x01", "0x02"), (0.5, 0.25))
    assert ScoreVector.from_bytes(v.to_bytes()) == v
    raw = v.to_bytes().replace(b'"round": 2', b'"round":  2')
    assert raw != v.to_bytes()
    with pytest.raises(IntegrityError):
        ScoreVector.from_bytes(raw)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**24), st.lists(st.lists(st.floats(-1, 1), min_size=4, max_size=4), min_size=1, max_size=5),
       st.lists(st.integers(1, 10**20), min_size=5, max_size=5), st.lists(st.booleans(), min_size=4, max_size=4))
def test_the_settlement_pays_each_role_at_most_its_part_and_no_faulty_or_zero_member(
        pool: int, rows: list[list[float]], stakes: list[int], faulty_flags: list[bool]) -> None:
    members = ["m0", "m1", "m2", "m3"]
    committee = [f"v{i}" for i in range(5)]
    vectors = {committee[i]: np.array(r) for i, r in enumerate(rows)}
    weights = dict(zip(committee, stakes, strict=True))
    faulty = [m for m, f in zip(members, faulty_flags, strict=True) if f]
    out = score_settlement(pool, members, vectors, weights, committee, "agg", faulty)
    parts = split_pool(pool, dict(ScoreRules().role_parts))
    paid = {role: sum(out.rewards.get(a, 0) for a in names)
            for role, names in (("trainers", members), ("validators", committee), ("aggregator", ["agg"]))}
    assert paid["aggregator"] == parts["aggregator"]  # a finalized round always pays its aggregator its part
    for role in ("trainers", "validators"):  # a role nobody earned leaves its part unpaid, to no other role
        assert paid[role] in (0, parts[role])
    assert sum(out.rewards.values()) <= pool
    assert all(amount >= 0 for amount in out.rewards.values())
    for m in members:
        if m in faulty or out.consensus[m] <= 0:
            assert m not in out.rewards
    for v in committee:
        if v not in vectors:
            assert out.agreement[v] == 0.0 and v not in out.rewards


def test_without_held_out_data_a_free_rider_and_an_update_against_the_step_score_zero() -> None:
    rng = np.random.default_rng(3)
    honest = rng.normal(size=(3, 40)) + 2.0  # a common direction: the round's step
    rows = np.vstack([honest, np.zeros(40), -honest[0]])
    weights = np.array([0.3, 0.2, 0.2, 0.15, 0.15])
    phi = alignment_scores(rows, weights)
    assert phi[3] == 0.0 and phi[4] == 0.0
    assert (phi[:3] > 0).all()
    assert phi[0] > phi[1]  # the same alignment at a larger weight counts more


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-1000, 1000), min_size=6, max_size=6), min_size=1, max_size=6),
       st.floats(0.01, 1.0))
def test_alignment_scores_are_non_negative_bounded_by_the_weight_and_scale_free(
        rows: list[list[int]], scale: float) -> None:
    d = np.array(rows, dtype=np.float64) / 10  # no subnormals: scaling must not underflow a coordinate to 0
    w = np.full(len(rows), 1.0 / len(rows))
    phi = alignment_scores(d, w)
    assert (phi >= 0).all() and (phi <= w + 1e-12).all()
    np.testing.assert_allclose(alignment_scores(d * scale, w), phi, atol=1e-9)
