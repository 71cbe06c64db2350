"""Member identities and the chain-as-PKI.

A member has one long-term Ed25519 key pair. Its 32-byte public key is what gets registered on
chain (`Identity.public_bytes`). The member's long-term X25519 key-agreement key is the standard
birational image of that key (the libsodium `crypto_sign_ed25519_pk_to_curve25519` map,
u = (1 + y) / (1 - y) mod 2**255 - 19; secret scalar = first half of SHA-512 of the Ed25519 seed),
so one registered bytes32 gives everyone both the signature key and the key-agreement key.
Using one key pair for Ed25519 and X25519 is analysed as secure by Thormarker (2021), "On using the
same key pair for Ed25519 and an X25519 based KEM". A PKI may also be given as explicit
(x25519, ed25519) pairs.

Long-term keys sign protocol messages and encrypt the Shamir shares (HKDF with the task and round
as salt gives fresh per-round channel keys); the masking keys are ephemeral per round, because a
dropped member's masking secret is reconstructed by the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.entropy import random_bytes
from fedledger.secagg.errors import ProtocolViolation

MemberId = NewType("MemberId", int)

_P25519 = (1 << 255) - 19


def x25519_public_from_ed25519(ed_public: bytes) -> bytes:
    """Montgomery u-coordinate of an Ed25519 public key (libsodium's pk_to_curve25519)."""
    if len(ed_public) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(ed_public, "little") & ((1 << 255) - 1)
    if y >= _P25519 or y == 1:
        raise ValueError("not a valid Ed25519 public key encoding")
    u = (1 + y) * pow(1 - y, _P25519 - 2, _P25519) % _P25519
    return u.to_bytes(32, "little")


def x25519_private_from_ed25519_seed(seed: bytes) -> bytes:
    """X25519 secret scalar bytes for an Ed25519 seed (clamping is applied by X25519 itself)."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return hashlib.sha512(seed).digest()[:32]


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What everyone knows about a member: its signature key and its key-agreement key."""

    ed25519: bytes
    x25519: bytes

    def __post_init__(self) -> None:
        if len(self.ed25519) != 32 or len(self.x25519) != 32:
            raise ValueError("public keys are 32 bytes")

    @classmethod
    def from_registered(cls, registered: bytes) -> PublicIdentity:
        """From the 32-byte key a member registered on chain."""
        return cls(ed25519=bytes(registered), x25519=x25519_public_from_ed25519(bytes(registered)))

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise ProtocolViolation unless `signature` is this member's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.ed25519).verify(signature, message)
        except InvalidSignature:
            raise ProtocolViolation("bad signature") from None


class Identity:
    """A member's long-term secret keys (never leaves the member)."""

    __slots__ = ("_ed", "_seed", "_x")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("identity seed must be 32 bytes")
        self._seed = bytes(seed)
        self._ed = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._x = X25519PrivateKey.from_private_bytes(x25519_private_from_ed25519_seed(self._seed))

    @classmethod
    def generate(cls) -> Identity:
        return cls(random_bytes(32))

    @classmethod
    def from_seed(cls, seed: int, member: int) -> Identity:
        """Deterministic identity for simulations and tests (not secret if the seed is known)."""
        return cls(domain_hash(Usage.SEED, b"secagg-identity", str(seed).encode(), str(member).encode()))

    @property
    def public_bytes(self) -> bytes:
        """The 32 bytes to register on chain."""
        return self._ed.public_key().public_bytes_raw()

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(ed25519=self.public_bytes, x25519=self._x.public_key().public_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        return self._ed.sign(message)

    def agree(self, peer_x25519: bytes) -> bytes:
        """Raw X25519 shared secret with a peer's long-term key-agreement key."""
        return self._x.exchange(X25519PublicKey.from_public_bytes(peer_x25519))


Pki = Mapping[int, PublicIdentity]


def pki_from_registered(registered: Mapping[int, bytes]) -> dict[int, PublicIdentity]:
    """Build the PKI from the chain's mapping member id -> registered 32-byte public key."""
    return {int(m): PublicIdentity.from_registered(k) for m, k in registered.items()}
