"""SecAgg+ end to end: exact sums under dropouts, clear aborts beyond the threshold, and rejection
of forged, replayed and tampered messages."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.secagg import (
    Kind,
    ProtocolViolation,
    SecAggAbort,
    SecAggParams,
    decode,
    run_round,
    simulated_identities,
)
from fedledger.secagg.client import ClientConfig, client_handle, client_start
from fedledger.secagg.context import SessionContext
from fedledger.secagg.errors import DecodeError
from fedledger.secagg.graph import Graph
from fedledger.secagg.messages import AdvertiseKeys, KeyRoster, MaskedInput, ShareRoster, SurvivorCertificate
from fedledger.secagg.server import ServerConfig, server_advance, server_handle, server_start

TASK = b"T" * 32
STAGES = [Kind.ADVERTISE_KEYS, Kind.SHARE_KEYS, Kind.MASKED_INPUT, Kind.SURVIVOR_SIGNATURE, Kind.UNMASK_SHARES]


def plain_sum(x: np.ndarray, keep: list[int], bits: int) -> np.ndarray:
    return (x[keep].astype(np.uint64).sum(axis=0) % (1 << bits)).astype(np.uint32)


def inputs(n: int, length: int, bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << bits, (n, length), dtype=np.uint64).astype(np.uint32)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(3, 24), length=st.integers(1, 40), bits=st.integers(8, 32), seed=st.integers(0, 10**6),
       data=st.data())
def test_sum_is_exact_under_tolerated_dropouts(n: int, length: int, bits: int, seed: int,
                                               data: st.DataObject) -> None:
    params = SecAggParams(n=n, length=length, bits=bits)
    members = list(range(100, 100 + n))
    ids, pki = simulated_identities(members, seed)
    graph = Graph.build(members, params.degree, TASK, 5)
    # pick a dropout set that leaves every neighbourhood at least t live members
    drops: dict[int, Kind] = {}
    for m in data.draw(st.permutations(members)):
        trial = {**drops, m: data.draw(st.sampled_from(STAGES))}
        gone = set(trial)
        if all(sum(1 for j in graph.neighbours(i) if j not in gone) >= params.threshold for i in members):
            drops = trial
        if data.draw(st.booleans()):
            break
    x = inputs(n, length, bits, seed)
    out = run_round(x, members, ids, pki, params, TASK, 5, drops, os.urandom)
    keep = [i for i, m in enumerate(members) if drops.get(m, Kind.UNMASK_SHARES + 1) > Kind.MASKED_INPUT]
    assert out.survivors == tuple(members[i] for i in keep)
    assert np.array_equal(out.total, plain_sum(x, keep, bits))


@pytest.mark.parametrize("n", [40, pytest.param(100, marks=pytest.mark.slow)])
def test_sum_is_exact_with_38_percent_dropout(n: int) -> None:
    params = SecAggParams.for_cohort(n, 30, 16, dropout=0.38)
    members = list(range(n))
    ids, pki = simulated_identities(members, 1)
    rng = np.random.default_rng(n)
    dropped = rng.choice(n, size=round(0.38 * n), replace=False)
    drops = {int(m): STAGES[int(rng.integers(1, 5))] for m in dropped}
    x = inputs(n, 30, 16, 2)
    out = run_round(x, members, ids, pki, params, TASK, 1, drops, os.urandom)
    keep = [m for m in members if drops.get(m, 99) > Kind.MASKED_INPUT]
    assert np.array_equal(out.total, plain_sum(x, keep, 16))
    assert len(out.survivors) == len(keep)


def _hood_drops(n: int, params: SecAggParams, extra: int, stage: Kind) -> tuple[list[int], dict[int, Kind]]:
    members = list(range(n))
    graph = Graph.build(members, params.degree, TASK, 2)
    victim = members[0]
    others = [m for m in graph.neighbours(victim) if m != victim]
    count = params.max_dropouts_per_neighbourhood + extra
    return members, {m: stage for m in others[:count]}


@pytest.mark.parametrize("stage", [Kind.SHARE_KEYS, Kind.MASKED_INPUT, Kind.UNMASK_SHARES])
def test_maximum_tolerated_dropout_is_exact_and_one_more_aborts(stage: Kind) -> None:
    n = 64
    params = SecAggParams(n=n, length=20, bits=20)
    x = inputs(n, 20, 20, 3)
    members, drops = _hood_drops(n, params, 0, stage)
    ids, pki = simulated_identities(members, 3)
    out = run_round(x, members, ids, pki, params, TASK, 2, drops, os.urandom)
    keep = [m for m in members if drops.get(m, 99) > Kind.MASKED_INPUT]
    assert np.array_equal(out.total, plain_sum(x, keep, 20))
    members, drops = _hood_drops(n, params, 1, stage)
    # one neighbour too many: the victim's secrets can no longer be recovered; no sum is released
    with pytest.raises(SecAggAbort, match=r"too many dropouts|threshold"):
        run_round(x, members, ids, pki, params, TASK, 2, drops, os.urandom)


def test_member_that_sees_too_few_neighbours_stops_and_the_rest_still_sums() -> None:
    # all of the victim's neighbours but t - 1 drop before advertising keys: the victim cannot share
    # its secrets, stops, and nobody masks with it; everybody else's sum is exact
    n = 64
    params = SecAggParams(n=n, length=20, bits=20)
    x = inputs(n, 20, 20, 3)
    members, drops = _hood_drops(n, params, 1, Kind.ADVERTISE_KEYS)
    ids, pki = simulated_identities(members, 3)
    out = run_round(x, members, ids, pki, params, TASK, 2, drops, os.urandom)
    assert members[0] in out.aborted and members[0] not in out.survivors
    assert np.array_equal(out.total, plain_sum(x, list(out.survivors), 20))


def test_too_few_members_aborts_with_a_clear_error() -> None:
    n = 10
    params = SecAggParams(n=n, length=4, bits=16)
    members = list(range(n))
    ids, pki = simulated_identities(members, 4)
    drops = {m: Kind.MASKED_INPUT for m in range(6)}
    with pytest.raises(SecAggAbort, match="threshold"):
        run_round(inputs(n, 4, 16, 0), members, ids, pki, params, TASK, 0, drops, os.urandom)


def test_degree_grows_with_expected_dropout() -> None:
    base = SecAggParams.for_cohort(1000, 10)
    wide = SecAggParams.for_cohort(1000, 10, dropout=0.1)
    assert base.degree == 21 and base.threshold == 11
    assert wide.degree > base.degree and wide.threshold == wide.degree // 2 + 1


# ---- adversarial messages ------------------------------------------------------------------------


class Harness:
    """Drives members and server stage by stage so a test can tamper with any message."""

    def __init__(self, n: int = 8, length: int = 6, bits: int = 16, round_index: int = 7, attempt: int = 0,
                 pki: dict | None = None) -> None:
        self.params = SecAggParams(n=n, length=length, bits=bits)
        self.members = list(range(1, n + 1))
        self.ids, self.pki = simulated_identities(self.members, 9)
        if pki is not None:
            self.pki = {**self.pki, **pki}
        self.graph = Graph.build(self.members, self.params.degree, TASK, round_index)
        self.round = round_index
        self.session = SessionContext(31337, b"\x11" * 20, TASK, round_index, attempt)
        self.x = inputs(n, length, bits, 5)
        self.server = server_start(ServerConfig(self.session, self.pki, self.params, self.graph))
        self.clients = {}
        self.up: list = []
        for i, m in enumerate(self.members):
            cfg = ClientConfig(self.session, m, self.ids[m], self.pki, self.params, self.graph)
            st_, msgs = client_start(cfg, self.x[i], os.urandom)
            self.clients[m] = st_
            self.up += msgs

    def flush_up(self) -> None:
        for msg in self.up:
            self.server, _ = server_handle(self.server, decode(msg.to_bytes()))
        self.up = []

    def advance(self) -> list:
        self.server, out = server_advance(self.server)
        return out

    def deliver(self, out: list) -> None:
        for msg in out:
            m = msg.header.recipient
            self.clients[m], replies = client_handle(self.clients[m], decode(msg.to_bytes()), os.urandom)
            self.up += replies


def test_forged_signature_is_rejected() -> None:
    h = Harness()
    msg = h.up[0]
    forged = dataclasses.replace(msg, mask_public=os.urandom(32))
    with pytest.raises(ProtocolViolation, match="signature"):
        server_handle(h.server, decode(forged.to_bytes()))
    # impersonation: signed by member 2 but claiming to be member 1
    other = dataclasses.replace(h.up[1], header=msg.header)
    with pytest.raises(ProtocolViolation):
        server_handle(h.server, other)


def test_replayed_message_is_rejected_in_the_same_and_in_another_round() -> None:
    h = Harness()
    first = h.up[0]
    h.server, _ = server_handle(h.server, first)
    with pytest.raises(ProtocolViolation, match="replay"):
        server_handle(h.server, first)
    # the same signed message replayed into round 8 (header changed -> signature fails)
    later = Harness(round_index=8)
    moved = dataclasses.replace(first, header=dataclasses.replace(first.header, session=later.session))
    with pytest.raises(ProtocolViolation, match="signature"):
        server_handle(later.server, moved)
    # unchanged header into round 8: another session
    with pytest.raises(ProtocolViolation, match="another session"):
        server_handle(later.server, first)


def test_message_from_a_later_stage_is_rejected() -> None:
    h = Harness()
    bogus = MaskedInput(h.up[0].header, payload=b"\x00" * 12, signature=b"\x00" * 64)
    with pytest.raises(ProtocolViolation, match="out of stage"):
        server_handle(h.server, bogus)


def test_forged_roster_entry_is_rejected_by_the_member() -> None:
    h = Harness()
    h.flush_up()
    out = h.advance()
    roster: KeyRoster = out[0]
    m, ck, _mk, sig = roster.entries[1]
    bad = dataclasses.replace(roster, entries=(*roster.entries[:1], (m, ck, os.urandom(32), sig), *roster.entries[2:]))
    with pytest.raises(ProtocolViolation, match="signature"):
        client_handle(h.clients[roster.header.recipient], bad, os.urandom)


def test_tampered_share_ciphertext_is_rejected() -> None:
    h = Harness()
    h.flush_up()
    h.deliver(h.advance())
    h.flush_up()
    out = h.advance()
    sr: ShareRoster = out[0]
    sender, cb, cs, sig, ct = sr.entries[0]
    flipped = ct[:-1] + bytes([ct[-1] ^ 1])
    bad = dataclasses.replace(sr, entries=((sender, cb, cs, sig, flipped), *sr.entries[1:]))
    # the member refuses those shares (never holds them, so never reveals them) and names the sender
    st_, _ = client_handle(h.clients[sr.header.recipient], bad, os.urandom)
    assert sender not in st_.held and "authentication" in st_.rejected[sender]
    assert all(m in st_.held for m, *_ in sr.entries[1:])
    # a ciphertext re-addressed to another member does not open either
    other = out[1]
    moved = dataclasses.replace(other, entries=((sender, cb, cs, sig, ct), *other.entries[1:]))
    if sender != other.header.recipient:
        st_, _ = client_handle(h.clients[other.header.recipient], moved, os.urandom)
        assert sender not in st_.held and sender in st_.rejected


def test_certificate_for_another_survivor_list_is_rejected() -> None:
    h = Harness()
    for _ in range(3):
        h.flush_up()
        h.deliver(h.advance())
    h.flush_up()
    out = h.advance()
    cert: SurvivorCertificate = out[0]
    bad = dataclasses.replace(cert, survivors=cert.survivors[1:])
    with pytest.raises(ProtocolViolation, match="different survivor list"):
        client_handle(h.clients[cert.header.recipient], bad, os.urandom)
    # signatures that are not on this list
    junk = dataclasses.replace(cert, signatures=tuple((m, b"\x00" * 64) for m, _ in cert.signatures))
    with pytest.raises(ProtocolViolation):
        client_handle(h.clients[cert.header.recipient], junk, os.urandom)


def test_full_harness_round_matches_plain_sum() -> None:
    h = Harness()
    for _ in range(4):
        h.flush_up()
        h.deliver(h.advance())
    h.flush_up()
    h.advance()
    assert np.array_equal(h.server.result, plain_sum(h.x, list(range(len(h.members))), 16))
    # what the server saw is masked: no masked input equals the member's own input
    for i, m in enumerate(h.members):
        assert h.server.masked[m] != h.x[i].astype("<u2").tobytes()


def test_decode_rejects_trailing_and_truncated_bytes() -> None:
    h = Harness()
    data = h.up[0].to_bytes()
    assert decode(data) == h.up[0]
    with pytest.raises(DecodeError, match="trailing"):
        decode(data + b"\x00")
    with pytest.raises(DecodeError, match="truncated"):
        decode(data[:-1])
    with pytest.raises(DecodeError, match="kind"):
        decode(data[:1] + b"\x63" + data[2:])
    assert isinstance(decode(data), AdvertiseKeys)


def test_typed_from_bytes_checks_the_kind() -> None:
    h = Harness()
    data = h.up[0].to_bytes()
    assert AdvertiseKeys.from_bytes(data) == h.up[0]
    with pytest.raises(DecodeError, match="expected MaskedInput"):
        MaskedInput.from_bytes(data)
    with pytest.raises(DecodeError, match="trailing"):
        AdvertiseKeys.from_bytes(data + b"\x00")
