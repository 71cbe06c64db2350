"""Link faults at the transport (fedledger.node.faults): a partition or a slow link set by a file the node
re-reads while it runs, over real gRPC with real TLS pinned through a real anvil."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from node_net import Net

from fedledger.node import RetryPolicy
from fedledger.node.faults import FAULT_FILE, FaultPlan, LinkFaults, write_plan
from fedledger.protocol.transport import Envelope, TransportError

SHORT = RetryPolicy(attempts=4, base=0.01, cap=0.05, total=0.6, rpc_timeout=0.5)


def faulty(tmp: Path) -> LinkFaults:
    return LinkFaults(tmp / FAULT_FILE, poll=0.0)


def test_a_partitioned_node_neither_sends_nor_receives_until_the_fault_is_cleared(net: Net, tmp_path: Path) -> None:
    faults = faulty(tmp_path)
    a = net.node(faults=faults, retry=SHORT)
    b = net.node(retry=SHORT)
    a.send(Envelope(a.address, b.address, "t", b"before"))
    assert b.receive(b.address, timeout=5).payload == b"before"

    write_plan(faults.path, FaultPlan(frozenset({"*"})))
    with pytest.raises(TransportError, match="link dropped"):
        a.send(Envelope(a.address, b.address, "t", b"out"))
    with pytest.raises(TransportError, match="UNAVAILABLE"):
        b.send(Envelope(b.address, a.address, "t", b"in"))
    assert a.receive(a.address, timeout=0.2) is None and b.receive(b.address, timeout=0.2) is None
    assert faults.dropped >= 2

    write_plan(faults.path, None)  # healed: both directions work again
    a.send(Envelope(a.address, b.address, "t", b"after"))
    b.send(Envelope(b.address, a.address, "t", b"back"))
    assert b.receive(b.address, timeout=5).payload == b"after"
    assert a.receive(a.address, timeout=5).payload == b"back"


def test_a_link_cut_to_one_peer_leaves_the_others_reachable(net: Net, tmp_path: Path) -> None:
    faults = faulty(tmp_path)
    a = net.node(faults=faults, retry=SHORT)
    b, c = net.node(retry=SHORT), net.node(retry=SHORT)
    write_plan(faults.path, FaultPlan(frozenset({b.address.upper().replace("0X", "0x")})))
    with pytest.raises(TransportError):
        a.send(Envelope(a.address, b.address, "t", b"x"))
    a.send(Envelope(a.address, c.address, "t", b"y"))
    assert c.receive(c.address, timeout=5).payload == b"y"


def test_a_slow_link_delays_every_call(net: Net, tmp_path: Path) -> None:
    faults = faulty(tmp_path)
    a, b = net.node(faults=faults), net.node()
    fast = a.ping(b.address, timeout=5)
    write_plan(faults.path, FaultPlan(delay=0.3))
    slow = a.ping(b.address, timeout=5)
    assert slow >= 0.3 > fast
    t0 = time.perf_counter()
    b.ping(a.address, timeout=5)  # the other way: a answers late
    assert time.perf_counter() - t0 >= 0.3


def test_a_plan_that_does_not_parse_leaves_the_link_healthy_and_says_why(tmp_path: Path) -> None:
    faults = faulty(tmp_path)
    faults.path.write_text('{"drop": 5}')
    assert faults.current().healthy and "drop" in faults.error
    faults.path.write_text('{"drop": "*", "delay": 0.0}')
    assert faults.current().drops("0xAnyOne") and faults.error == ""
    with pytest.raises(ValueError):
        FaultPlan.parse('{"delay": -1}')
