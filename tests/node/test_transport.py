"""The network transport between real nodes: gRPC servers on loopback, mutual TLS, the registry on anvil."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest
from node_net import Net, raw_channel, raw_metadata

from fedledger.node import Backpressure, NodeIdentity, PeerRefused, RetryPolicy
from fedledger.node.transport import DELIVER, MiB
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


def test_a_node_whose_certificate_is_not_the_one_on_chain_is_refused(net: Net) -> None:
    a = net.node()
    m = net.member()
    # m publishes its own certificate's fingerprint, but the node at its endpoint presents another one
    # (a hijacked endpoint, or a key swapped without telling the chain)
    c = net.node(m, identity=NodeIdentity.generate(m.address))
    with pytest.raises(PeerRefused, match="chain pins"):
        a.send(Envelope(a.address, c.address, "t", b"meant for m only"))
    assert c.receive(c.address, timeout=0.2) is None
    # nor does a's server accept it as a client: its TLS handshake fails until it gives up
    with pytest.raises(TransportError):
        c.send(Envelope(c.address, a.address, "t", b"from the impostor"))
    # not even by a raw call that skips every check on the impostor's side
    with pytest.raises(grpc.RpcError) as e:
        raw_channel(c.identity, a).unary_unary(DELIVER)(
            Envelope(c.address, a.address, "t", b"raw").to_bytes(), metadata=raw_metadata(c.address), timeout=3
        )
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # refused in the TLS handshake
    assert a.receive(a.address, timeout=0.2) is None


def test_a_peer_claiming_another_members_address_is_refused(net: Net) -> None:
    a, b, m = net.node(), net.node(), net.node()
    m.ping(b.address)  # m is a member in good standing: its own certificate passes b's TLS
    forged = Envelope(a.address, b.address, "vote", b"a's vote, forged by m").to_bytes()
    with pytest.raises(grpc.RpcError) as e:
        raw_channel(m.identity, b).unary_unary(DELIVER)(forged, metadata=raw_metadata(a.address), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "chain pins" in (e.value.details() or "")
    assert b.receive(b.address, timeout=0.2) is None
    assert b.refused and b.refused[-1][0] == a.address


def test_an_envelope_whose_sender_is_not_the_authenticated_peer_is_refused(net: Net) -> None:
    a, b, m = net.node(), net.node(), net.node()
    m.ping(b.address)  # m's own certificate passes b's TLS
    forged = Envelope(a.address, b.address, "vote", b"a's vote, forged by m").to_bytes()
    with pytest.raises(grpc.RpcError) as e:
        raw_channel(m.identity, b).unary_unary(DELIVER)(forged, metadata=raw_metadata(m.address), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert b.receive(b.address, timeout=0.2) is None
    # the transport itself never sends as anyone but its member
    with pytest.raises(TransportError, match="sends as"):
        m.send(Envelope(a.address, b.address, "vote", b"forged"))
    # and the same envelope from its real sender goes through
    a.send(Envelope(a.address, b.address, "vote", b"a's vote"))
    assert b.receive(b.address, timeout=5) == Envelope(a.address, b.address, "vote", b"a's vote")


def test_a_retried_delivery_is_queued_once(net: Net) -> None:
    a, b = net.node(), net.node()
    a.ping(b.address)
    wire = Envelope(a.address, b.address, "t", b"once").to_bytes()
    call = raw_channel(a.identity, b).unary_unary(DELIVER)
    for _ in range(3):
        call(wire, metadata=raw_metadata(a.address, "same-id"), timeout=5)
    assert [e.payload for e in b.drain(b.address)] == [b"once"]


def test_a_payload_over_grpcs_message_limit_streams(net: Net) -> None:
    a, b = net.node(), net.node()
    payload = random.Random(1).randbytes(9 * MiB + 17)
    # one gRPC message this big is refused by the server's limit ...
    a.ping(b.address)
    big = Envelope(a.address, b.address, "model", payload).to_bytes()
    with pytest.raises(grpc.RpcError) as e:
        raw_channel(a.identity, b).unary_unary(DELIVER)(big, metadata=raw_metadata(a.address), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert b.receive(b.address, timeout=0.2) is None
    # ... so the transport streams it in chunks
    a.send(Envelope(a.address, b.address, "model", payload))
    got = b.receive(b.address, timeout=30)
    assert got is not None and got.payload == payload and got.topic == "model"


def test_a_full_inbox_pushes_back_and_the_sender_backs_off(net: Net) -> None:
    b = net.node(inbox_items=2)
    a = net.node()
    a.ping(b.address)  # first contact (b pins a's certificate) before the budget below is timed
    a.retry = RetryPolicy(attempts=100, base=0.02, cap=0.1, total=1.0, rpc_timeout=1.0)
    for i in range(2):
        a.send(Envelope(a.address, b.address, "t", bytes([i])))
    t0 = time.monotonic()
    with pytest.raises(Backpressure):
        a.send(Envelope(a.address, b.address, "t", b"no room"))
    assert time.monotonic() - t0 >= 0.9  # it backed off for its whole budget, it did not fail at once
    # when b's reader catches up, a backing-off send gets through, in order
    a.retry = RetryPolicy(attempts=100, base=0.02, cap=0.1, total=10.0, rpc_timeout=2.0)
    got: list[bytes] = []

    def reader() -> None:
        time.sleep(0.5)
        for _ in range(3):
            env = b.receive(b.address, timeout=10)
            assert env is not None
            got.append(env.payload)

    r = threading.Thread(target=reader)
    r.start()
    a.send(Envelope(a.address, b.address, "t", b"later"))
    r.join(15)
    assert got == [b"\x00", b"\x01", b"later"]


@pytest.mark.parametrize("same_port", [True, False], ids=["same-port", "new-port"])
def test_a_send_retries_until_the_recipient_restarts(net: Net, same_port: bool) -> None:
    a = net.node()
    mb = net.member()
    b = net.node(mb)
    a.send(Envelope(a.address, b.address, "t", b"before"))
    assert b.receive(b.address, timeout=5) is not None
    port = b.port
    b.stop(0)
    restarted = []

    def restart() -> None:
        time.sleep(0.6)
        if same_port:
            restarted.append(net.node(mb, listen=f"127.0.0.1:{port}", publish=False))
        else:  # moved: the new endpoint is published and found on the next attempt
            restarted.append(net.node(mb))

    r = threading.Thread(target=restart)
    r.start()
    a.send(Envelope(a.address, mb.address, "t", b"after"))
    r.join()
    got = restarted[0].receive(mb.address, timeout=5)
    assert got is not None and got.payload == b"after"


def test_a_rotated_out_certificate_is_refused(net: Net) -> None:
    b = net.node()
    mx = net.member()
    old = net.node(mx)
    old.send(Envelope(mx.address, b.address, "t", b"with the old key"))
    assert b.receive(b.address, timeout=5) is not None
    old.stop(0)
    # x rotates: a new key and certificate, a new node, the new fingerprint on chain
    mx.identity = NodeIdentity.generate(mx.address)
    new = net.node(mx)
    new.send(Envelope(mx.address, b.address, "t", b"with the new key"))
    assert b.receive(b.address, timeout=5) is not None
    # whoever kept the old key cannot speak for x any more
    stale = old.identity
    with pytest.raises(grpc.RpcError) as e:
        raw_channel(stale, b).unary_unary(DELIVER)(
            Envelope(mx.address, b.address, "t", b"old key").to_bytes(), metadata=raw_metadata(mx.address), timeout=3
        )
    assert e.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
    assert b.receive(b.address, timeout=0.2) is None


def test_heartbeats_tell_a_live_peer_from_a_dead_one(net: Net) -> None:
    a, b, c = net.node(), net.node(), net.node()
    c.stop(0)
    t0 = time.monotonic()
    beats = a.heartbeat([b.address, c.address], timeout=0.5)
    assert time.monotonic() - t0 < 3
    rtt = beats[b.address]
    assert rtt is not None and 0 < rtt < 0.5
    assert beats[c.address] is None
    assert a.alive(b.address, within=5) and not a.alive(c.address, within=5)
