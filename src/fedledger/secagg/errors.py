"""Errors raised by secure aggregation.

`ProtocolViolation` covers anything a peer sent that must not be accepted (bad signature, replay,
malformed bytes, a share that does not match its commitment). `SecAggAbort` is a round that cannot
finish correctly (too many dropouts): it is raised instead of returning a wrong sum.
"""

from __future__ import annotations

from fedledger.core.errors import FedLedgerError, IntegrityError


class ProtocolViolation(IntegrityError):
    """A message that is forged, replayed, out of stage or malformed."""


class DecodeError(ProtocolViolation):
    """Bytes that do not decode to a message (wrong kind, wrong length, trailing bytes)."""


class SecAggAbort(FedLedgerError, RuntimeError):
    """The round cannot produce a correct sum (e.g. more dropouts than the threshold tolerates)."""

    exit_code = 8
