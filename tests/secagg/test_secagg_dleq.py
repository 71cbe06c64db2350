"""The proof of a pair's X25519 value that settles a blame dispute (`secagg.dleq`): it verifies for the true
value and for nothing else, and binds the prover's masking key, the peer's key and the context."""

from __future__ import annotations

import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger.secagg.dleq import SharedProof, prove_shared, verify_shared
from fedledger.secagg.errors import ProtocolViolation


def _pair() -> tuple[X25519PrivateKey, X25519PrivateKey, bytes, bytes]:
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    return a, b, a.public_key().public_bytes_raw(), b.public_key().public_bytes_raw()


def test_the_proof_gives_the_x25519_value_both_ends_compute() -> None:
    a, b, pa, pb = _pair()
    proof = prove_shared(a.private_bytes_raw(), pb, b"ctx", os.urandom(32))
    shared = verify_shared(proof, pa, pb, b"ctx")
    assert shared == a.exchange(b.public_key()) == b.exchange(a.public_key())
    other = prove_shared(b.private_bytes_raw(), pa, b"ctx", os.urandom(32))  # the other end proves the same value
    assert verify_shared(SharedProof.from_json(other.to_json()), pb, pa, b"ctx") == shared


def test_a_false_value_or_a_proof_for_other_keys_or_context_is_refused() -> None:
    a, _b, pa, pb = _pair()
    c = X25519PrivateKey.generate()
    proof = prove_shared(a.private_bytes_raw(), pb, b"ctx", os.urandom(32))
    wrong_k = prove_shared(a.private_bytes_raw(), c.public_key().public_bytes_raw(), b"ctx", os.urandom(32)).k
    forged = [
        (dataclasses.replace(proof, k=wrong_k), pa, pb, b"ctx"),  # another shared point
        (dataclasses.replace(proof, s=(proof.s + 1)), pa, pb, b"ctx"),
        (proof, pb, pa, b"ctx"),  # claimed for the peer's key
        (proof, pa, c.public_key().public_bytes_raw(), b"ctx"),  # for another peer
        (proof, pa, pb, b"other"),  # another session or pair
    ]
    for p, prover, peer, ctx in forged:
        with pytest.raises(ProtocolViolation):
            verify_shared(p, prover, peer, ctx)
    # a liar that knows only its own key cannot prove a value of its choosing: a proof with its own K for the
    # honest pair's keys does not verify
    liar = prove_shared(c.private_bytes_raw(), pb, b"ctx", os.urandom(32))
    with pytest.raises(ProtocolViolation):
        verify_shared(dataclasses.replace(liar, a=proof.a), pa, pb, b"ctx")


def test_malformed_proofs_are_refused_not_crashed_on() -> None:
    _, _, pa, pb = _pair()
    for bad in [None, [], {"a": "zz"}, {"a": "00" * 32, "k": "00" * 32, "c": "0x1", "s": "0x1"}]:
        with pytest.raises(ProtocolViolation):
            verify_shared(SharedProof.from_json(bad), pa, pb, b"ctx")
