"""Key derivation and share encryption for SecAgg+.

Pairwise mask seeds: HKDF-SHA256 over the X25519 secret of two ephemeral masking keys, salt =
task id || round, info names the unordered pair. Share channel keys: HKDF-SHA256 over the X25519
secret of two long-term (chain-registered) keys, salt = task id || round, info names the ordered
(sender, recipient) pair, so each direction of each round has its own AES-256-GCM key; the
associated data binds the ciphertext to the task, round, sender and recipient.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.errors import ProtocolViolation

NONCE_BYTES = 12


def _salt(task_id: bytes, round_index: int) -> bytes:
    return task_id + struct.pack(">Q", round_index)


def hkdf(secret: bytes, task_id: bytes, round_index: int, info: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_salt(task_id, round_index), info=b"fedledger/v1/" + info
    ).derive(secret)


def pairwise_seed(my_secret: bytes, peer_public: bytes, task_id: bytes, round_index: int, a: int, b: int) -> bytes:
    """The 32-byte seed of the pairwise mask between members a and b (order-independent)."""
    lo, hi = min(a, b), max(a, b)
    raw = X25519PrivateKey.from_private_bytes(my_secret).exchange(X25519PublicKey.from_public_bytes(peer_public))
    return hkdf(raw, task_id, round_index, b"secagg/pairwise-mask" + struct.pack(">II", lo, hi))


def channel_key(raw_secret: bytes, task_id: bytes, round_index: int, sender: int, recipient: int) -> bytes:
    return hkdf(raw_secret, task_id, round_index, b"secagg/share-channel" + struct.pack(">II", sender, recipient))


def _aad(task_id: bytes, round_index: int, sender: int, recipient: int) -> bytes:
    return task_id + struct.pack(">QII", round_index, sender, recipient)


def seal(key: bytes, nonce: bytes, plaintext: bytes, task_id: bytes, round_index: int, sender: int,
         recipient: int) -> bytes:
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(task_id, round_index, sender, recipient))


def open_sealed(key: bytes, data: bytes, task_id: bytes, round_index: int, sender: int, recipient: int) -> bytes:
    if len(data) < NONCE_BYTES + 16:
        raise ProtocolViolation("share ciphertext too short")
    try:
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                   _aad(task_id, round_index, sender, recipient))
    except InvalidTag:
        raise ProtocolViolation(f"share ciphertext from member {sender} fails authentication") from None


def seed_commitment(task_id: bytes, round_index: int, member: int, seed: bytes) -> bytes:
    return domain_hash(Usage.SECAGG_COMMIT, task_id, struct.pack(">QI", round_index, member), seed)


def public_of(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
