"""CIDv1 (raw, sha2-256, base32) addresses against published vectors (no chain needed).

Vectors: `ipfs add --cid-version 1 --raw-leaves` of an empty file and of the 11 bytes "hello world",
as published in the IPFS docs and the multiformats CID spec's examples. By hand: the CID's binary form is
01 (CIDv1) 55 (raw) 12 (sha2-256) 20 (32 bytes) then the digest; base32 of 0x01 0x55 0x12 0x20 0xe3...
starts "afkrei" and the multibase prefix adds "b", hence "bafkrei"; sha256("") = e3b0c442...b855 and
sha256("hello world") = b94d27b9...cde9 (FIPS 180-4 test usage, widely published).
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from fedledger.core.errors import IntegrityError
from fedledger.node.cid import InvalidCid, cid_of, digest_of, verify

EMPTY = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_known_vectors() -> None:
    assert cid_of(b"") == EMPTY
    assert cid_of(b"hello world") == HELLO
    assert digest_of(EMPTY).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert digest_of(HELLO).hex() == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"


def test_binary_layout_by_hand() -> None:
    raw = base64.b32decode(HELLO[1:].upper() + "=" * (-len(HELLO[1:]) % 8))
    assert raw[:4] == bytes([0x01, 0x55, 0x12, 0x20]) and raw[4:] == hashlib.sha256(b"hello world").digest()


def test_verify_refuses_other_bytes() -> None:
    verify(HELLO, b"hello world")
    with pytest.raises(IntegrityError, match="does not match"):
        verify(HELLO, b"hello world!")


@pytest.mark.parametrize(
    "bad",
    [
        HELLO.upper(),  # base32 CIDs are lower case (multibase 'B' is another base)
        "z" + HELLO[1:],  # another multibase
        HELLO[:-1],  # truncated
        HELLO + "a",
        "b" + base64.b32encode(bytes([1, 0x70, 0x12, 0x20]) + bytes(32)).decode().lower().rstrip("="),  # dag-pb
        "b" + base64.b32encode(bytes([1, 0x55, 0x13, 0x20]) + bytes(32)).decode().lower().rstrip("="),  # sha-512 code
        HELLO[:-1] + "f",  # non-zero padding bits: a second spelling of the same digest
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",  # CIDv0
    ],
)
def test_refuses_anything_but_canonical_raw_sha256_cidv1(bad: str) -> None:
    with pytest.raises(InvalidCid):
        digest_of(bad)
