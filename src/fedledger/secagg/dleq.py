"""A verifiable pairwise Diffie-Hellman value: who of two members lied about their pair's mask.

Blame (`zk.binding.blame`) has both ends of each pair report kappa_ij, a projection of their pairwise mask. A
member that lies about one kappa to fix its own equation only makes the pair "disputed": from the reports alone
either end may be the liar. The pair's mask seed is HKDF over X25519(a_i, A_j) = X25519(a_j, A_i), with A_i, A_j the
masking keys both members signed in AdvertiseKeys. An end of a disputed pair settles it by revealing that shared
value with a proof that it is right: a Chaum-Pedersen proof of equal discrete logarithms (Chaum and Pedersen,
"Wallet databases with observers", CRYPTO '92), made non-interactive with Fiat-Shamir, that

    log_G8(A) = log_P8(K)     with G8 = 8 B (B the Ed25519 base point), P8 = 8 P (P a lift of the peer's key)

where u(A) is the prover's signed masking key and u(K) is the X25519 output (X25519 clamps the scalar to a
multiple of 8: a = 8 a', so a B = a' G8 and a P = a' P8; the factor 8 also clears any small-order part of P).
Only the liar's partner already knows the revealed value (it computed the same one), so revealing it exposes
nothing to the aggregator that a colluding liar could not hand over anyway; a member answers only for a pair whose
other end's signed report contradicts its own (`protocol.secure`).

Points are in Edwards25519 extended coordinates (`keys._add`, RFC 8032 section 5.1); the Montgomery u-coordinate
of an Edwards point is (1 + y) / (1 - y) (RFC 7748 section 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.core.hashing import Usage, domain_hash
from fedledger.secagg.errors import InvalidKey, ProtocolViolation
from fedledger.secagg.keys import _D, _L, _P25519, _SQRT_M1, _add, _is_identity, _mul, _Point

_P = _P25519
_BY = 4 * pow(5, _P - 2, _P) % _P  # the base point's y (RFC 8032 section 5.1), x even
_TAG = b"secagg/pairwise-dleq"


def _x_of(y: int, sign: int) -> int | None:
    yy = y * y % _P
    x2 = (yy - 1) * pow(_D * yy + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = (_P - x) % _P
    return x


def _point(y: int, sign: int) -> _Point | None:
    x = _x_of(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_B = _point(_BY, 0)
assert _B is not None
_G8 = _mul(8, _B)


def _affine(p: _Point) -> tuple[int, int]:
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    return x * zi % _P, y * zi % _P


def encode(p: _Point) -> bytes:
    x, y = _affine(p)
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(data: bytes) -> _Point:
    """A canonical Edwards25519 encoding of a point of prime order L (raises `ProtocolViolation` otherwise)."""
    if len(data) != 32:
        raise ProtocolViolation("a point is 32 bytes")
    raw = int.from_bytes(data, "little")
    y, sign = raw & ((1 << 255) - 1), raw >> 255
    p = _point(y, sign) if y < _P else None
    if p is None or (p[0] == 0 and sign) or _is_identity(p) or not _is_identity(_mul(_L, p)):
        raise ProtocolViolation("not the canonical encoding of a point of prime order")
    return p


def u_of(p: _Point) -> bytes:
    """The Montgomery u-coordinate (X25519 encoding) of an Edwards point."""
    _, y = _affine(p)
    return ((1 + y) * pow(1 - y, _P - 2, _P) % _P).to_bytes(32, "little")


def _lift8(u_bytes: bytes) -> _Point:
    """8 P for the lift P of a Montgomery u-coordinate with even x (either lift gives the same u(a P))."""
    u = int.from_bytes(u_bytes, "little")
    if len(u_bytes) != 32 or u >= _P or (u + 1) % _P == 0:
        raise InvalidKey("not a canonical X25519 key")
    p = _point((u - 1) * pow(u + 1, _P - 2, _P) % _P, 0)
    if p is None:
        raise InvalidKey("the X25519 key is on the twist, not on Curve25519")
    out = _mul(8, p)
    if _is_identity(out):
        raise InvalidKey("X25519 key of low order")
    return out


def _clamped(secret: bytes) -> int:
    k = bytearray(secret)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(bytes(k), "little")


def _challenge(context: bytes, a: _Point, k: _Point, p8: _Point, r1: _Point, r2: _Point) -> int:
    digest = domain_hash(Usage.SECAGG_COMMIT, _TAG, context, encode(a), encode(k), encode(p8), encode(r1),
                         encode(r2))
    return int.from_bytes(digest, "big") % _L


@dataclass(frozen=True)
class SharedProof:
    """The prover's masking key A and shared point K (encoded), with the proof (c, s) that log_G8 A = log_P8 K."""

    a: bytes
    k: bytes
    c: int
    s: int

    @property
    def shared(self) -> bytes:
        """The X25519 output the proof certifies: u(K)."""
        return u_of(decode(self.k))

    def to_json(self) -> dict[str, str]:
        return {"a": self.a.hex(), "k": self.k.hex(), "c": hex(self.c), "s": hex(self.s)}

    @classmethod
    def from_json(cls, d: object) -> SharedProof:
        try:
            assert isinstance(d, dict)
            return cls(bytes.fromhex(d["a"]), bytes.fromhex(d["k"]), int(d["c"], 16), int(d["s"], 16))
        except (AssertionError, KeyError, TypeError, ValueError) as e:
            raise ProtocolViolation(f"malformed shared-value proof: {e}") from None


def prove_shared(secret: bytes, peer_public: bytes, context: bytes, nonce: bytes) -> SharedProof:
    """Prove X25519(secret, peer_public) for the key `secret` is the private half of. `nonce`: 32+ fresh bytes
    (OS CSPRNG); the commitment scalar also hashes the secret, so a repeated nonce never leaks it."""
    a8 = _clamped(secret) >> 3
    p8 = _lift8(peer_public)
    a, k = _mul(a8, _G8), _mul(a8, p8)
    w = int.from_bytes(domain_hash(Usage.SECAGG_COMMIT, _TAG + b"/nonce", secret, nonce, context), "big") % _L
    r1, r2 = _mul(w, _G8), _mul(w, p8)
    c = _challenge(context, a, k, p8, r1, r2)
    return SharedProof(encode(a), encode(k), c, (w + c * a8) % _L)


def _neg(p: _Point) -> _Point:
    x, y, z, t = p
    return (-x) % _P, y, z, (-t) % _P


def verify_shared(proof: SharedProof, prover_public: bytes, peer_public: bytes, context: bytes) -> bytes:
    """The X25519 value between the two keys, if `proof` shows it (raises `ProtocolViolation` otherwise)."""
    a, k = decode(proof.a), decode(proof.k)
    if u_of(a) != bytes(prover_public):
        raise ProtocolViolation("the proof is for another key than the prover's masking key")
    if not (0 <= proof.c < _L and 0 <= proof.s < _L):
        raise ProtocolViolation("proof scalars out of range")
    try:
        p8 = _lift8(peer_public)
    except InvalidKey as e:
        raise ProtocolViolation(str(e)) from None
    r1 = _add(_mul(proof.s, _G8), _neg(_mul(proof.c, a)))
    r2 = _add(_mul(proof.s, p8), _neg(_mul(proof.c, k)))
    if _challenge(context, a, k, p8, r1, r2) != proof.c:
        raise ProtocolViolation("the shared-value proof does not verify")
    shared = u_of(k)
    if int.from_bytes(shared, "little") == 0:
        raise ProtocolViolation("all-zero shared value")
    return shared

