"""Score-weighted rewards, per-role reputation and Yuma-style validator consensus (protocol/incentives.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.core.errors import ConfigError
from fedledger.protocol.incentives import (
    DEFAULT_SCORE,
    MAX_SCORE,
    PENALTIES,
    ROLE_EVENTS,
    Event,
    Role,
    apply_events,
    reputation_after,
    reward_shares_by_score,
    score_consensus,
    split_pool,
    stake_weighted_quantile,
)

FAST = settings(max_examples=60, deadline=None)
scores_st = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3),
                            st.floats(-5, 1e6, allow_nan=False, allow_infinity=False), max_size=12)


@FAST
@given(st.integers(0, 10**24), scores_st)
def test_rewards_conserve_tokens_and_skip_free_riders(pool, scores):
    shares = reward_shares_by_score(pool, scores)
    positive = {m for m, s in scores.items() if s > 0}
    assert set(shares) <= positive
    assert all(v >= 0 for v in shares.values())
    if positive and pool > 0:
        assert sum(shares.values()) == pool
    else:
        assert shares == {}
    total = sum(scores[m] for m in positive)
    for m, v in shares.items():  # largest remainder: within one unit of the exact quota
        assert abs(v - pool * scores[m] / total) <= 1 + 1e-6 * pool


@FAST
@given(st.integers(1, 10**9), scores_st, st.data())
def test_faulty_members_get_nothing(pool, scores, data):
    faulty = data.draw(st.sets(st.sampled_from(sorted(scores)) if scores else st.nothing()))
    shares = reward_shares_by_score(pool, scores, faulty)
    assert not set(shares) & faulty and sum(shares.values()) <= pool


def test_remainder_rule_is_documented_order():
    assert reward_shares_by_score(10, {"b": 1.0, "a": 1.0, "c": 1.0}) == {"a": 4, "b": 3, "c": 3}
    assert reward_shares_by_score(7, {"x": 2.0, "y": 1.0, "free": 0.0, "bad": -3.0}) == {"x": 5, "y": 2}
    with pytest.raises(ConfigError):
        reward_shares_by_score(-1, {"a": 1.0})
    with pytest.raises(ConfigError):
        reward_shares_by_score(1.5, {"a": 1.0})  # type: ignore[arg-type]


def test_split_pool_conserves():
    assert split_pool(1001, {"trainers": 80, "aggregator": 10, "validators": 10}) == \
        {"trainers": 801, "aggregator": 100, "validators": 100}
    assert split_pool(5, {"a": 0, "b": 1}) == {"a": 0, "b": 5}


events_st = st.sampled_from([(r, e) for r in Role for e in ROLE_EVENTS[r]])


@FAST
@given(st.integers(-100, MAX_SCORE + 100), events_st, st.floats(0, 1))
def test_reputation_bounded_and_moves_in_documented_direction(score, role_event, strength):
    role, event = role_event
    new = reputation_after(score, role, event, strength)
    s = max(0, min(MAX_SCORE, score))
    assert 0 <= new <= MAX_SCORE
    if event in PENALTIES:
        assert new <= s
    else:  # useful work and consensus votes move toward strength * MAX_SCORE and never past it
        target = strength * MAX_SCORE
        assert min(s, target) - 1 <= new <= max(s, target) + 1


def test_reputation_examples():
    assert reputation_after(5000, Role.TRAINER, Event.USEFUL_WORK, 1.0) == 5500
    assert reputation_after(5000, Role.TRAINER, Event.USEFUL_WORK, 0.0) == 4500  # zero update: down
    assert reputation_after(5000, Role.VALIDATOR, Event.CONSENSUS_VOTE, 1.0) == 5500
    assert reputation_after(5000, Role.VALIDATOR, Event.CONSENSUS_VOTE, 0.3) == 4800  # random scores: down
    assert reputation_after(5000, Role.VALIDATOR, Event.VOTE_AGAINST_EVIDENCE) == 2500
    assert reputation_after(5000, Role.AGGREGATOR, Event.SLASH) == 500
    assert reputation_after(5000, Role.TRAINER, Event.DROPOUT) == 4750
    with pytest.raises(ConfigError):
        reputation_after(5000, Role.TRAINER, Event.CONSENSUS_VOTE)
    with pytest.raises(ConfigError):
        reputation_after(5000, Role.TRAINER, Event.USEFUL_WORK, 1.5)


def test_apply_events_in_order_from_default():
    out = apply_events({"a": 9000}, Role.VALIDATOR,
                       [("a", Event.VOTE_AGAINST_EVIDENCE, 1.0), ("b", Event.CONSENSUS_VOTE, 0.5)])
    assert out == {"a": 4500, "b": DEFAULT_SCORE}


def test_weighted_quantile_is_the_stake_weighted_median():
    x = np.array([[1.0], [2.0], [3.0], [100.0]])
    assert stake_weighted_quantile(x, np.array([1.0, 1.0, 1.0, 1.0]))[0] == 2.0
    assert stake_weighted_quantile(x, np.array([1.0, 1.0, 1.0, 10.0]))[0] == 100.0  # majority stake decides
    with pytest.raises(ConfigError):
        stake_weighted_quantile(x, np.zeros(4))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 12), st.integers(4, 9))
def test_copied_and_outlier_vectors_get_low_agreement(seed, items, honest):
    """Honest validators measure the truth with small noise; a lazy one copies a stale vector (another round's,
    over other groups), a dishonest one scores at random, another inflates one item: all three agree less than
    every honest validator, and none of them (less than half the stake) moves the consensus out of the honest
    range."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-1, 3, items)
    stale = rng.uniform(-1, 3, items)
    rows = [truth + 0.05 * rng.normal(size=items) for _ in range(honest)]
    inflated = truth.copy()
    inflated[0] += 20
    rows += [stale, rng.uniform(-1, 3, items), inflated]
    w = np.array(rows)
    stake = np.ones(len(rows))
    out = score_consensus(w, stake)
    assert out.agreement[honest:].max() < out.agreement[:honest].min()
    lo, hi = w[:honest].min(axis=0), w[:honest].max(axis=0)
    assert ((out.consensus >= lo) & (out.consensus <= hi)).all()
    assert out.clipped[-1, 0] <= out.consensus[0]  # the inflated score is cut to the consensus
    assert ((out.agreement >= 0) & (out.agreement <= 1)).all()


def test_agreement_is_yuma_trust_for_normalized_rows():
    w = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    out = score_consensus(w, np.ones(4))
    assert np.allclose(out.agreement, np.minimum(w, out.consensus).sum(axis=1))
    assert score_consensus(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([1.0, 1.0])).agreement[0] == 0.0
