"""IPFS-compatible content identifiers: CIDv1, raw codec, sha2-256, base32.

A blob's network address is the CIDv1 of its bytes (multiformats CID spec,
https://github.com/multiformats/cid, "CIDv1"): the varint version 1, the multicodec of the content
(`raw` 0x55: the bytes themselves, no IPLD structure), and the multihash of the content (sha2-256:
code 0x12, digest length 0x20, then the 32-byte digest; https://github.com/multiformats/multihash),
written with the multibase prefix `b` and RFC 4648 base32 in lower case without padding
(https://github.com/multiformats/multibase). All four leading values are below 0x80, so their
unsigned varints are single bytes: every address is `b` + base32(01 55 12 20 || sha256(data)),
59 characters starting `bafkrei`, and `ipfs add --raw-leaves --cid-version 1` of a blob that fits
one block gives the same CID, so a deployment can pin the same blobs on IPFS.

The CID is the plain SHA-256 of the bytes (no domain separation) because that is what IPFS
computes; what a blob means is bound by the signed messages and chain records that name it.
"""

from __future__ import annotations

import base64
import hashlib

from fedledger.core.errors import IntegrityError

CID_VERSION = 0x01
RAW_CODEC = 0x55
SHA2_256 = 0x12
DIGEST_SIZE = 0x20
PREFIX = bytes([CID_VERSION, RAW_CODEC, SHA2_256, DIGEST_SIZE])
MULTIBASE_BASE32 = "b"
CID_LENGTH = 1 + 58  # "b" + ceil(36 * 8 / 5) base32 characters


class InvalidCid(IntegrityError):
    """A string that is not a CIDv1 raw/sha2-256 base32 address."""


def cid_of_digest(digest: bytes) -> str:
    if len(digest) != DIGEST_SIZE:
        raise InvalidCid(f"a sha2-256 digest is 32 bytes, not {len(digest)}")
    return MULTIBASE_BASE32 + base64.b32encode(PREFIX + digest).decode().lower().rstrip("=")


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of `data`."""
    return cid_of_digest(hashlib.sha256(data).digest())


def digest_of(cid: str) -> bytes:
    """The sha2-256 digest a CID names; anything but a canonical CIDv1 raw/sha2-256 base32 string is refused."""
    if not isinstance(cid, str) or len(cid) != CID_LENGTH or not cid.startswith(MULTIBASE_BASE32):
        raise InvalidCid(f"not a CIDv1 raw/sha2-256 base32 address: {cid!r:.80}")
    body = cid[1:]
    if body != body.lower():
        raise InvalidCid(f"a base32 CID is lower case: {cid!r}")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidCid(f"not base32: {cid!r}") from None
    if raw[:4] != PREFIX:
        raise InvalidCid(f"only CIDv1 raw (0x55) sha2-256 (0x12, 32 bytes) addresses are served: {cid!r}")
    digest = raw[4:]
    if cid_of_digest(digest) != cid:  # the unused low bits of the last character must be zero
        raise InvalidCid(f"not the canonical spelling of its CID: {cid!r}")
    return digest


def verify(cid: str, data: bytes) -> None:
    """Raise `IntegrityError` unless `data` is what `cid` names."""
    if hashlib.sha256(data).digest() != digest_of(cid):
        raise IntegrityError(f"content does not match its address {cid} (tampered or corrupt)")
