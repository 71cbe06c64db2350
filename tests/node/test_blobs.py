"""Blobs over the network: served by the node that made them, fetched, verified on receipt, cached."""

from __future__ import annotations

import random

import pytest
from node_net import Net

from fedledger.core.errors import IntegrityError
from fedledger.node import GrpcTransport, cid_of, digest_of
from fedledger.node.transport import MiB
from fedledger.protocol.transport import TransportError


class TamperingNode(GrpcTransport):
    """A malicious node: serves its blobs with one bit flipped."""

    def _blob_bytes(self, cid: str) -> bytes | None:
        data = super()._blob_bytes(cid)
        return None if data is None else data[:-1] + bytes([data[-1] ^ 1])


class PaddingNode(GrpcTransport):
    """A malicious node: serves a blob followed by endless junk."""

    def _blob_bytes(self, cid: str) -> bytes | None:
        data = super()._blob_bytes(cid)
        return None if data is None else data + bytes(8 * MiB)


def test_a_blob_is_fetched_verified_cached_and_served_on(net: Net) -> None:
    a, b, c = net.node(), net.node(), net.node()
    data = random.Random(7).randbytes(2 * MiB + 123)  # three chunks
    cid = b.put_blob(data)
    assert cid == cid_of(data)
    assert a.blobs is not None and not a.blobs.has(cid)
    assert a.fetch_blob(cid, [b.address]) == data
    assert a.blobs.has(cid)
    b.stop(0)
    assert a.fetch_blob(cid, [b.address]) == data  # from a's cache: b is gone
    assert c.fetch_blob(cid, [a.address]) == data  # a serves what it fetched
    with pytest.raises(TransportError, match="no blob"):
        c.fetch_blob(cid_of(b"nobody has this"), [a.address])


def test_a_tampered_blob_is_refused_on_receipt(net: Net) -> None:
    a, honest = net.node(), net.node()
    evil = net.node(cls=TamperingNode)
    data = random.Random(8).randbytes(1 * MiB + 5)
    cid = evil.put_blob(data)
    honest.put_blob(data)
    with pytest.raises(IntegrityError, match="does not match"):
        a.fetch_blob(cid, [evil.address])
    assert a.blobs is not None and not a.blobs.has(cid)  # nothing kept, nothing served on
    assert a.refused[-1][0] == evil.address
    # with an honest source behind it, the fetch skips the liar
    assert a.fetch_blob(cid, [evil.address, honest.address]) == data
    assert a.blobs.has(cid)


def test_a_blob_padded_past_its_size_limit_is_cut_off(net: Net) -> None:
    a = net.node()
    evil = net.node(cls=PaddingNode)
    data = b"small model"
    cid = evil.put_blob(data)
    with pytest.raises(IntegrityError, match="more than"):
        a.fetch_blob(cid, [evil.address], max_size=1 * MiB)
    assert a.blobs is not None and not a.blobs.has(cid)


def test_a_node_serves_no_blob_corrupted_on_its_disk(net: Net) -> None:
    a, b = net.node(), net.node()
    data = b"weights" * 1000
    cid = b.put_blob(data)
    assert b.blobs is not None
    path = b.blobs._path(digest_of(cid))
    path.write_bytes(data[:-1] + b"X")
    with pytest.raises(TransportError, match="DATA_LOSS"):
        a.fetch_blob(cid, [b.address])
    assert a.blobs is not None and not a.blobs.has(cid)
