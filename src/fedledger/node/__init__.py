"""fedledger.node (layer 6): one member's node: the network transport and the blob service.

`GrpcTransport` is the `Transport` of one member over gRPC with mutual TLS, each peer's certificate
pinned by the fingerprint the member registered on chain (`PeerDirectory`); blobs are addressed by
IPFS-compatible CIDv1 (`cid_of`), served by the node that holds them and verified on receipt.
See docs/node.md.
"""

from fedledger.node.blobs import CidStore
from fedledger.node.cid import InvalidCid, cid_of, digest_of
from fedledger.node.peers import Peer, PeerDirectory, PeerRefused
from fedledger.node.tls import NodeIdentity, fingerprint, probe_certificate
from fedledger.node.transport import Backpressure, GrpcTransport, RetryPolicy

__all__ = [
    "Backpressure",
    "CidStore",
    "GrpcTransport",
    "InvalidCid",
    "NodeIdentity",
    "Peer",
    "PeerDirectory",
    "PeerRefused",
    "RetryPolicy",
    "cid_of",
    "digest_of",
    "fingerprint",
    "probe_certificate",
]
