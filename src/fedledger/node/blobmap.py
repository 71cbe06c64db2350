"""The protocol's blob addresses on the network: `NetBlobStore`, the `BlobStore` a node's roles use.

Roles and the chain name blobs by the protocol's address (`BlobStore.address`: SHA-256 domain-separated by
usage, `fedledger.core.hashing`); the network serves blobs by IPFS-compatible CIDv1 (the plain SHA-256 of the
bytes, `fedledger.node.cid`). The two cannot be derived from one another without the bytes, so a node keeps
the mapping for every blob it holds:
- `put` stores the bytes once, under the protocol address (the layout `fedledger audit` reads), and files the
  CID under the address (`cids/<address>`) and the address under the CID's digest (`by-cid/<digest>`): the
  transport serves the same file by CID through `ServedBlobs`;
- a peer asks `Resolve(0x00 || address)` and gets the CID; `Resolve(0x01 || key)` gets the protocol address a
  name (a Merkle root, `BlobStore.name`) is filed under, then its CID;
- `get` of a blob this node lacks asks each source in turn (by default the peers `sources()` names: on a
  node, every member with a published endpoint, the round's aggregator first), fetches by CID
  (`GrpcTransport.fetch_blob`: sha2-256 checked on receipt) and keeps the bytes only if they also hash to the
  protocol address asked for, so this node serves them on in turn. A source that maps an address to another
  blob's CID, or serves other bytes, is skipped and recorded in `transport.refused`; each source is asked
  under `policy` (a node's daemon: `FETCH_POLICY`, quick, as a peer that is down must not hold up the others,
  and a role step that fails for want of a blob is retried on the daemon's next pass).

This is how a node's roles reach what they lack: the global model the last round's aggregator stored, the
evidence a validator checks, the task spec the owner published, a round manifest filed under its root.

Resolve answers are untrusted hints: a blob is kept only when its bytes hash to the address asked for, and
a name is, as in the local store, a lookup its reader verifies (`RoundManifest.find` recomputes the root).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.core.blobstore import BlobStore
from fedledger.core.errors import IntegrityError
from fedledger.node.cid import cid_of, digest_of, verify
from fedledger.node.transport import RetryPolicy
from fedledger.protocol.transport import TransportError

if TYPE_CHECKING:
    from fedledger.node.transport import GrpcTransport

BLOB_QUERY = b"\x00"
NAME_QUERY = b"\x01"
#: a fetch asks each source once, quickly: a peer that is down must not hold up the others
FETCH_POLICY = RetryPolicy(attempts=3, base=0.05, cap=0.5, total=3.0, rpc_timeout=20.0)


class NetBlobStore(BlobStore):
    """A node's protocol blob store: local first, then fetched by CID from `sources()` and verified twice."""

    def __init__(self, root: Path | str, transport: GrpcTransport | None = None,
                 sources: Callable[[], Sequence[str]] = lambda: (), *, policy: RetryPolicy | None = None) -> None:
        super().__init__(root)
        self.transport: GrpcTransport | None = None
        self.sources = sources
        self.policy = policy  # per source (None: the transport's own; a node's daemon passes FETCH_POLICY)
        self.fetched = 0  # blobs fetched from peers
        self.fetched_bytes = 0
        if transport is not None:
            self.attach(transport)

    def attach(self, transport: GrpcTransport) -> None:
        """Serve and fetch through `transport` (a node builds its store before its transport runs): the
        transport serves this store's blobs by CID (`ServedBlobs`), so each blob is on disk once."""
        self.transport = transport
        transport.blobs = ServedBlobs(self)
        transport.resolver = self.answer

    # ------------------------------------------------------------------ local
    def _cid_path(self, address: bytes) -> Path:
        return self.root / "cids" / address.hex()

    def _address_path(self, digest: bytes) -> Path:
        return self.root / "by-cid" / digest.hex()

    def put(self, data: bytes) -> bytes:
        address = super().put(data)
        self._map(address, data)
        return address

    def _map(self, address: bytes, data: bytes) -> None:
        """File the blob's CID under its address and its address under the CID's digest (both ways)."""
        cid = cid_of(data)
        for path, text in ((self._cid_path(address), cid), (self._address_path(digest_of(cid)), address.hex())):
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    def cid(self, address: bytes) -> str | None:
        """The CID this node serves the blob `address` under (None if it does not hold it)."""
        if address not in self:
            return None
        try:
            cid = self._cid_path(address).read_text().strip()
            if not self._address_path(digest_of(cid)).exists():
                raise OSError("mapped one way only")
            return cid
        except (OSError, IntegrityError):  # held before the map existed, or the map file is damaged: remap
            data = super().get(address)
            self._map(address, data)
            return cid_of(data)

    def address_of(self, cid: str) -> bytes | None:
        """The protocol address of the blob this node holds under `cid` (None: it holds none)."""
        try:
            address = bytes.fromhex(self._address_path(digest_of(cid)).read_text().strip())
        except (OSError, ValueError, IntegrityError):
            return None
        return address if address in self else None

    def answer(self, request: bytes) -> bytes | None:
        """A peer's `Resolve` request, answered from this node's store (None: not held)."""
        kind, key = request[:1], request[1:]
        if len(key) != 32:
            return None
        if kind == BLOB_QUERY:
            cid = self.cid(key)
            return cid.encode() if cid is not None else None
        if kind == NAME_QUERY:
            try:
                address = super().resolve(key)
            except IntegrityError:
                return None
            cid = self.cid(address)
            return address + cid.encode() if cid is not None else None
        return None

    # ------------------------------------------------------------------ network
    def _peers(self, sources: Sequence[str] | None) -> Sequence[str]:
        return list(self.sources() if sources is None else sources)

    def get(self, address: bytes, sources: Sequence[str] | None = None) -> bytes:
        if address in self or self.transport is None:
            return super().get(address)
        return self.fetch(address, sources)

    def fetch(self, address: bytes, sources: Sequence[str] | None = None) -> bytes:
        """The blob `address` from the first source that maps it to a CID and serves bytes hashing to both."""
        assert self.transport is not None
        errors: list[str] = []
        for peer in self._peers(sources):
            if peer.lower() == self.transport.address:
                continue
            try:
                answer = self.transport.resolve_at(peer, BLOB_QUERY + address, policy=self.policy)
                if answer is None:
                    errors.append(f"{peer}: does not hold it")
                    continue
                cid = answer.decode("ascii", "replace")
                data = self.transport.fetch_blob(cid, [peer], policy=self.policy)
            except (TransportError, IntegrityError) as e:
                errors.append(f"{peer}: {e}")
                continue
            if BlobStore.address(data) != address:  # a valid CID of some other blob
                self._refused(peer, f"mapped blob 0x{address.hex()} to {cid}, which holds other bytes")
                errors.append(f"{peer}: served another blob")
                continue
            self.put(data)
            self.fetched += 1
            self.fetched_bytes += len(data)
            return data
        raise IntegrityError(f"blob 0x{address.hex()} is not in the store at {self.root} and no peer served it"
                             + (f" ({'; '.join(errors)})" if errors else ""))

    def resolve(self, key: bytes, sources: Sequence[str] | None = None) -> bytes:
        try:
            return super().resolve(key)
        except IntegrityError:
            if self.transport is None:
                raise
        for peer in self._peers(sources):
            if peer.lower() == self.transport.address:
                continue
            try:
                answer = self.transport.resolve_at(peer, NAME_QUERY + key, policy=self.policy)
            except TransportError:
                continue
            if answer is None or len(answer) <= 32:
                continue
            address = answer[:32]
            try:
                self.get(address, [peer])
            except IntegrityError:
                continue
            self.name(key, address)  # as untrusted as a local name: its reader checks what it names
            return address
        raise IntegrityError(f"nothing is filed under 0x{key.hex()} here or at any peer asked")

    def _refused(self, peer: str, why: str) -> None:
        assert self.transport is not None
        with self.transport._lock:
            self.transport.refused.append((peer, why))


class ServedBlobs:
    """What a node's transport serves and caches by CID: a view of its `NetBlobStore`, not a second copy. A read
    is checked against both hashes (the protocol address on read, the CID's digest here)."""

    def __init__(self, store: NetBlobStore) -> None:
        self.store = store

    def has(self, cid: str) -> bool:
        return self.store.address_of(cid) is not None

    def read(self, cid: str) -> bytes:
        address = self.store.address_of(cid)
        if address is None:
            raise IntegrityError(f"no blob {cid} here")
        data = BlobStore.get(self.store, address)  # this node's copy only: never a fetch from peers
        verify(cid, data)
        return data

    def add(self, data: bytes) -> str:
        self.store.put(data)
        return cid_of(data)
