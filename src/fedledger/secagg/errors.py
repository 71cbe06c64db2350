"""Errors raised by secure aggregation, and the fault record that names a misbehaving member.

`ProtocolViolation` covers anything a peer sent that must not be accepted (bad signature, replay,
malformed bytes, a message from another session). `InvalidKey` is a public key that must never be
used: a non-canonical or small-order Ed25519 identity key, or a low-order X25519 key. `SecAggAbort`
is a round that cannot finish correctly (too many dropouts, a dealer whose shares do not rebuild
its committed secret): it is raised instead of returning a wrong sum, and names the members at
fault when there are any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fedledger.core.errors import FedLedgerError, IntegrityError


class ProtocolViolation(IntegrityError):
    """A message that is forged, replayed, out of stage or malformed."""


class DecodeError(ProtocolViolation):
    """Bytes that do not decode to a message (wrong kind, wrong length, trailing bytes)."""


class InvalidKey(ProtocolViolation):
    """A public key that is malformed, non-canonical or of small order (refused, never used)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Why `member` is named faulty, with the evidence: its own signed message(s) (wire bytes) or,
    for an invalid registered key, the registered key itself; enough for anyone to re-check."""

    member: int
    reason: str
    evidence: tuple[bytes, ...]


class SecAggAbort(FedLedgerError, RuntimeError):
    """The round cannot produce a correct sum (e.g. more dropouts than the threshold tolerates)."""

    exit_code = 8

    def __init__(self, message: str, faulty: Mapping[int, Fault] | None = None) -> None:
        super().__init__(message)
        self.faulty: dict[int, Fault] = dict(faulty or {})
