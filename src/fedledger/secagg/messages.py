"""SecAgg+ wire messages: frozen dataclasses with a strict binary codec.

Every message starts with a header: version (u8), kind (u8), the session context's canonical
encoding (chain id, task manager, task, round, attempt, sub-session; `context.SessionContext`),
sender (u32, 0xFFFFFFFF for the server) and recipient (u32, 0xFFFFFFFF for the server). Member
messages end with an Ed25519 signature over the domain-separated digest of everything before it,
so a signature binds the whole session, the stage (kind), the sender and the content: a message
replayed into another session (another attempt or re-sum of the same round included) or stage
fails verification, and a second message of the same stage from one sender is rejected by the
receiving state machine. Server messages are not signed:
everything in them that matters is either signed by members or authenticated by AES-GCM.

`decode` rejects unknown kinds, truncated input and trailing bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, NamedTuple

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.context import SessionContext
from fedledger.secagg.errors import DecodeError

VERSION = 2
SERVER = 0xFFFFFFFF
SIG_BYTES = 64
BLINDING_BYTES = 32  # the optional field coordinate of a masked input
SALT_BYTES = 32  # a share commitment's salt


class Kind(IntEnum):
    ADVERTISE_KEYS = 1
    KEY_ROSTER = 2
    SHARE_KEYS = 3
    SHARE_ROSTER = 4
    MASKED_INPUT = 5
    SURVIVOR_LIST = 6
    SURVIVOR_SIGNATURE = 7
    SURVIVOR_CERTIFICATE = 8
    UNMASK_SHARES = 9


class ShareType(IntEnum):
    SELF_MASK = 0  # share of b_j: j survived, its self mask is removed
    MASK_KEY = 1  # share of s_j: j dropped, its pairwise masks are removed


class _W:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack(">B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack(">I", v))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack(">Q", v))

    def fixed(self, b: bytes, n: int) -> None:
        if len(b) != n:
            raise ValueError(f"expected {n} bytes, got {len(b)}")
        self.parts.append(bytes(b))

    def var(self, b: bytes) -> None:
        self.u32(len(b))
        self.parts.append(bytes(b))

    def done(self) -> bytes:
        return b"".join(self.parts)


class _R:
    def __init__(self, data: bytes) -> None:
        self.d = memoryview(bytes(data))
        self.i = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.d):
            raise DecodeError("truncated message")
        out = self.d[self.i : self.i + n].tobytes()
        self.i += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def var(self) -> bytes:
        return self.take(self.u32())

    def finish(self) -> None:
        if self.i != len(self.d):
            raise DecodeError(f"{len(self.d) - self.i} trailing bytes")


@dataclass(frozen=True, slots=True)
class Header:
    session: SessionContext
    sender: int
    recipient: int

    @property
    def task_id(self) -> bytes:
        return self.session.task_id

    @property
    def round_index(self) -> int:
        return self.session.round_index


@dataclass(frozen=True, slots=True)
class Message:
    """Base: every message has a header; signed kinds also carry `signature`."""

    KIND: ClassVar[Kind]
    SIGNED: ClassVar[bool] = False
    header: Header

    def _body(self, w: _W) -> None:
        raise NotImplementedError

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        raise NotImplementedError

    def signed_bytes(self) -> bytes:
        """Everything a signature covers (header and body, not the signature)."""
        w = _W()
        w.u8(VERSION)
        w.u8(int(self.KIND))
        w.fixed(self.header.session.encode(), SessionContext.ENCODED_BYTES)
        w.u32(self.header.sender)
        w.u32(self.header.recipient)
        self._body(w)
        return w.done()

    def digest(self) -> bytes:
        return domain_hash(Usage.SECAGG_SIGNATURE, self.signed_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Decode and check the kind: `AdvertiseKeys.from_bytes(b)` only accepts an AdvertiseKeys."""
        msg = decode(data)
        if cls is not Message and not isinstance(msg, cls):
            raise DecodeError(f"expected {cls.__name__}, got {type(msg).__name__}")
        return msg

    def to_bytes(self) -> bytes:
        data = self.signed_bytes()
        if self.SIGNED:
            sig: bytes = self.signature  # type: ignore[attr-defined]
            if len(sig) != SIG_BYTES:
                raise ValueError("signature must be 64 bytes")
            data += sig
        return data


@dataclass(frozen=True, slots=True)
class AdvertiseKeys(Message):
    """Member -> server: the member's fresh X25519 keys for this session, signed by its identity key:
    `channel_public` encrypts the shares it receives, `mask_public` derives its pairwise masks."""

    KIND: ClassVar[Kind] = Kind.ADVERTISE_KEYS
    SIGNED: ClassVar[bool] = True
    channel_public: bytes
    mask_public: bytes
    signature: bytes = b""

    def _body(self, w: _W) -> None:
        w.fixed(self.channel_public, 32)
        w.fixed(self.mask_public, 32)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        return {"channel_public": r.take(32), "mask_public": r.take(32)}


RosterEntry = tuple[int, bytes, bytes, bytes]  # member, channel key, masking key, its AdvertiseKeys signature


@dataclass(frozen=True, slots=True)
class KeyRoster(Message):
    """Server -> member: its neighbours' signed AdvertiseKeys, as (member, channel key, masking key, signature)."""

    KIND: ClassVar[Kind] = Kind.KEY_ROSTER
    entries: tuple[RosterEntry, ...]

    def _body(self, w: _W) -> None:
        w.u32(len(self.entries))
        for m, ck, mk, sig in self.entries:
            w.u32(m)
            w.fixed(ck, 32)
            w.fixed(mk, 32)
            w.fixed(sig, SIG_BYTES)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        n = r.u32()
        return {"entries": tuple((r.u32(), r.take(32), r.take(32), r.take(SIG_BYTES)) for _ in range(n))}


# (peer, commitment to the self-seed share, commitment to the masking-key share, the dealer's signature
# on both commitments for this holder, ciphertext); in ShareKeys peer = holder, in ShareRoster = dealer
ShareEntry = tuple[int, bytes, bytes, bytes, bytes]


def _share_entries(w: _W, entries: tuple[ShareEntry, ...]) -> None:
    w.u32(len(entries))
    for m, cb, cs, sig, ct in entries:
        w.u32(m)
        w.fixed(cb, 32)
        w.fixed(cs, 32)
        w.fixed(sig, SIG_BYTES)
        w.var(ct)


def _read_share_entries(r: _R) -> tuple[ShareEntry, ...]:
    n = r.u32()
    return tuple((r.u32(), r.take(32), r.take(32), r.take(SIG_BYTES), r.var()) for _ in range(n))


@dataclass(frozen=True, slots=True)
class ShareKeys(Message):
    """Member -> server: a commitment to its self-mask seed and, per share holder (itself included, with
    an empty ciphertext), salted commitments to the two shares it deals that holder, its signature on
    those commitments and the AES-GCM ciphertext of shares and salts."""

    KIND: ClassVar[Kind] = Kind.SHARE_KEYS
    SIGNED: ClassVar[bool] = True
    seed_commitment: bytes
    entries: tuple[ShareEntry, ...]
    signature: bytes = b""

    def _body(self, w: _W) -> None:
        w.fixed(self.seed_commitment, 32)
        _share_entries(w, self.entries)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        return {"seed_commitment": r.take(32), "entries": _read_share_entries(r)}

    @property
    def ciphertexts(self) -> tuple[tuple[int, bytes], ...]:
        """(holder, ciphertext) for every holder but the dealer itself."""
        return tuple((m, ct) for m, _, _, _, ct in self.entries if m != self.header.sender)

    def commitments(self) -> dict[int, tuple[bytes, bytes]]:
        """holder -> (commitment to its self-seed share, commitment to its masking-key share)."""
        return {m: (cb, cs) for m, cb, cs, _, _ in self.entries}


@dataclass(frozen=True, slots=True)
class ShareRoster(Message):
    """Server -> member: the share entries addressed to it, as (dealer, c_self, c_key, signature, ciphertext)."""

    KIND: ClassVar[Kind] = Kind.SHARE_ROSTER
    entries: tuple[ShareEntry, ...]

    def _body(self, w: _W) -> None:
        _share_entries(w, self.entries)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        return {"entries": _read_share_entries(r)}


@dataclass(frozen=True, slots=True)
class MaskedInput(Message):
    """Member -> server: the masked vector, packed at b bits per coordinate."""

    KIND: ClassVar[Kind] = Kind.MASKED_INPUT
    SIGNED: ClassVar[bool] = True
    payload: bytes
    signature: bytes = b""
    blinding: bytes = b""  # optional: the field coordinate, 32 bytes big-endian (secagg.field)

    def _body(self, w: _W) -> None:
        w.var(self.payload)
        if self.blinding:  # absent: the encoding is exactly the vector-only one
            w.fixed(self.blinding, BLINDING_BYTES)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        out: dict[str, object] = {"payload": r.var()}
        rest = len(r.d) - r.i - SIG_BYTES
        if rest == BLINDING_BYTES:
            out["blinding"] = r.take(BLINDING_BYTES)
        elif rest != 0:
            raise DecodeError(f"masked input: {rest} unexpected bytes before the signature")
        return out


def _members(w: _W, ms: tuple[int, ...]) -> None:
    w.u32(len(ms))
    for m in ms:
        w.u32(m)


def _read_members(r: _R) -> tuple[int, ...]:
    n = r.u32()
    return tuple(r.u32() for _ in range(n))


@dataclass(frozen=True, slots=True)
class SurvivorList(Message):
    """Server -> member: the members whose masked input the server will sum (sorted)."""

    KIND: ClassVar[Kind] = Kind.SURVIVOR_LIST
    survivors: tuple[int, ...]

    def _body(self, w: _W) -> None:
        _members(w, self.survivors)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        return {"survivors": _read_members(r)}


def survivor_statement(session: SessionContext, survivors: tuple[int, ...]) -> bytes:
    """What a member signs in the consistency check: this session, this survivor list."""
    w = _W()
    w.fixed(session.encode(), SessionContext.ENCODED_BYTES)
    _members(w, survivors)
    return domain_hash(Usage.SECAGG_SIGNATURE, b"survivor-list", w.done())


@dataclass(frozen=True, slots=True)
class SurvivorSignature(Message):
    """Member -> server: the member's signature on the survivor list (consistency check)."""

    KIND: ClassVar[Kind] = Kind.SURVIVOR_SIGNATURE
    SIGNED: ClassVar[bool] = True
    list_signature: bytes
    signature: bytes = b""

    def _body(self, w: _W) -> None:
        w.fixed(self.list_signature, SIG_BYTES)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        return {"list_signature": r.take(SIG_BYTES)}


@dataclass(frozen=True, slots=True)
class SurvivorCertificate(Message):
    """Server -> member: the survivor list and the members' signatures on it."""

    KIND: ClassVar[Kind] = Kind.SURVIVOR_CERTIFICATE
    survivors: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...]

    def _body(self, w: _W) -> None:
        _members(w, self.survivors)
        w.u32(len(self.signatures))
        for m, s in self.signatures:
            w.u32(m)
            w.fixed(s, SIG_BYTES)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        sv = _read_members(r)
        n = r.u32()
        return {"survivors": sv, "signatures": tuple((r.u32(), r.take(SIG_BYTES)) for _ in range(n))}


class Revealed(NamedTuple):
    """One share revealed at unmasking, with what opens and authenticates it."""

    owner: int  # the dealer whose secret it is a share of
    kind: ShareType
    share: bytes
    salt: bytes
    c_self: bytes  # the dealer's commitments for this holder, as the holder accepted them ...
    c_key: bytes
    dealer_signature: bytes  # ... and the dealer's signature on them (channel.commitment_statement)


@dataclass(frozen=True, slots=True)
class UnmaskShares(Message):
    """Member -> server: for each neighbour, the share of its self-mask seed or of its masking key,
    the salt that opens the dealer's commitment to it, and the dealer-signed commitments it accepted
    (so its message alone shows whether the share it reveals is the one it was dealt)."""

    KIND: ClassVar[Kind] = Kind.UNMASK_SHARES
    SIGNED: ClassVar[bool] = True
    shares: tuple[Revealed, ...]
    signature: bytes = b""

    def _body(self, w: _W) -> None:
        w.u32(len(self.shares))
        for r in self.shares:
            w.u32(r.owner)
            w.u8(int(r.kind))
            w.var(r.share)
            w.fixed(r.salt, SALT_BYTES)
            w.fixed(r.c_self, 32)
            w.fixed(r.c_key, 32)
            w.fixed(r.dealer_signature, SIG_BYTES)

    @classmethod
    def _parse(cls, header: Header, r: _R) -> dict[str, object]:
        n = r.u32()
        out = []
        for _ in range(n):
            m = r.u32()
            k = r.u8()
            if k not in (0, 1):
                raise DecodeError(f"unknown share type {k}")
            out.append(Revealed(m, ShareType(k), r.var(), r.take(SALT_BYTES), r.take(32), r.take(32),
                                r.take(SIG_BYTES)))
        return {"shares": tuple(out)}


_BY_KIND: dict[int, type[Message]] = {
    c.KIND: c
    for c in (
        AdvertiseKeys,
        KeyRoster,
        ShareKeys,
        ShareRoster,
        MaskedInput,
        SurvivorList,
        SurvivorSignature,
        SurvivorCertificate,
        UnmaskShares,
    )
}


def decode(data: bytes) -> Message:
    """Parse one message; raises DecodeError on anything but an exact, well-formed encoding."""
    r = _R(data)
    version = r.u8()
    if version != VERSION:
        raise DecodeError(f"unsupported version {version}")
    kind = r.u8()
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise DecodeError(f"unknown message kind {kind}")
    header = Header(session=SessionContext.decode(r.take(SessionContext.ENCODED_BYTES)), sender=r.u32(),
                    recipient=r.u32())
    values = cls._parse(header, r)
    if cls.SIGNED:
        values["signature"] = r.take(SIG_BYTES)
    r.finish()
    msg = cls(header=header, **values)  # type: ignore[arg-type]
    return msg


def message_fields(msg: Message) -> list[str]:
    return [f.name for f in fields(msg)]
