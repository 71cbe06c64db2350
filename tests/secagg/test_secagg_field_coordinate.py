"""SecAgg+ with the optional field coordinate: T = sum of the survivors' t_i mod p under dropouts
and exclusions, carries that satisfy the masking identity, byte-identical vector-only messages, and
the same field masks as fedledger.zk.binding."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.secagg import Kind, SecAggParams, decode, run_round, simulated_identities
from fedledger.secagg.context import SessionContext
from fedledger.secagg.errors import DecodeError, ProtocolViolation
from fedledger.secagg.field import P, field_mask
from fedledger.secagg.graph import Graph
from fedledger.secagg.messages import Header, MaskedInput
from fedledger.secagg.prg import expand_mask
from fedledger.zk import binding

TASK = b"F" * 32


def plain_sum(x: np.ndarray, keep: list[int], bits: int) -> np.ndarray:
    return (x[keep].astype(np.uint64).sum(axis=0) % (1 << bits)).astype(np.uint32)


@settings(max_examples=20, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_field_mask_is_the_zk_binding_field_mask(seed: bytes) -> None:
    assert field_mask(seed) == binding.field_mask(seed)
    assert 0 <= field_mask(seed) < P


@settings(max_examples=10, deadline=None)
@given(n=st.integers(3, 12), length=st.integers(1, 20), bits=st.sampled_from([8, 16, 31, 32]),
       seed=st.integers(0, 10**6), data=st.data())
def test_blinding_sum_is_exact_over_survivors(n: int, length: int, bits: int, seed: int, data: st.DataObject) -> None:
    params = SecAggParams(n=n, length=length, bits=bits)
    members = list(range(7, 7 + n))
    ids, pki = simulated_identities(members, seed)
    graph = Graph.build(members, params.degree, TASK, 3)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, (n, length), dtype=np.uint64).astype(np.uint32)
    t = {m: int.from_bytes(rng.bytes(32), "big") % P for m in members}
    drops: dict[int, Kind] = {}
    for m in data.draw(st.permutations(members)):
        trial = {**drops, m: Kind.MASKED_INPUT}
        if all(sum(1 for j in graph.neighbours(i) if j not in trial) >= params.threshold for i in members):
            drops = trial
        if data.draw(st.booleans()):
            break
    out = run_round(x, members, ids, pki, params, TASK, 3, drops, os.urandom, blindings=t)
    keep = [i for i, m in enumerate(members) if m not in drops]
    assert out.survivors == tuple(members[i] for i in keep)
    assert np.array_equal(out.total, plain_sum(x, keep, bits))
    assert out.blinding_sum == sum(t[members[i]] for i in keep) % P
    # each survivor's local record satisfies input + masks = masked + 2^b carries over the integers
    for i in keep:
        m = members[i]
        rec = out.records[m]
        exact = x[i].astype(np.int64) + expand_mask(rec.self_seed, length, bits, b"self")
        for peer, s in rec.pair_seeds.items():
            exact = exact + (1 if m < peer else -1) * expand_mask(s, length, bits, b"pair").astype(np.int64)
        masked = exact - (rec.carries << bits)
        assert masked.min() >= 0 and masked.max() < (1 << bits)
        u = (t[m] + field_mask(rec.self_seed) + sum((1 if m < p else -1) * field_mask(s)
                                                    for p, s in rec.pair_seeds.items())) % P
        assert out.masked_blindings[m] == u
        assert u != t[m]


def test_vector_only_round_is_unchanged() -> None:
    params = SecAggParams(n=5, length=8, bits=16)
    members = list(range(5))
    ids, pki = simulated_identities(members, 1)
    x = np.arange(40, dtype=np.uint32).reshape(5, 8)
    out = run_round(x, members, ids, pki, params, TASK, 1, {}, os.urandom)
    assert out.blinding_sum is None and not out.masked_blindings and not out.records
    assert np.array_equal(out.total, plain_sum(x, list(range(5)), 16))


def test_masked_input_encoding_with_and_without_coordinate() -> None:
    h = Header(SessionContext.simulated(TASK, 2), 3, 0)
    plain = MaskedInput(h, payload=b"\x01\x02", signature=b"s" * 64)
    with_u = dataclasses.replace(plain, blinding=(12345).to_bytes(32, "big"))
    assert len(with_u.to_bytes()) == len(plain.to_bytes()) + 32
    assert decode(plain.to_bytes()) == plain
    assert decode(with_u.to_bytes()) == with_u
    assert plain.digest() != dataclasses.replace(with_u, signature=b"s" * 64).digest()  # the coordinate is signed
    with pytest.raises(DecodeError):
        decode(plain.to_bytes()[:-64] + b"\x00" * 5 + b"s" * 64)
    with pytest.raises(ValueError):
        dataclasses.replace(plain, blinding=b"\x00" * 31).to_bytes()


def test_screen_excludes_members_like_dropouts() -> None:
    """A member set aside after its masked input (no valid proof) is out of the sum and of T."""
    n, length, bits = 6, 10, 32
    params = SecAggParams(n=n, length=length, bits=bits)
    members = list(range(n))
    ids, pki = simulated_identities(members, 4)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 1 << bits, (n, length), dtype=np.uint64).astype(np.uint32)
    t = {m: int.from_bytes(rng.bytes(32), "big") % P for m in members}
    seen = {}

    def screen(vectors, blindings, records):
        seen.update(vectors=set(vectors), blindings=set(blindings), records=set(records))
        return {2}

    out = run_round(x, members, ids, pki, params, TASK, 9, {5: Kind.MASKED_INPUT}, os.urandom, blindings=t,
                    screen=screen)
    assert seen == {"vectors": {0, 1, 2, 3, 4}, "blindings": {0, 1, 2, 3, 4}, "records": {0, 1, 2, 3, 4}}
    assert out.excluded == (2,) and out.survivors == (0, 1, 3, 4)
    assert np.array_equal(out.total, plain_sum(x, [0, 1, 3, 4], bits))
    assert out.blinding_sum == sum(t[m] for m in (0, 1, 3, 4)) % P


def test_screen_cannot_exclude_unknown_members_and_coordinates_are_all_or_none() -> None:
    params = SecAggParams(n=4, length=3, bits=16)
    members = list(range(4))
    ids, pki = simulated_identities(members, 2)
    x = np.ones((4, 3), dtype=np.uint32)
    with pytest.raises(ProtocolViolation):
        run_round(x, members, ids, pki, params, TASK, 1, {}, os.urandom, blindings={m: 1 for m in members},
                  screen=lambda v, b, r: {99})
    with pytest.raises(ValueError):
        run_round(x, members, ids, pki, params, TASK, 1, {}, os.urandom, blindings={0: 1})
    with pytest.raises(ValueError):
        run_round(x, members, ids, pki, params, TASK, 1, {}, os.urandom, blindings={m: P for m in members})
