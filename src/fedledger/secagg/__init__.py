"""fedledger.secagg: SecAgg+ secure aggregation (layer 3; see docs/secagg.md).

Member and server state machines with typed messages signed by the chain-registered Ed25519
keys and bound to one `SessionContext` (chain, contract, task, round, attempt, sub-session); fresh
X25519 keys per session + HKDF-SHA256; AES-256-GCM share encryption; salted hash commitments to
every share, checked one by one at unmasking; AES-256-CTR masks from full 256-bit seeds;
vectorized Shamir sharing over GF(2**31 - 1); a k-regular Harary graph; a signed survivor list
(consistency check). `check_identity_key` refuses invalid and small-order keys (call it at
registration). `run_round` drives a whole round in process.
"""

from fedledger.secagg.context import SessionContext
from fedledger.secagg.driver import RoundOutcome, fresh_identities, run_round, simulated_identities
from fedledger.secagg.errors import DecodeError, Fault, InvalidKey, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import MaskingRecord, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import (
    Identity,
    MemberId,
    PublicIdentity,
    check_identity_key,
    check_x25519_key,
    pki_from_registered,
)
from fedledger.secagg.messages import Kind, decode

__all__ = [
    "DecodeError",
    "Fault",
    "Graph",
    "Identity",
    "InvalidKey",
    "Kind",
    "MaskingRecord",
    "MemberId",
    "ProtocolViolation",
    "PublicIdentity",
    "RoundOutcome",
    "SecAggAbort",
    "SecAggParams",
    "SessionContext",
    "check_identity_key",
    "check_x25519_key",
    "decode",
    "field_mask",
    "fresh_identities",
    "pki_from_registered",
    "run_round",
    "simulated_identities",
]
