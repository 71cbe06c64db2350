"""How roles talk: signed-off envelopes over a `Transport`.

Roles never call each other; they put `Envelope`s on a transport and read their own inbox. The
in-process transport here is a set of thread-safe queues; a network transport implements the same
three methods, so role code does not change when members run on separate machines.

An envelope carries opaque payload bytes: each role family (SecAgg+, proofs, validation) encodes its own
versioned message types. The transport counts bytes in and out per address, which is what results.json
reports as `bytes_up` and `bytes_down`.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from fedledger.core.errors import FedLedgerError

ENVELOPE_VERSION = 1


class TransportError(FedLedgerError, ConnectionError):
    exit_code = 8


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    topic: str
    payload: bytes

    def to_bytes(self) -> bytes:
        parts = [p.encode() for p in (self.sender, self.recipient, self.topic)]
        head = bytes([ENVELOPE_VERSION]) + b"".join(len(p).to_bytes(2, "big") for p in parts)
        return head + b"".join(parts) + len(self.payload).to_bytes(4, "big") + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if not data or data[0] != ENVELOPE_VERSION:
            raise TransportError("envelope has an unknown version")
        try:
            lens = [int.from_bytes(data[1 + 2 * i : 3 + 2 * i], "big") for i in range(3)]
            pos = 7
            fields = []
            for n in lens:
                fields.append(data[pos : pos + n].decode())
                pos += n
            size = int.from_bytes(data[pos : pos + 4], "big")
            payload = data[pos + 4 : pos + 4 + size]
        except (UnicodeDecodeError, IndexError) as e:
            raise TransportError(f"malformed envelope: {e}") from None
        if len(payload) != size or pos + 4 + size != len(data):
            raise TransportError("envelope length does not match its header (truncated or trailing bytes)")
        return cls(fields[0], fields[1], fields[2], payload)

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.sender) + len(self.recipient) + len(self.topic) + 11


class Transport(Protocol):
    def register(self, address: str) -> None: ...

    def send(self, envelope: Envelope) -> None: ...

    def receive(self, address: str, timeout: float | None = None) -> Envelope | None: ...


class InProcessTransport:
    """Queues in one process. Each envelope is serialized and parsed, as a network would force."""

    def __init__(self) -> None:
        self._inboxes: dict[str, queue.Queue[bytes]] = {}
        self._lock = threading.Lock()
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.bytes_received: dict[str, int] = defaultdict(int)

    def register(self, address: str) -> None:
        with self._lock:
            self._inboxes.setdefault(address, queue.Queue())

    def send(self, envelope: Envelope) -> None:
        inbox = self._inboxes.get(envelope.recipient)
        if inbox is None:
            raise TransportError(f"no such address on this transport: {envelope.recipient!r}")
        wire = envelope.to_bytes()
        with self._lock:
            self.bytes_sent[envelope.sender] += len(wire)
            self.bytes_received[envelope.recipient] += len(wire)
        inbox.put(wire)

    def receive(self, address: str, timeout: float | None = None) -> Envelope | None:
        inbox = self._inboxes.get(address)
        if inbox is None:
            raise TransportError(f"no such address on this transport: {address!r}")
        try:
            wire = inbox.get(timeout=timeout) if timeout else inbox.get_nowait()
        except queue.Empty:
            return None
        return Envelope.from_bytes(wire)

    def drain(self, address: str) -> list[Envelope]:
        """Every envelope waiting for `address`, in arrival order."""
        out = []
        while (env := self.receive(address)) is not None:
            out.append(env)
        return out
