"""Registry: members publish their node's endpoint and TLS certificate fingerprint (the transport's PKI)."""

from __future__ import annotations

import hashlib
import os

import pytest
from eth_account import Account
from ledger_fed import Fed, needs_anvil

from fedledger.ledger.errors import InvalidArgument, LedgerRevert

pytestmark = needs_anvil


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_member_publishes_and_rotates_its_endpoint(fed: Fed) -> None:
    t = fed.trainers[0]
    assert t.endpoint() is None
    t.set_endpoint("127.0.0.1:7001", fp("cert 1"))
    e = t.endpoint()
    assert e is not None and (e.url, e.tls_fingerprint, e.address) == ("127.0.0.1:7001", fp("cert 1"), t.address)
    # another member reads the same record; a rotation replaces it
    assert fed.owner.endpoint(t.address) == e
    t.set_endpoint("10.0.0.2:7002", fp("cert 2"))
    e2 = fed.owner.endpoint(t.address)
    assert e2 is not None and (e2.url, e2.tls_fingerprint) == ("10.0.0.2:7002", fp("cert 2"))
    assert fed.owner.endpoints()[t.address] == e2
    # nobody else's record moved
    assert fed.owner.endpoint(fed.trainers[1].address) is None


def test_only_registered_members_publish_an_endpoint(fed: Fed) -> None:
    acct = Account.from_key(os.urandom(32))
    fed.ledger.backend.fund(acct.address, 10**18)
    stranger = fed.ledger.as_account(acct)
    assert stranger.member() is None
    with pytest.raises(LedgerRevert, match="not a registered member"):
        stranger.set_endpoint("127.0.0.1:7001", fp("stranger"))
    assert fed.owner.endpoint(stranger.address) is None


def test_an_endpoint_needs_a_url_and_a_fingerprint(fed: Fed) -> None:
    t = fed.trainers[0]
    with pytest.raises(LedgerRevert, match="empty TLS fingerprint"):
        t.set_endpoint("127.0.0.1:7001", b"\x00" * 32)
    with pytest.raises(InvalidArgument):
        t.set_endpoint("", fp("c"))
    with pytest.raises(InvalidArgument):
        t.set_endpoint("h" * 129, fp("c"))
    assert t.endpoint() is None
