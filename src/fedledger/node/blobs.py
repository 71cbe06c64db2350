"""A node's blob store by CID: what it made and what it fetched, served to its peers.

`CidStore` is the core `BlobStore` (atomic writes, re-hash on read) with the plain SHA-256 of the
bytes as the address, so the file a blob lives in is named by its IPFS-compatible CID's digest.
The network side (serving and fetching, chunked and verified on receipt) is in
`fedledger.node.transport.GrpcTransport.fetch_blob`.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from fedledger.core.blobstore import BlobStore
from fedledger.node.cid import cid_of_digest, digest_of


class CidStore(BlobStore):
    @staticmethod
    def address(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def add(self, data: bytes) -> str:
        """Store `data`; its CID."""
        return cid_of_digest(self.put(data))

    def read(self, cid: str) -> bytes:
        """The blob `cid` names, re-hashed on read (`IntegrityError` if missing or tampered on disk)."""
        return self.get(digest_of(cid))

    def has(self, cid: str) -> bool:
        return digest_of(cid) in self


class BlobServer(Protocol):
    """What a transport serves and caches by CID: a `CidStore`, or a node's protocol store (`ServedBlobs`)."""

    def has(self, cid: str) -> bool: ...

    def read(self, cid: str) -> bytes: ...

    def add(self, data: bytes) -> str: ...
