"""Member identities, the chain-as-PKI, and the validation of every public key before use.

A member has one long-term Ed25519 key pair. Its 32-byte public key is what gets registered on
chain (`Identity.public_bytes`); it signs every protocol message. Key agreement never uses it:
each member draws fresh X25519 keys for every session (a channel key for the share ciphertexts and
a masking key for the pairwise masks, `client.client_start`) and signs them in `AdvertiseKeys`
with its identity key, so a reopened attempt or a re-sum shares nothing secret with an earlier one.

`check_identity_key(key)` is the registration-time check (the ledger's registration path should
call it before accepting a key): it refuses non-canonical encodings, points not on the curve, the
eight small-order points (the identity y = 1, the order-2 point y = -1, the order-4 and order-8
points) in any encoding, and points outside the prime-order subgroup. Under a small-order key,
signatures can be forged without any secret (for A of order 2, S = 0 and R = -[k]A verifies for
half the messages), so such a key would let anyone speak for its member. `check_x25519_key(u)`
refuses non-canonical u-coordinates and the low-order ones (Bernstein's list, cr.yp.to/ecdh.html:
0, 1, two points of order 8 and p - 1), with which X25519 yields the all-zero secret.

`Identity.from_seed` and `simulated_identities` (driver) are DETERMINISTIC SIMULATION MODE: the
secret keys follow from the seed and are secret only as long as the seed is.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.entropy import random_bytes
from fedledger.secagg.errors import InvalidKey, ProtocolViolation

MemberId = NewType("MemberId", int)

_P25519 = (1 << 255) - 19
# Edwards25519 (RFC 8032 section 5.1): -x^2 + y^2 = 1 + d x^2 y^2, base point order L
_D = -121665 * pow(121666, _P25519 - 2, _P25519) % _P25519
_SQRT_M1 = pow(2, (_P25519 - 1) // 4, _P25519)
_L = (1 << 252) + 27742317777372353535851937790883648493
# u-coordinates (mod p) of the low-order points of Curve25519 and its twist (cr.yp.to/ecdh.html)
LOW_ORDER_U = frozenset({
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P25519 - 1,
})

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(p: _Point, q: _Point) -> _Point:
    """Unified addition in extended coordinates (RFC 8032 section 5.1.4); also doubles."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P25519
    b = (y1 + x1) * (y2 + x2) % _P25519
    c = 2 * t1 * t2 * _D % _P25519
    dd = 2 * z1 * z2 % _P25519
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return e * f % _P25519, g * h % _P25519, f * g % _P25519, e * h % _P25519


def _mul(k: int, p: _Point) -> _Point:
    out = _IDENTITY
    while k:
        if k & 1:
            out = _add(out, p)
        p = _add(p, p)
        k >>= 1
    return out


def _is_identity(p: _Point) -> bool:
    x, y, z, _ = p
    return x % _P25519 == 0 and (y - z) % _P25519 == 0


@functools.lru_cache(maxsize=4096)
def check_identity_key(key: bytes) -> None:
    """Raise `InvalidKey` unless `key` is the canonical encoding of an Ed25519 point of prime order L.

    Refused: wrong length; y >= p (non-canonical); x = 0 with the sign bit set (non-canonical
    encodings of y = 1 and y = -1); no point with that y; any point of small order (8A = O: the
    identity, y = -1 of order 2, the order-4 points y = 0, the order-8 points); points with a
    small-order component ([L]A != O). RFC 8032 section 5.1.3 decoding.
    """
    key = bytes(key)
    if len(key) != 32:
        raise InvalidKey(f"an Ed25519 public key is 32 bytes, got {len(key)}")
    raw = int.from_bytes(key, "little")
    sign = raw >> 255
    y = raw & ((1 << 255) - 1)
    if y >= _P25519:
        raise InvalidKey("non-canonical Ed25519 key: y >= p")
    yy = y * y % _P25519
    num = (yy - 1) % _P25519
    den = (_D * yy + 1) % _P25519
    x2 = num * pow(den, _P25519 - 2, _P25519) % _P25519
    x = pow(x2, (_P25519 + 3) // 8, _P25519)
    if (x * x - x2) % _P25519:
        x = x * _SQRT_M1 % _P25519
    if (x * x - x2) % _P25519:
        raise InvalidKey("Ed25519 key is not a point on the curve")
    if x == 0 and sign:
        raise InvalidKey("non-canonical Ed25519 key: x = 0 with the sign bit set")
    if x & 1 != sign:
        x = _P25519 - x
    point: _Point = (x, y, 1, x * y % _P25519)
    if _is_identity(_mul(8, point)):
        raise InvalidKey("Ed25519 key of small order (signatures under it can be forged)")
    if not _is_identity(_mul(_L, point)):
        raise InvalidKey("Ed25519 key outside the prime-order subgroup")


def check_x25519_key(key: bytes) -> None:
    """Raise `InvalidKey` unless `key` is a canonical X25519 u-coordinate of a point of large order."""
    key = bytes(key)
    if len(key) != 32:
        raise InvalidKey(f"an X25519 public key is 32 bytes, got {len(key)}")
    u = int.from_bytes(key, "little")
    if u >= _P25519:  # includes the top bit set (RFC 7748 would silently mask it)
        raise InvalidKey("non-canonical X25519 key: u >= p")
    if u in LOW_ORDER_U:
        raise InvalidKey("X25519 key of low order (the shared secret would be all zero)")


def x25519_exchange(secret: bytes | X25519PrivateKey, peer_public: bytes) -> bytes:
    """X25519(secret, peer_public); a low-order peer key raises `InvalidKey` (never an all-zero secret)."""
    check_x25519_key(peer_public)
    key = secret if isinstance(secret, X25519PrivateKey) else X25519PrivateKey.from_private_bytes(secret)
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # cryptography refuses an all-zero shared secret
        raise InvalidKey("X25519 key agreement gives the all-zero secret") from None


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
    """What everyone knows about a member: its registered signature key (and that key's X25519 image,
    kept for callers of the long-term key; the protocol itself agrees keys per session only)."""

    ed25519: bytes
    x25519: bytes

    def __post_init__(self) -> None:
        if len(self.ed25519) != 32 or len(self.x25519) != 32:
            raise ValueError("public keys are 32 bytes")

    @classmethod
    def from_registered(cls, registered: bytes) -> PublicIdentity:
        """From the 32-byte key a member registered on chain. An invalid key still gives a value (so
        one bad registration does not break everyone's PKI); `check()` and `verify` refuse it."""
        key = bytes(registered)
        try:
            x = x25519_public_from_ed25519(key)
        except ValueError:
            x = bytes(32)  # y = 1 or y >= p: refused by check() anyway
        return cls(ed25519=key, x25519=x)

    def check(self) -> None:
        """Raise `InvalidKey` if the registered key is not a valid, prime-order Ed25519 key."""
        check_identity_key(self.ed25519)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise ProtocolViolation unless `signature` is this member's Ed25519 signature of `message`
        (`InvalidKey` if the registered key itself is invalid: nothing verifies under it)."""
        self.check()
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
        """A fresh identity from the operating system's CSPRNG (what a real member uses)."""
        return cls(random_bytes(32))

    @classmethod
    def from_seed(cls, seed: int, member: int) -> Identity:
        """DETERMINISTIC SIMULATION MODE: an identity that anybody who knows `seed` can rebuild."""
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
        """Raw X25519 shared secret with a peer's long-term key-agreement key (not used by SecAgg+)."""
        return x25519_exchange(x25519_private_from_ed25519_seed(self._seed), peer_x25519)


Pki = Mapping[int, PublicIdentity]


def pki_from_registered(registered: Mapping[int, bytes]) -> dict[int, PublicIdentity]:
    """Build the PKI from the chain's mapping member id -> registered 32-byte public key."""
    return {int(m): PublicIdentity.from_registered(k) for m, k in registered.items()}
