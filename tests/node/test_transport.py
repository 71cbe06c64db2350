"""The network transport between real nodes: gRPC servers on loopback, mutual TLS, the registry on anvil."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from conftest import FAST, Net, raw_channel, raw_metadata

from fedledger.node import Backpressure, PeerRefused, RetryPolicy
from fedledger.node.transport import DELIVER
from fedledger.protocol.transport import Envelope, TransportError


def test_message_round_trip(net: Net) -> None:
    a, b = net.node(), net.node()
    a.send(Envelope(a.address, b.address, "hello", b"ping from a"))
    got = b.receive(b.address, timeout=5)
    assert got == Envelope(a.address, b.address, "hello", b"ping from a")
    b.send(Envelope(b.address, a.address, "reply", b"pong"))
    assert a.receive(a.address, timeout=5) == Envelope(b.address, a.address, "reply", b"pong")
    wire = len(got.to_bytes())
    assert a.bytes_sent[a.address] >= wire and b.bytes_received[b.address] == wire
    assert b.receive(b.address) is None
    assert 0 < a.ping(b.address) < 2 and a.alive(b.address, within=5)
