"""Shamir sharing, mask expansion (the Flower seed-folding fault cannot exist), packing, keys."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from fedledger.secagg import shamir
from fedledger.secagg.entropy import CryptoRng
from fedledger.secagg.errors import DecodeError
from fedledger.secagg.keys import Identity, PublicIdentity, x25519_public_from_ed25519
from fedledger.secagg.packing import pack, packed_size, unpack
from fedledger.secagg.prg import expand_mask


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), k=st.integers(1, 40), data=st.data())
def test_any_threshold_subset_recovers_the_secret(secret: bytes, k: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, k))
    xs = data.draw(st.lists(st.integers(1, shamir.PRIME - 1), min_size=k, max_size=k, unique=True))
    shares = shamir.split(secret, xs, t, CryptoRng(os.urandom(32)))
    idx = data.draw(st.lists(st.integers(0, k - 1), min_size=t, max_size=t, unique=True))
    assert shamir.combine([xs[i] for i in idx], [shares[i] for i in idx]) == secret


def test_fewer_than_threshold_shares_do_not_recover() -> None:
    secret = os.urandom(32)
    xs = list(range(1, 8))
    shares = shamir.split(secret, xs, 4, CryptoRng(os.urandom(32)))
    wrong = 0
    for _ in range(20):
        try:
            wrong += shamir.combine(xs[:3], shares[:3]) != secret
        except DecodeError:
            wrong += 1  # chunks out of range: also not the secret
        shares = shamir.split(secret, xs, 4, CryptoRng(os.urandom(32)))
    assert wrong == 20


def test_batched_combine_matches_single() -> None:
    rng = CryptoRng(os.urandom(32))
    secrets = np.frombuffer(os.urandom(32 * 50), dtype=np.uint8).reshape(50, 32)
    xs = np.tile(np.arange(1, 12), (50, 1))
    sh = shamir.split_many(secrets, xs, 6, rng)
    pick = np.array([np.random.default_rng(i).choice(11, 6, replace=False) for i in range(50)])
    sub_x = np.take_along_axis(xs, pick, axis=1)
    sub_y = np.take_along_axis(sh, pick[:, :, None], axis=1)
    assert np.array_equal(shamir.combine_many(sub_x, sub_y), secrets)


def test_share_codec_rejects_bad_input() -> None:
    with pytest.raises(DecodeError):
        shamir.share_from_bytes(b"\x00" * 63)
    with pytest.raises(DecodeError):
        shamir.share_from_bytes(b"\xff" * 64)  # elements >= p
    with pytest.raises(DecodeError):
        shamir.combine([1, 1], [b"\x00" * 64, b"\x00" * 64])  # duplicate points


def test_different_seeds_give_different_masks() -> None:
    seen = set()
    for _ in range(200):
        m = expand_mask(os.urandom(32), 64, 32)
        seen.add(m.tobytes())
    assert len(seen) == 200


@pytest.mark.parametrize("byte", [0, 3, 4, 8, 16, 31])
def test_seeds_differing_in_one_high_byte_give_different_masks(byte: int) -> None:
    # Flower folds the 32-byte seed into a 32-bit numpy seed: seeds equal in their low 4 bytes collide.
    a = bytearray(32)
    b = bytearray(32)
    b[byte] = 1
    ma, mb = expand_mask(bytes(a), 10_000, 32), expand_mask(bytes(b), 10_000, 32)
    assert not np.array_equal(ma, mb)
    # unrelated streams: about 1 in 2**32 coordinates agree
    assert int((ma == mb).sum()) <= 2


def test_mask_is_deterministic_and_label_separated() -> None:
    s = os.urandom(32)
    assert np.array_equal(expand_mask(s, 100, 16), expand_mask(s, 100, 16))
    assert not np.array_equal(expand_mask(s, 100, 16, b"self"), expand_mask(s, 100, 16, b"pair"))


@pytest.mark.parametrize("bits", [8, 11, 16, 20, 32])
def test_mask_distribution_is_uniform(bits: int) -> None:
    m = expand_mask(os.urandom(32), 200_000, bits)
    assert int(m.max()) < 1 << bits
    cells = 256
    counts = np.bincount((m.astype(np.uint64) * cells >> np.uint64(bits)).astype(np.int64), minlength=cells)
    assert chisquare(counts).pvalue > 1e-4
    if bits <= 16:  # every residue
        counts = np.bincount(m, minlength=1 << bits)
        assert chisquare(counts).pvalue > 1e-4


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(8, 32), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_packing_roundtrip(bits: int, n: int, seed: int) -> None:
    v = np.random.default_rng(seed).integers(0, 1 << bits, n, dtype=np.uint64).astype(np.uint32)
    data = pack(v, bits)
    assert len(data) == packed_size(n, bits)
    assert np.array_equal(unpack(data, n, bits), v)


def test_packing_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        pack(np.array([1 << 12], dtype=np.uint32), 12)
    with pytest.raises(DecodeError):
        unpack(b"\x00" * 4, 3, 12)  # needs 5 bytes
    with pytest.raises(DecodeError):
        unpack(b"\x00\x00\x00\x00\xf0", 3, 12)  # 36 bits used, padding bits set


def test_registered_key_gives_the_x25519_key() -> None:
    ident = Identity.generate()
    pub = PublicIdentity.from_registered(ident.public_bytes)
    assert pub == ident.public
    other = Identity.generate()
    assert ident.agree(other.public.x25519) == other.agree(pub.x25519)
    with pytest.raises(ValueError):
        x25519_public_from_ed25519(b"\x01" + b"\x00" * 31)  # y = 1: the identity point


def test_crypto_rng_below_is_uniform_and_in_range() -> None:
    rng = CryptoRng(os.urandom(32))
    x = rng.below(7, size=70_000)
    assert int(x.max()) < 7
    assert chisquare(np.bincount(x.astype(np.int64), minlength=7)).pvalue > 1e-4
    big = rng.below(np.array([3, (1 << 62) + 1], dtype=np.uint64))
    assert int(big[0]) < 3 and int(big[1]) <= 1 << 62
