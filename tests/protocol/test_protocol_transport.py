from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.protocol.transport import Envelope, InProcessTransport, TransportError

names = st.text(min_size=1, max_size=20)


@given(names, names, names, st.binary(max_size=300))
def test_envelope_roundtrip(sender: str, recipient: str, topic: str, payload: bytes) -> None:
    env = Envelope(sender, recipient, topic, payload)
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_trailing_or_truncated_bytes_are_rejected() -> None:
    wire = Envelope("a", "b", "t", b"payload").to_bytes()
    with pytest.raises(TransportError):
        Envelope.from_bytes(wire + b"x")
    with pytest.raises(TransportError):
        Envelope.from_bytes(wire[:-1])
    with pytest.raises(TransportError, match="version"):
        Envelope.from_bytes(b"\x09" + wire[1:])


def test_inprocess_delivery_order_and_byte_accounting() -> None:
    t = InProcessTransport()
    for a in ("trainer-1", "aggregator"):
        t.register(a)
    t.send(Envelope("trainer-1", "aggregator", "masked", b"x" * 100))
    t.send(Envelope("trainer-1", "aggregator", "masked", b"y" * 10))
    got = t.drain("aggregator")
    assert [e.payload[:1] for e in got] == [b"x", b"y"]
    assert t.bytes_sent["trainer-1"] == t.bytes_received["aggregator"] > 110
    assert t.receive("aggregator") is None
    with pytest.raises(TransportError, match="no such address"):
        t.send(Envelope("trainer-1", "nobody", "masked", b""))
