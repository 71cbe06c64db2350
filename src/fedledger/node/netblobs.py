"""The roles' blob store on a node: local first, then fetched from peers by protocol address.

Roles read and write blobs by their protocol address (`BlobStore.address`, a domain-separated SHA-256)
and file round manifests under their Merkle root (`BlobStore.name`). On one machine that is a directory;
on a node, a blob the roles ask for and do not have (the global model the aggregator of the last round
stored, the evidence a validator checks, the task spec the owner published) is fetched from the peers
that may hold it (`sources()`: the members with a published endpoint, the round's aggregator first),
re-hashed on receipt (`GrpcTransport.fetch_named`) and cached, so this node serves it on in turn. A name
lookup answered by a peer is never trusted: `RoundManifest.find` re-checks the manifest's root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.node.transport import GrpcTransport, RetryPolicy
from fedledger.protocol.transport import TransportError

# a fetch asks each source once, quickly: a peer that is down must not hold up the others
FETCH_POLICY = RetryPolicy(attempts=3, base=0.05, cap=0.5, total=3.0, rpc_timeout=20.0)


class NetworkBlobStore(BlobStore):
    def __init__(self, root: Path | str, sources: Callable[[], Sequence[str]]) -> None:
        super().__init__(root)
        self.sources = sources
        self.transport: GrpcTransport | None = None  # set once the node's transport runs
        self.fetched = 0  # bytes fetched from peers

    def get(self, address: bytes) -> bytes:
        if address not in self:
            self._fetch(address)
        return super().get(address)

    def resolve(self, key: bytes) -> bytes:
        try:
            return super().resolve(key)
        except IntegrityError:
            if self.transport is None:
                raise
        try:
            address = self.transport.fetch_name(key, self.sources(), policy=FETCH_POLICY)
        except TransportError as e:
            raise IntegrityError(f"nothing is filed under 0x{key.hex()} here or at any peer ({e})") from None
        self.get(address)  # the named blob itself, before the name is filed
        self.name(key, address)
        return address

    def _fetch(self, address: bytes) -> None:
        if self.transport is None:
            return
        try:
            data = self.transport.fetch_named(address, self.sources(), policy=FETCH_POLICY)
        except TransportError as e:
            raise IntegrityError(f"blob 0x{address.hex()} is not here and no peer served it ({e})") from None
        self.put(data)
        self.fetched += len(data)
