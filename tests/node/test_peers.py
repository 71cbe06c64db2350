"""`PeerDirectory.refresh` without a network: a newly published member is pinned first, whatever the dead or stale
members listed before it cost, and one failing peer does not stop the others."""

from __future__ import annotations

import pytest

from fedledger.ledger.types import Endpoint
from fedledger.node import NodeIdentity, PeerDirectory
from fedledger.node import peers as peers_module
from fedledger.protocol.transport import TransportError


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


class Chain:
    """A registry whose records are `listed`; counts the per-member reads."""

    def __init__(self, listed: dict[str, Endpoint]) -> None:
        self.listed = listed
        self.reads: list[str] = []

    def endpoint(self, a: str | None = None) -> Endpoint | None:
        assert a is not None
        self.reads.append(a)
        if a == address(99):
            raise OSError("the chain's node timed out")  # a failed read (requests raises OSError subclasses)
        return self.listed.get(a)

    def endpoints(self) -> dict[str, Endpoint]:
        return dict(self.listed)


def test_a_new_member_is_pinned_before_dead_ones_are_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    new = NodeIdentity.generate(address(1))
    impostor = NodeIdentity.generate(address(2))
    # registration order: 20 dead members, one whose read fails, one whose endpoint serves another certificate,
    # then the new member
    listed = {address(10 + i): Endpoint(address(10 + i), f"127.0.0.1:{2000 + i}", b"\1" * 32) for i in range(20)}
    listed[address(99)] = Endpoint(address(99), "127.0.0.1:2099", impostor.fingerprint)
    listed[address(2)] = Endpoint(address(2), "127.0.0.1:3002", b"\2" * 32)
    listed[address(1)] = Endpoint(address(1), "127.0.0.1:3001", new.fingerprint)
    serving = {"127.0.0.1:3001": new.cert_der, "127.0.0.1:3002": impostor.cert_der,
               "127.0.0.1:2099": impostor.cert_der}
    probed: list[str] = []

    def probe(url: str, timeout: float) -> bytes:
        probed.append(url)
        if url not in serving:
            raise TransportError(f"cannot reach {url} for its TLS certificate: connection refused")
        return serving[url]

    monkeypatch.setattr(peers_module, "probe_certificate", probe)
    now = [0.0]
    chain = Chain(listed)
    d = PeerDirectory(chain, probe_retry=10.0, clock=lambda: now[0])
    assert d.refresh() == 1
    assert d.trusted_pem() == [new.cert_pem]
    # a peer that does not answer costs no chain read; one that fails in any way does not stop the rest
    assert set(chain.reads) == {address(99), address(2), address(1)}
    # a newcomer is tried before the members whose probe failed, as soon as they are due again
    now[0] = 11.0
    newer = NodeIdentity.generate(address(3))
    listed[address(3)] = Endpoint(address(3), "127.0.0.1:3003", newer.fingerprint)
    serving["127.0.0.1:3003"] = newer.cert_der
    probed.clear()
    assert d.refresh() == 1
    assert probed[0] == "127.0.0.1:3003" and len(probed) == 23
    assert sorted(d.trusted_pem()) == sorted([new.cert_pem, newer.cert_pem])
    # within probe_retry nothing failed is probed again
    now[0] = 12.0
    probed.clear()
    assert d.refresh() == 0 and probed == []
