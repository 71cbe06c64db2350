"""The session a SecAgg+ run belongs to, and its one canonical encoding.

A session is one execution of the protocol: (chain id, task-manager contract address, task id,
round, attempt, sub-session). A reopened attempt gets a new `attempt`; a re-sum inside one attempt
(the blame procedure's second sum without the culprits) gets a new `sub_session`. The same bytes,
`SessionContext.encode()`, are

* the HKDF salt of every key the session derives (channel keys, pairwise mask seeds, the member's
  own per-session secrets),
* part of the AES-GCM associated data of every share ciphertext,
* the header of every message, so every signature covers it,
* part of every share commitment and of the survivor statement.

So nothing made in one session is accepted, decrypted or usable in another: a message replayed
from attempt 1 into attempt 2 fails the receiver's context comparison (or its signature, if the
header is rewritten), a ciphertext fails authentication, and even a member whose randomness source
repeats derives different keys (see `session_secret`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.secagg.errors import DecodeError

_TAG = b"fedledger/v1/secagg/session"
_FMT = ">Q20s32sQII"  # chain id, task manager, task id, round, attempt, sub-session


@dataclass(frozen=True, slots=True)
class SessionContext:
    """Which protocol execution a message, key or ciphertext belongs to."""

    ENCODED_BYTES: ClassVar[int] = len(_TAG) + struct.calcsize(_FMT)

    chain_id: int
    task_manager: bytes  # the TaskManager contract's 20-byte address
    task_id: bytes  # 32 bytes (the on-chain task id as a big-endian uint256, or a task hash)
    round_index: int
    attempt: int = 0
    sub_session: int = 0  # 0 for the first sum of an attempt, 1.. for blame re-sums

    def __post_init__(self) -> None:
        if len(self.task_manager) != 20:
            raise ValueError("the task manager address is 20 bytes")
        if len(self.task_id) != 32:
            raise ValueError("task id is 32 bytes")
        if not 0 <= self.chain_id < 1 << 64 or not 0 <= self.round_index < 1 << 64:
            raise ValueError("chain id and round must fit in 64 bits")
        if not 0 <= self.attempt < 1 << 32 or not 0 <= self.sub_session < 1 << 32:
            raise ValueError("attempt and sub-session must fit in 32 bits")

    @classmethod
    def simulated(cls, task_id: bytes, round_index: int, attempt: int = 0, sub_session: int = 0) -> SessionContext:
        """A context with no chain behind it (chain id 0, zero contract address): in-process runs and tests."""
        return cls(0, b"\x00" * 20, task_id, round_index, attempt, sub_session)

    def encode(self) -> bytes:
        """The canonical, fixed-length encoding (tag, then big-endian fields)."""
        return _TAG + struct.pack(_FMT, self.chain_id, self.task_manager, self.task_id, self.round_index,
                                  self.attempt, self.sub_session)

    @classmethod
    def decode(cls, data: bytes) -> SessionContext:
        if len(data) != cls.ENCODED_BYTES or not data.startswith(_TAG):
            raise DecodeError("not a SecAgg+ session context")
        chain, tm, task, rnd, att, sub = struct.unpack(_FMT, data[len(_TAG):])
        return cls(chain, tm, task, rnd, att, sub)

    def next_sub_session(self) -> SessionContext:
        return SessionContext(self.chain_id, self.task_manager, self.task_id, self.round_index, self.attempt,
                              self.sub_session + 1)


def hkdf(secret: bytes, session: SessionContext, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with the session's encoding as salt and a labelled info."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=session.encode(),
                info=b"fedledger/v1/secagg/" + info).derive(secret)


def session_secret(fresh: bytes, session: SessionContext, member: int, label: bytes) -> bytes:
    """A member's 32-byte secret for `label` in this session, from `fresh` (32 bytes of its randomness).

    With the OS CSPRNG `fresh` alone makes the secret unique; the session and member in the derivation
    also keep an injected deterministic source (simulation mode) from ever giving two sessions, or two
    members, the same key.
    """
    if len(fresh) < 32:
        raise ValueError("need at least 32 bytes of fresh randomness")
    return hkdf(fresh, session, b"member-secret/" + label + struct.pack(">I", member))
