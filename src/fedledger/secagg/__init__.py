"""fedledger.secagg: SecAgg+ secure aggregation (layer 3; see docs/secagg.md).

Member and server state machines with typed, signed messages; X25519 + HKDF-SHA256 key
agreement with the chain as PKI; AES-256-GCM share encryption; AES-256-CTR masks from full
256-bit seeds; vectorized Shamir sharing over GF(2**31 - 1); a k-regular Harary graph; a signed
survivor list (consistency check). `run_round` drives a whole round in process.
"""

from fedledger.secagg.driver import RoundOutcome, run_round, simulated_identities
from fedledger.secagg.errors import DecodeError, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import MaskingRecord, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, MemberId, PublicIdentity, pki_from_registered
from fedledger.secagg.messages import Kind, decode

__all__ = [
    "DecodeError",
    "Graph",
    "Identity",
    "Kind",
    "MaskingRecord",
    "MemberId",
    "ProtocolViolation",
    "PublicIdentity",
    "RoundOutcome",
    "SecAggAbort",
    "SecAggParams",
    "decode",
    "field_mask",
    "pki_from_registered",
    "run_round",
    "simulated_identities",
]
