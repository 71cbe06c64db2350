"""Role messages and the settlement rule: round trips, refusals, and the arithmetic of rewards and reputation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.protocol.evidence import Evidence, Settlement
from fedledger.protocol.incentives import DEFAULT_SCORE, MAX_SCORE, next_reputation, reward_shares
from fedledger.protocol.messages import MessageError, UpdateMessage
from fedledger.protocol.transport import Envelope, InProcessTransport

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@given(st.lists(finite, min_size=0, max_size=64), st.integers(0, 2**31), st.integers(0, 50), finite)
def test_update_messages_round_trip_exactly(values: list[float], member: int, attempt: int, loss: float) -> None:
    msg = UpdateMessage(7, 3, attempt, member, 120, 15.0, float(loss), np.array(values, dtype=np.float32))
    back = UpdateMessage.from_bytes(msg.to_bytes())
    assert (back.task_id, back.round_id, back.attempt, back.member) == (7, 3, attempt, member)
    assert back.train_loss == pytest.approx(float(loss)) and back.normalizer == 15.0
    assert np.array_equal(back.update, msg.update)


def test_truncated_padded_or_foreign_messages_are_refused() -> None:
    wire = UpdateMessage(1, 1, 0, 2, 10, 1.0, 0.5, np.arange(8, dtype=np.float32)).to_bytes()
    for bad in (wire[:-1], wire + b"\0", b"\x02" + wire[1:], b"", wire[:3]):
        with pytest.raises(MessageError):
            UpdateMessage.from_bytes(bad)
    foreign = wire.replace(b'"kind": "update"', b'"kind": "votes!"')
    with pytest.raises(MessageError, match="kind"):
        UpdateMessage.from_bytes(foreign)


def test_messages_cross_the_transport_as_bytes_and_are_counted() -> None:
    t = InProcessTransport()
    t.register("trainer")
    t.register("aggregator")
    msg = UpdateMessage(1, 1, 0, 0, 10, 1.0, 0.5, np.ones(100, dtype=np.float32))
    t.send(Envelope("trainer", "aggregator", "update", msg.to_bytes()))
    got = t.receive("aggregator")
    assert got is not None and np.array_equal(UpdateMessage.from_bytes(got.payload).update, msg.update)
    assert t.bytes_sent["trainer"] == t.bytes_received["aggregator"] > 400


addresses = st.lists(st.sampled_from([f"0x{i:040x}" for i in range(12)]), unique=True, max_size=12)


@given(st.integers(0, 10**24), addresses, addresses)
def test_rewards_never_exceed_the_pool_and_skip_the_faulty(pool: int, contributors: list[str],
                                                           faulty: list[str]) -> None:
    shares = reward_shares(pool, contributors, faulty)
    assert sum(shares.values()) <= pool
    assert set(shares) == set(contributors) - set(faulty)
    assert len(set(shares.values())) <= 1  # equal shares
    if shares:
        assert pool - sum(shares.values()) < len(shares)  # only the rounding remainder is left


@given(st.dictionaries(st.sampled_from([f"0x{i:040x}" for i in range(12)]), st.integers(0, MAX_SCORE)),
       addresses, addresses, addresses)
def test_reputation_moves_each_cohort_member_the_right_way(previous: dict[str, int], cohort: list[str],
                                                           contributors: list[str], faulty: list[str]) -> None:
    contributors = [c for c in contributors if c in cohort]
    after = next_reputation(previous, cohort, contributors, faulty)
    assert all(0 <= s <= MAX_SCORE for s in after.values())
    for member in set(previous) - set(cohort):
        assert after[member] == previous[member]  # members outside the round are untouched
    for member in cohort:
        before = previous.get(member, DEFAULT_SCORE)
        if member in faulty:
            assert after[member] <= before
        elif member in contributors:
            assert after[member] >= before
        else:
            assert after[member] <= before


def test_a_settlement_survives_the_evidence_blob() -> None:
    s = Settlement(("0xa",), ("0xb",), {"0xa": 10**20}, {"0xa": 5_500, "0xb": 2_500})
    ev = Evidence(b"\x01" * 32, None, None, s)
    assert Evidence.from_bytes(ev.to_bytes()).settlement == s
