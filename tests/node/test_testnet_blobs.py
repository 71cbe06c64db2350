"""Protocol blob addresses over the network (fedledger.node.blobmap): a blob named by its protocol address (as
the chain and the evidence name it) is resolved to its CIDv1 at the node that made it, fetched, and kept only if
its bytes hash to both; real gRPC nodes with real TLS pinned through a real anvil."""

from __future__ import annotations

import os

import pytest
from node_net import Net

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.node import GrpcTransport
from fedledger.node.blobmap import BLOB_QUERY, NetBlobStore
from fedledger.node.cid import cid_of
from fedledger.protocol.evidence import RoundManifest


def store(net: Net, t: GrpcTransport, sources: list[str] | None = None,
          cls: type[NetBlobStore] = NetBlobStore) -> NetBlobStore:
    m = net.members[t]
    return cls(m.root / "protocol-blobs", t, lambda: sources or [])


def test_a_blob_is_fetched_by_its_protocol_address_from_the_node_that_made_it(net: Net) -> None:
    a, b, c = net.node(), net.node(), net.node()
    sa = store(net, a)
    data = os.urandom(3 * (1 << 20) + 17)  # several transport chunks
    address = sa.put(data)
    assert address == BlobStore.address(data) and sa.cid(address) == cid_of(data)  # the IPFS CID of the bytes
    assert a.blobs is not None and a.blobs.has(cid_of(data)) and a.blobs.read(cid_of(data)) == data  # a serves it
    # by CID, from the one copy on its disk
    on_disk = sum(f.stat().st_size for f in net.members[a].root.rglob("*") if f.is_file())
    assert len(data) <= on_disk < len(data) + 64 * 1024

    sb = store(net, b, [a.address])
    assert sb.get(address) == data and address in sb and sb.fetched == 1
    a.stop(0)  # b, having verified and kept it, serves it on
    sc = store(net, c, [a.address, b.address])
    assert sc.get(address) == data
    with pytest.raises(IntegrityError, match="no peer served it"):
        sc.get(BlobStore.address(b"never stored anywhere"))


class LyingStore(NetBlobStore):
    """An attacker's node: answers every address with the CID of a blob of its choosing (which it serves)."""

    bait = b""

    def answer(self, request: bytes) -> bytes | None:
        if request[:1] == BLOB_QUERY:
            return cid_of(self.bait).encode()
        return super().answer(request)


def test_a_peer_mapping_an_address_to_another_blob_is_refused(net: Net) -> None:
    honest, liar, me = net.node(), net.node(), net.node()
    real = os.urandom(5000)
    address = store(net, honest).put(real)
    bad = store(net, liar, cls=LyingStore)
    LyingStore.bait = os.urandom(5000)
    bad.put(LyingStore.bait)

    mine = store(net, me)
    with pytest.raises(IntegrityError, match="served another blob"):
        mine.get(address, [liar.address])  # the bait hashes to its CID, not to the address asked for
    assert address not in mine and any("other bytes" in why for _, why in me.refused)
    assert mine.get(address, [liar.address, honest.address]) == real  # the next source is honest


def test_a_round_manifest_filed_under_its_root_is_found_across_nodes(net: Net) -> None:
    agg, validator = net.node(), net.node()
    sa = store(net, agg)
    manifest = RoundManifest(sa.put(b"model bytes"), sa.put(b"evidence bytes"))
    root = manifest.store(sa)
    sv = store(net, validator, [agg.address])
    assert RoundManifest.find(sv, root) == manifest
    assert sv.get(manifest.model) == b"model bytes"
