"""Authenticated protocol messages: every message signed by its sender's key registered on chain.

A `Signed` message carries its `Context` (chain id, task manager address, task, round, attempt, topic),
the sender's address, an opaque payload (a role family's own versioned encoding) and an Ed25519
signature over `statement()`: a domain-separated hash of the canonical, length-prefixed encoding of all
of the above. So a signature made for one chain, contract, task, round, attempt or topic verifies for no
other, and a message cannot be re-attributed to another sender.

`Registry` is the chain as PKI: it maps an address to the Ed25519 key that address registered
(`TaskManager.members(address).pubkey`). `Inbox` is what a receiver runs on every envelope: decode,
check the context is the one it expects, check the sender is registered and is who the envelope says,
verify the signature, refuse a message it has already accepted (replay). Anything else raises
`MessageError`; a receiver catches it at its edge and drops the envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fedledger.core.hashing import Usage, domain_hash
from fedledger.protocol.messages import MessageError
from fedledger.secagg.errors import ProtocolViolation
from fedledger.secagg.keys import Identity, PublicIdentity

SIGNED_VERSION = 1
_DST = b"fedledger/protocol-message/v1"
SIGNATURE_BYTES = 64


def _u(n: int, width: int = 8) -> bytes:
    if n < 0 or n >> (8 * width):
        raise MessageError(f"integer {n} does not fit in {width} bytes")
    return n.to_bytes(width, "big")


def _var(b: bytes) -> bytes:
    return _u(len(b), 4) + b


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MessageError("signed message: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, width: int = 8) -> int:
        return int.from_bytes(self.take(width), "big")

    def var(self) -> bytes:
        return self.take(self.u(4))

    def text(self) -> str:
        try:
            return self.var().decode()
        except UnicodeDecodeError:
            raise MessageError("signed message: a text field is not UTF-8") from None

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise MessageError("signed message: trailing bytes")


@dataclass(frozen=True, slots=True)
class Context:
    """What a message is about. Part of every signed statement."""

    chain_id: int
    contract: str  # the TaskManager address, 0x-hex
    task: int
    round: int
    attempt: int
    topic: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "contract", self.contract.lower())  # one spelling of an address

    def encode(self) -> bytes:
        return b"".join([_u(self.chain_id), _var(self.contract.lower().encode()), _u(self.task), _u(self.round),
                         _u(self.attempt), _var(self.topic.encode())])

    def with_topic(self, topic: str) -> Context:
        return Context(self.chain_id, self.contract, self.task, self.round, self.attempt, topic)


@dataclass(frozen=True, slots=True)
class Signed:
    """A payload, who sent it, about what, and the sender's signature over all of that."""

    context: Context
    sender: str
    payload: bytes
    signature: bytes = b""

    def statement(self) -> bytes:
        return domain_hash(Usage.SECAGG_SIGNATURE, _DST, self.context.encode(), self.sender.lower().encode(),
                           self.payload)

    @classmethod
    def make(cls, identity: Identity, context: Context, sender: str, payload: bytes) -> Signed:
        unsigned = cls(context, sender, payload)
        return cls(context, sender, payload, identity.sign(unsigned.statement()))

    def to_bytes(self) -> bytes:
        return bytes([SIGNED_VERSION]) + self.context.encode() + _var(self.sender.encode()) + _var(self.payload) \
            + _var(self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> Signed:
        if not data or data[0] != SIGNED_VERSION:
            raise MessageError("signed message: unknown version")
        r = _Reader(data[1:])
        ctx = Context(r.u(), r.text(), r.u(), r.u(), r.u(), r.text())
        sender, payload, signature = r.text(), r.var(), r.var()
        r.finish()
        if len(signature) != SIGNATURE_BYTES:
            raise MessageError("signed message: the signature is not 64 bytes")
        return cls(ctx, sender, payload, signature)

    @property
    def digest(self) -> bytes:
        return domain_hash(Usage.EVIDENCE, b"signed-message", self.to_bytes())


@dataclass
class Registry:
    """The chain as PKI: address -> (the public key, the metadata) it registered. `lookup` reads the chain
    on a miss (`TaskManager.members(address)`); None for an address that never registered."""

    lookup: Callable[[str], tuple[bytes, bytes] | None]
    _cache: dict[str, tuple[PublicIdentity, bytes]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Mapping[str, tuple[bytes, bytes]]) -> Registry:
        known = {a.lower(): k for a, k in entries.items()}
        return cls(lambda a: known.get(a.lower()))

    def _entry(self, address: str) -> tuple[PublicIdentity, bytes]:
        a = address.lower()
        if a not in self._cache:
            found = self.lookup(address)
            if found is None:
                raise MessageError(f"{address} has no key registered on chain")
            try:
                self._cache[a] = (PublicIdentity.from_registered(found[0]), bytes(found[1]))
            except ValueError as e:
                raise MessageError(f"{address} registered an invalid key: {e}") from None
        return self._cache[a]

    def key(self, address: str) -> PublicIdentity:
        return self._entry(address)[0]

    def committed_examples(self, address: str) -> int:
        """The data-set size a trainer committed to when it joined: the first 8 bytes of its registered
        metadata (`data_commitment`)."""
        return int.from_bytes(self._entry(address)[1][:8], "big")

    def verify(self, msg: Signed) -> None:
        """Raise `MessageError` unless `msg` is signed by the key its sender registered."""
        try:
            self.key(msg.sender).verify(msg.signature, msg.statement())
        except ProtocolViolation:
            raise MessageError(f"signed message: bad signature for sender {msg.sender}") from None


def check(msg: Signed, registry: Registry, expected: Context, *, envelope_sender: str | None = None,
          senders: frozenset[str] | None = None) -> None:
    """Everything a receiver checks before using a message (raises `MessageError`)."""
    if msg.context != expected:
        raise MessageError(f"signed message: for {msg.context}, expected {expected} (replayed or misdirected)")
    if envelope_sender is not None and envelope_sender.lower() != msg.sender.lower():
        raise MessageError("signed message: the envelope's sender is not the signer")
    if senders is not None and msg.sender.lower() not in senders:
        raise MessageError(f"signed message: {msg.sender} may not send {expected.topic!r} in this round")
    registry.verify(msg)


def data_commitment(examples: int, digest: bytes) -> bytes:
    """A trainer's registered metadata: its example count (8 bytes, big-endian) then 24 bytes of a digest
    of its data. The count bounds the weight its updates may claim."""
    if not 0 <= examples < 1 << 64:
        raise ValueError("example count out of range")
    return examples.to_bytes(8, "big") + domain_hash(Usage.DATASET, b"data-commitment", digest)[:24]


@dataclass
class ReplayGuard:
    """Refuses a message already accepted (same bytes), whatever its context."""

    seen: set[bytes] = field(default_factory=set)

    def admit(self, msg: Signed) -> None:
        d = msg.digest
        if d in self.seen:
            raise MessageError("signed message: already received (replay)")
        self.seen.add(d)
