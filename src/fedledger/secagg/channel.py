"""Key derivation, share encryption and share commitments for SecAgg+, all bound to the session.

Pairwise mask seeds: HKDF-SHA256 over the X25519 secret of two per-session masking keys, salt =
the session encoding, info names the unordered pair. Share channel keys: HKDF-SHA256 over the
X25519 secret of two per-session channel keys (never the long-term identity keys), salt = the
session encoding, info names the ordered (sender, recipient) pair, so each direction of each
session has its own AES-256-GCM key; the associated data is the session encoding, sender and
recipient. Share commitments: a salted hash of (session, dealer, holder, share type, share); the
32-byte salt travels to the holder inside the ciphertext and is revealed with the share.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.context import SessionContext, hkdf
from fedledger.secagg.errors import ProtocolViolation
from fedledger.secagg.keys import x25519_exchange

NONCE_BYTES = 12
SALT_BYTES = 32


def pairwise_seed(my_secret: bytes | X25519PrivateKey, peer_public: bytes, session: SessionContext, a: int,
                  b: int) -> bytes:
    """The 32-byte seed of the pairwise mask between members a and b (order-independent).

    Raises `InvalidKey` if the peer's key is of low order (checked before, and the all-zero secret
    that cryptography refuses with ValueError is mapped to it)."""
    return pairwise_seed_from_shared(x25519_exchange(my_secret, peer_public), session, a, b)


def pairwise_seed_from_shared(shared: bytes, session: SessionContext, a: int, b: int) -> bytes:
    """The pairwise mask seed from the pair's X25519 value (as a blame dispute reveals it, `secagg.dleq`)."""
    lo, hi = min(a, b), max(a, b)
    return hkdf(shared, session, b"pairwise-mask" + struct.pack(">II", lo, hi))


def pair_context(session: SessionContext, a: int, b: int) -> bytes:
    """What a proof of the pair's X25519 value is bound to: the session and the unordered pair."""
    return session.encode() + struct.pack(">II", min(a, b), max(a, b))


def channel_key(my_secret: bytes | X25519PrivateKey, peer_public: bytes, session: SessionContext, sender: int,
                recipient: int) -> bytes:
    """The AES-256-GCM key for shares from `sender` to `recipient` in this session."""
    raw = x25519_exchange(my_secret, peer_public)
    return hkdf(raw, session, b"share-channel" + struct.pack(">II", sender, recipient))


def _aad(session: SessionContext, sender: int, recipient: int) -> bytes:
    return session.encode() + struct.pack(">II", sender, recipient)


def seal(key: bytes, nonce: bytes, plaintext: bytes, session: SessionContext, sender: int, recipient: int) -> bytes:
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(session, sender, recipient))


def open_sealed(key: bytes, data: bytes, session: SessionContext, sender: int, recipient: int) -> bytes:
    if len(data) < NONCE_BYTES + 16:
        raise ProtocolViolation("share ciphertext too short")
    try:
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(session, sender, recipient))
    except InvalidTag:
        raise ProtocolViolation(f"share ciphertext from member {sender} fails authentication") from None


def seed_commitment(session: SessionContext, member: int, seed: bytes) -> bytes:
    """Commitment to a member's self-mask seed (the seed is 256 uniform bits: no salt needed)."""
    return domain_hash(Usage.SECAGG_COMMIT, b"self-seed", session.encode(), struct.pack(">I", member), seed)


def share_commitment(session: SessionContext, dealer: int, holder: int, kind: int, share: bytes, salt: bytes) -> bytes:
    """Salted hash commitment to the share of `dealer`'s secret `kind` (0: self seed, 1: masking key)
    held by `holder`. Binding under SHA-256 collision resistance; hiding by the 256-bit salt."""
    if len(salt) != SALT_BYTES:
        raise ValueError("a commitment salt is 32 bytes")
    return domain_hash(Usage.SECAGG_COMMIT, b"share", session.encode(), struct.pack(">IIB", dealer, holder, kind),
                       share, salt)


def commitment_statement(session: SessionContext, dealer: int, holder: int, c_self: bytes, c_key: bytes) -> bytes:
    """What a dealer signs per holder, so the holder can check its shares against what the server will
    check them against (and so nobody can later blame the holder for the dealer's commitments)."""
    return domain_hash(Usage.SECAGG_SIGNATURE, b"share-commitments", session.encode(),
                       struct.pack(">II", dealer, holder), c_self, c_key)


def public_of(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
