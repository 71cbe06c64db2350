"""The messages roles exchange over a `Transport`: plain, versioned, serializable.

Each message encodes to bytes that a network transport can carry unchanged: a version byte, a
length-prefixed JSON header with the scalar fields, then the raw little-endian array data. Decoding
checks the version, the kind and the exact length, so a truncated or padded message is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fedledger.core.errors import IntegrityError

MESSAGE_VERSION = 1
UPDATE_TOPIC = "update"


class MessageError(IntegrityError):
    """A message that does not decode: wrong version, kind or length."""


@dataclass(frozen=True)
class UpdateMessage:
    """A trainer's visible update for one attempt of a round (no member-level DP: the aggregator sees it)."""

    task_id: int
    round_id: int
    attempt: int
    member: int
    num_examples: int
    normalizer: float  # FedNova's local-step normalizer (the local steps taken, for plain SGD)
    train_loss: float
    update: np.ndarray  # float32 [d]: trained model minus the global model

    KIND = "update"

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "kind": self.KIND, "task_id": self.task_id, "round_id": self.round_id, "attempt": self.attempt,
            "member": self.member, "num_examples": self.num_examples, "normalizer": self.normalizer,
            "train_loss": self.train_loss, "length": int(self.update.size),
        }, sort_keys=True).encode()
        body = np.ascontiguousarray(self.update, dtype="<f4").tobytes()
        return bytes([MESSAGE_VERSION]) + len(header).to_bytes(4, "big") + header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> UpdateMessage:
        if len(data) < 5 or data[0] != MESSAGE_VERSION:
            raise MessageError(f"update message: unknown version {data[0] if data else None}")
        size = int.from_bytes(data[1:5], "big")
        try:
            head = json.loads(data[5 : 5 + size])
            if head["kind"] != cls.KIND:
                raise MessageError(f"update message: kind is {head['kind']!r}")
            body = data[5 + size :]
            if len(body) != 4 * int(head["length"]):
                raise MessageError("update message: body length does not match its header")
            return cls(int(head["task_id"]), int(head["round_id"]), int(head["attempt"]), int(head["member"]),
                       int(head["num_examples"]), float(head["normalizer"]), float(head["train_loss"]),
                       np.frombuffer(body, dtype="<f4").astype(np.float32))
        except (ValueError, KeyError, TypeError) as e:
            raise MessageError(f"update message: malformed header ({e})") from None
