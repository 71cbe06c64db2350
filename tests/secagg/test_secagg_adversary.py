"""SecAgg+ against an adversary: the attacks of issue 11 performed against the real state machines.

* a server that replays a victim's first-attempt AdvertiseKeys/ShareKeys into the second attempt and
  declares the victim dropped gets nothing usable;
* wrong unmasking shares are named and excluded and the sum stays exact, up to what the threshold
  allows; a dealer whose committed shares are inconsistent is named, never a wrong sum;
* small-order and non-canonical keys are refused at registration and at key agreement, and honest
  neighbours of such a member complete the round without it;
* without an injected source, two sessions with identical inputs share no secret.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fedledger.secagg import (
    InvalidKey,
    Kind,
    ProtocolViolation,
    SecAggAbort,
    SecAggParams,
    SessionContext,
    check_identity_key,
    check_x25519_key,
    decode,
    run_round,
    shamir,
    simulated_identities,
)
from fedledger.secagg import keys as keymod
from fedledger.secagg.channel import (
    channel_key,
    commitment_statement,
    open_sealed,
    pairwise_seed,
    public_of,
    seal,
    share_commitment,
)
from fedledger.secagg.client import ClientConfig, Held, client_handle, client_start
from fedledger.secagg.entropy import CryptoRng
from fedledger.secagg.graph import Graph
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    ShareKeys,
    ShareRoster,
    ShareType,
    UnmaskShares,
)
from fedledger.secagg.packing import unpack
from fedledger.secagg.prg import expand_mask
from fedledger.secagg.server import (
    ServerConfig,
    ServerStage,
    check_revealed,
    server_advance,
    server_handle,
    server_start,
)

TASK = b"A" * 32
CHAIN, MANAGER = 31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
P25519 = (1 << 255) - 19


def plain_sum(x: np.ndarray, rows: list[int], bits: int) -> np.ndarray:
    return (x[rows].astype(np.uint64).sum(axis=0) % (1 << bits)).astype(np.uint32)


class Session:
    """One SecAgg+ session driven stage by stage over encoded bytes, so a test can play any party."""

    def __init__(self, n: int = 10, *, attempt: int = 0, sub_session: int = 0, bits: int = 16, length: int = 6,
                 rand=os.urandom, seed: int = 11, pki: dict | None = None) -> None:
        self.params = SecAggParams(n=n, length=length, bits=bits)
        self.members = list(range(1, n + 1))
        self.ids, self.pki = simulated_identities(self.members, seed)
        self.pki = {**self.pki, **(pki or {})}
        self.graph = Graph.build(self.members, self.params.degree, TASK, 4)
        self.session = SessionContext(CHAIN, MANAGER, TASK, 4, attempt, sub_session)
        self.x = np.random.default_rng(seed).integers(0, 1 << bits, (n, length), dtype=np.uint64).astype(np.uint32)
        self.rand = rand
        self.server = server_start(ServerConfig(self.session, self.pki, self.params, self.graph))
        self.clients: dict = {}
        self.sent: dict[tuple[int, Kind], object] = {}  # everything members sent, by (member, kind)
        self.up: list = []
        for i, m in enumerate(self.members):
            cfg = ClientConfig(self.session, m, self.ids[m], self.pki, self.params, self.graph)
            self.clients[m], msgs = client_start(cfg, self.x[i], rand)
            self.up += msgs

    def flush(self, silent: frozenset[int] = frozenset(), tamper=None) -> None:
        for msg in self.up:
            m = msg.header.sender
            if m in silent:
                continue
            if tamper is not None:
                msg = tamper(msg)
            self.sent[(m, msg.KIND)] = msg
            self.server, _ = server_handle(self.server, decode(msg.to_bytes()))
        self.up = []

    def advance(self) -> list:
        self.server, out = server_advance(self.server)
        return out

    def deliver(self, out: list, skip: frozenset[int] = frozenset(), tamper_down=None) -> None:
        for msg in out:
            m = msg.header.recipient
            if m in skip or m not in self.clients:
                continue
            if tamper_down is not None:
                msg = tamper_down(msg)
            self.clients[m], replies = client_handle(self.clients[m], decode(msg.to_bytes()), self.rand)
            self.up += replies

    def resign(self, msg):
        """A member re-signing its own (altered) message: what a malicious member can always do."""
        m = msg.header.sender
        return dataclasses.replace(msg, signature=self.ids[m].sign(dataclasses.replace(msg, signature=b"").digest()))

    def run(self, silent_before: dict[int, Kind] | None = None, tamper=None, tamper_down=None) -> None:
        """Drive the whole session; `silent_before[m] = kind`: m sends nothing from that stage on."""
        silent_before = silent_before or {}
        for kind in (Kind.ADVERTISE_KEYS, Kind.SHARE_KEYS, Kind.MASKED_INPUT, Kind.SURVIVOR_SIGNATURE,
                     Kind.UNMASK_SHARES):
            self.flush(frozenset(m for m, k in silent_before.items() if k <= kind), tamper)
            out = self.advance()
            if kind != Kind.UNMASK_SHARES:
                self.deliver(out, frozenset(m for m, k in silent_before.items() if k <= kind), tamper_down)


def _revealed(server, owner: int, kind: ShareType) -> bytes:
    """What the server rebuilds from the first t shares of `owner`'s secret it holds."""
    t = server.cfg.params.threshold
    xs, ys = [], []
    for holder in sorted(server.unmask):
        for r in server.unmask[holder].shares:
            if r.owner == owner and r.kind == kind and len(xs) < t:
                xs.append(server.cfg.graph.point(holder))
                ys.append(r.share)
    return shamir.combine(xs, ys)


# ---- 1. transcript binding per attempt -----------------------------------------------------------------


@pytest.mark.parametrize("same_randomness", [False, True])
def test_cross_attempt_replay_gives_the_server_nothing(same_randomness: bool) -> None:
    # the worst case for key freshness: the victim's randomness source repeats exactly across attempts
    source = (lambda: CryptoRng(b"\x07" * 32).bytes) if same_randomness else (lambda: os.urandom)
    first = Session(attempt=0, rand=source())
    victim = first.members[3]
    vi = first.members.index(victim)
    s1 = first.clients[victim].mask_secret
    first.run()
    assert np.array_equal(first.server.result, plain_sum(first.x, list(range(len(first.members))), 16))
    b1 = _revealed(first.server, victim, ShareType.SELF_MASK)  # the victim survived: its self seed is out
    y1 = unpack(first.server.masked[victim], first.params.length, first.params.bits)
    adv1, share1 = first.sent[(victim, Kind.ADVERTISE_KEYS)], first.sent[(victim, Kind.SHARE_KEYS)]

    second = Session(attempt=1, rand=source())
    # (a) the first attempt's signed messages replayed into the second: refused as another session ...
    with pytest.raises(ProtocolViolation, match="another session"):
        server_handle(second.server, adv1)
    # ... and with the header rewritten to the second attempt, the victim's signature no longer verifies
    moved = dataclasses.replace(adv1, header=dataclasses.replace(adv1.header, session=second.session))
    with pytest.raises(ProtocolViolation, match="signature"):
        server_handle(second.server, moved)
    # (b) a server that puts the victim's first-attempt keys into its neighbours' second-attempt rosters
    second.flush(silent=frozenset({victim}))
    rosters = second.advance()
    hood = [r for r in rosters if victim in second.graph.neighbours(r.header.recipient)]
    assert hood
    for roster in hood:
        forged = dataclasses.replace(roster, entries=tuple(sorted(
            (*roster.entries, (victim, adv1.channel_public, adv1.mask_public, adv1.signature)))))
        with pytest.raises(ProtocolViolation, match="signature"):
            client_handle(second.clients[roster.header.recipient], decode(forged.to_bytes()), second.rand)
    # (c) the victim's first-attempt share entries slipped into a neighbour's second-attempt ShareRoster
    third = Session(attempt=1, rand=source())
    third.flush()
    third.deliver(third.advance())
    third.flush()
    for sr in third.advance():
        to = sr.header.recipient
        if to == victim or victim not in third.graph.neighbours(to):
            continue
        old = next(e for e in share1.entries if e[0] == to)
        entries = tuple((victim, *old[1:]) if e[0] == victim else e for e in sr.entries)
        st_, _ = client_handle(third.clients[to], decode(dataclasses.replace(sr, entries=entries).to_bytes()),
                               third.rand)
        assert victim not in st_.held and "signature" in st_.rejected[victim]  # never held, never revealed
        break
    else:
        pytest.fail("no neighbour of the victim")
    # (d) worst case: the victim takes part in the second attempt and the server declares it dropped
    # after ShareKeys; the neighbours reveal shares of its masking key, of THIS attempt only
    worst = Session(attempt=1, rand=source())
    worst.run(silent_before={victim: Kind.MASKED_INPUT})
    kept = [i for i, m in enumerate(worst.members) if m != victim]
    assert np.array_equal(worst.server.result, plain_sum(worst.x, kept, 16))
    s2 = _revealed(worst.server, victim, ShareType.MASK_KEY)
    assert public_of(s2) == worst.sent[(victim, Kind.ADVERTISE_KEYS)].mask_public  # the server did get s2
    assert s2 != s1
    assert worst.sent[(victim, Kind.ADVERTISE_KEYS)].mask_public != adv1.mask_public
    # and s2 does not unmask the first attempt's input: b1 plus the pairwise masks s2 gives are not x
    guess = y1 - expand_mask(b1, first.params.length, first.params.bits, b"self")
    for k in first.graph.neighbours(victim):
        if k == victim:
            continue
        seed = pairwise_seed(s2, first.server.advertised[k].mask_public, first.session, victim, k)
        mask = expand_mask(seed, first.params.length, first.params.bits, b"pair")
        guess = guess - mask if victim < k else guess + mask
    guess &= np.uint32((1 << first.params.bits) - 1)
    assert not np.array_equal(guess, first.x[vi])


def test_every_context_field_separates_sessions() -> None:
    base = SessionContext(CHAIN, MANAGER, TASK, 4, 0, 0)
    others = [dataclasses.replace(base, chain_id=1), dataclasses.replace(base, task_manager=b"\x01" * 20),
              dataclasses.replace(base, task_id=b"B" * 32), dataclasses.replace(base, round_index=5),
              dataclasses.replace(base, attempt=1), base.next_sub_session()]
    encodings = {c.encode() for c in [base, *others]}
    assert len(encodings) == len(others) + 1
    assert all(SessionContext.decode(c.encode()) == c for c in [base, *others])
    # the same deterministic source in two sessions still gives two different key sets
    keys = set()
    for ctx in [base, *others[3:]]:
        graph = Graph.build([1, 2, 3], 3, ctx.task_id, 4)
        ids, pki = simulated_identities([1, 2, 3], 0)
        cfg = ClientConfig(ctx, 1, ids[1], pki, SecAggParams(n=3, length=2, bits=16), graph)
        _, (adv,) = client_start(cfg, np.zeros(2, np.uint32), CryptoRng(b"\x01" * 32).bytes)
        keys.add((adv.channel_public, adv.mask_public))
    assert len(keys) == 4


def test_resum_in_a_new_sub_session_refuses_the_first_sums_messages() -> None:
    first = Session(sub_session=0)
    first.run()
    resum = Session(sub_session=1)
    for (_m, kind), msg in first.sent.items():
        if kind == Kind.ADVERTISE_KEYS:
            with pytest.raises(ProtocolViolation, match="another session"):
                server_handle(resum.server, msg)


# ---- 2. unmasking shares checked one by one ------------------------------------------------------------


def _lie_about_shares(session: Session, liars: frozenset[int]):
    """Liars flip a bit of every share they reveal (and sign the result: it is their own message)."""

    def tamper(msg):
        if not isinstance(msg, UnmaskShares) or msg.header.sender not in liars:
            return msg
        bad = tuple(r._replace(share=r.share[:-1] + bytes([r.share[-1] ^ 1])) for r in msg.shares)
        return session.resign(dataclasses.replace(msg, shares=bad))

    return tamper


def _check_fault_evidence(session: Session, holder: int) -> None:
    """The evidence is the holder's own signed UnmaskShares alone: one of its shares fails to open the
    dealer-signed commitment it echoes. Anyone can re-check it with the PKI."""
    fault = session.server.faulty[holder]
    assert len(fault.evidence) == 1
    msg = decode(fault.evidence[0])
    assert isinstance(msg, UnmaskShares) and msg.header.sender == holder
    session.pki[holder].verify(msg.signature, msg.digest())
    failures = 0
    for r in msg.shares:
        try:
            check_revealed(session.session, session.pki[r.owner], holder, r)
        except ProtocolViolation:
            failures += 1
    assert failures


def test_one_wrong_unmasking_share_is_named_excluded_and_the_sum_is_exact() -> None:
    s = Session()
    liar = s.members[2]
    s.run(tamper=_lie_about_shares(s, frozenset({liar})))
    assert np.array_equal(s.server.result, plain_sum(s.x, list(range(len(s.members))), 16))
    assert set(s.server.faulty) == {liar}
    _check_fault_evidence(s, liar)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_wrong_shares_up_to_the_threshold_are_tolerated_and_beyond_abort_naming_the_liars(
        data: st.DataObject) -> None:
    s = Session()
    k, t = s.params.degree, s.params.threshold
    liars = frozenset(data.draw(st.lists(st.sampled_from(s.members), max_size=k, unique=True)))
    dropped = data.draw(st.sampled_from([None, *s.members]))
    silent = {dropped: Kind.MASKED_INPUT} if dropped is not None and dropped not in liars else {}
    owners = [m for m in s.members if m not in silent]
    # an owner's secret is recoverable iff at least t of its holders reveal good shares
    def good_holders(owner: int) -> int:
        return sum(1 for h in s.graph.neighbours(owner) if h not in liars and h not in silent)

    recoverable = all(good_holders(o) >= t for o in s.members)
    event(f"recoverable={recoverable}")
    if recoverable:
        s.run(silent_before=silent, tamper=_lie_about_shares(s, liars))
        keep = [i for i, m in enumerate(s.members) if m in owners]
        assert np.array_equal(s.server.result, plain_sum(s.x, keep, 16))
        assert set(s.server.faulty) == set(liars)
        for liar in liars:
            _check_fault_evidence(s, liar)
    else:
        with pytest.raises(SecAggAbort, match="no sum is released") as err:
            s.run(silent_before=silent, tamper=_lie_about_shares(s, liars))
        assert set(err.value.faulty) <= set(liars) and err.value.faulty  # liars named, nobody honest
        assert s.server.result is None


def _deal_inconsistently(s: Session, dealer: int, corrupt: frozenset[int], kind: ShareType):
    """A malicious dealer: the shares of `kind` it deals to `corrupt` holders are random field elements,
    committed to and signed correctly, so every holder accepts them and every reveal opens."""
    rng = np.random.default_rng(dealer)

    def tamper(msg):
        if not isinstance(msg, ShareKeys) or msg.header.sender != dealer:
            return msg
        st_ = s.clients[dealer]
        cfg = st_.cfg
        entries = []
        held = dict(st_.held)
        for holder, cb, cs, _sig, ct in msg.entries:
            if holder not in corrupt:
                entries.append((holder, cb, cs, _sig, ct))
                continue
            share = shamir.share_to_bytes(rng.integers(0, shamir.PRIME, shamir.CHUNKS))
            if holder == dealer:
                mine = held[dealer]
                b, ss = (share, mine.key_share) if kind == ShareType.SELF_MASK else (mine.self_share, share)
                sb, sk = mine.self_salt, mine.key_salt
            else:
                key = channel_key(st_.channel_secret, st_.roster[holder][0], cfg.session, dealer, holder)
                pt = open_sealed(key, ct, cfg.session, dealer, holder)
                n = shamir.SHARE_BYTES
                b, ss, sb, sk = pt[:n], pt[n:2 * n], pt[2 * n:2 * n + 32], pt[2 * n + 32:]
                if kind == ShareType.SELF_MASK:
                    b = share
                else:
                    ss = share
            cb = share_commitment(cfg.session, dealer, holder, int(ShareType.SELF_MASK), b, sb)
            cs = share_commitment(cfg.session, dealer, holder, int(ShareType.MASK_KEY), ss, sk)
            sig = cfg.identity.sign(commitment_statement(cfg.session, dealer, holder, cb, cs))
            if holder == dealer:
                held[dealer] = Held(b, ss, sb, sk, cb, cs, sig)
            ct = b"" if holder == dealer else seal(
                channel_key(st_.channel_secret, st_.roster[holder][0], cfg.session, dealer, holder), os.urandom(12),
                b + ss + sb + sk, cfg.session, dealer, holder)
            entries.append((holder, cb, cs, sig, ct))
        s.clients[dealer] = dataclasses.replace(st_, held=held)
        return s.resign(dataclasses.replace(msg, entries=tuple(entries)))

    return tamper


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_dealer_with_inconsistent_shares_is_named_and_never_yields_a_wrong_sum(data: st.DataObject) -> None:
    s = Session()
    dealer = data.draw(st.sampled_from(s.members))
    hood = list(s.graph.neighbours(dealer))
    corrupt = frozenset(data.draw(st.lists(st.sampled_from(hood), min_size=1, unique=True)))
    drops = data.draw(st.booleans())  # dropped after ShareKeys: its masking key is rebuilt instead
    kind = ShareType.MASK_KEY if drops else ShareType.SELF_MASK
    silent = {dealer: Kind.MASKED_INPUT} if drops else {}
    tamper = _deal_inconsistently(s, dealer, corrupt, kind)
    keep = [i for i, m in enumerate(s.members) if m != dealer or not drops]
    try:
        s.run(silent_before=silent, tamper=tamper)
    except SecAggAbort as e:
        event("aborted naming the dealer")
        assert set(e.faulty) == {dealer}  # aborted with its name, nobody else named
        assert s.server.result is None
        decode(e.faulty[dealer].evidence[0])  # its own signed ShareKeys
        return
    event("completed naming the dealer")
    # completed: the sum is exact and the dealer is named (every live holder revealed, so > t shares show
    # it), unless the only bad share was its own and it dropped: then nothing bad was ever revealed
    assert np.array_equal(s.server.result, plain_sum(s.x, keep, 16))
    revealed_bad = corrupt - {dealer} if drops else corrupt
    assert set(s.server.faulty) == ({dealer} if revealed_bad else set())
    if revealed_bad:
        ev = decode(s.server.faulty[dealer].evidence[0])
        assert isinstance(ev, ShareKeys) and ev.header.sender == dealer


def test_holder_refuses_shares_that_do_not_open_the_dealers_signed_commitment() -> None:
    # the dealer commits to one share and encrypts another: the holder refuses it at receipt, so it can
    # never be blamed for revealing it, and the round completes from the other holders' shares
    s = Session()
    dealer = s.members[0]
    victim = next(m for m in s.graph.neighbours(dealer) if m != dealer)

    def tamper(msg):
        if not isinstance(msg, ShareKeys) or msg.header.sender != dealer:
            return msg
        entries = []
        for h, cb, cs, sig, ct in msg.entries:
            if h == victim:  # a commitment to something else, correctly signed for this holder
                cb = os.urandom(32)
                sig = s.ids[dealer].sign(commitment_statement(s.session, dealer, h, cb, cs))
            entries.append((h, cb, cs, sig, ct))
        return s.resign(dataclasses.replace(msg, entries=tuple(entries)))

    s.run(tamper=tamper)
    assert "commitments" in s.clients[victim].rejected[dealer]
    assert np.array_equal(s.server.result, plain_sum(s.x, list(range(len(s.members))), 16))
    assert victim not in s.server.faulty


def test_dealer_and_server_colluding_cannot_frame_an_honest_holder() -> None:
    # the dealer signs two sets of commitments for one holder: the true ones travel to the holder, fake
    # ones go into the ShareKeys the server keeps as evidence. The holder echoes what it accepted, so
    # its UnmaskShares is consistent; the dealer is the one named, on its own two signatures.
    s = Session()
    dealer = s.members[0]
    victim = next(m for m in s.graph.neighbours(dealer) if m != dealer)
    true_entry = {}

    def tamper(msg):
        if not isinstance(msg, ShareKeys) or msg.header.sender != dealer:
            return msg
        entries = []
        for h, cb, cs, sig, ct in msg.entries:
            if h == victim:
                true_entry[h] = (dealer, cb, cs, sig, ct)
                cb = os.urandom(32)
                sig = s.ids[dealer].sign(commitment_statement(s.session, dealer, h, cb, cs))
            entries.append((h, cb, cs, sig, ct))
        return s.resign(dataclasses.replace(msg, entries=tuple(entries)))

    def swap_back(msg):  # the colluding server hands the holder the true entry
        if isinstance(msg, ShareRoster) and msg.header.recipient == victim:
            return dataclasses.replace(msg, entries=tuple(true_entry[victim] if e[0] == dealer else e
                                                          for e in msg.entries))
        return msg

    s.run(tamper=tamper, tamper_down=swap_back)
    # the holder accepted the true, dealer-signed shares and revealed one: its own message checks out
    revealed = next(r for r in s.server.unmask[victim].shares if r.owner == dealer)
    check_revealed(s.session, s.pki[dealer], victim, revealed)
    assert victim not in s.server.faulty
    assert set(s.server.faulty) == {dealer} and "two different commitments" in s.server.faulty[dealer].reason
    assert np.array_equal(s.server.result, plain_sum(s.x, list(range(len(s.members))), 16))


# ---- 3. invalid and small-order keys -------------------------------------------------------------------


def _torsion_encodings() -> list[bytes]:
    """The canonical encodings of the eight points of order dividing 8, computed from [L]P."""
    rng = np.random.default_rng(0)
    while True:
        y = int.from_bytes(rng.bytes(32), "little") % P25519
        try:
            pt = _decompress(y)
        except ValueError:
            continue
        t = keymod._mul(keymod._L, pt)
        if not keymod._is_identity(keymod._mul(4, t)):  # order exactly 8
            break
    out = []
    q = keymod._IDENTITY
    for _ in range(8):
        out.append(_encode(q))
        q = keymod._add(q, t)
    assert len(set(out)) == 8
    return out


def _decompress(y: int):
    yy = y * y % P25519
    x2 = (yy - 1) * pow(keymod._D * yy + 1, P25519 - 2, P25519) % P25519
    x = pow(x2, (P25519 + 3) // 8, P25519)
    if (x * x - x2) % P25519:
        x = x * keymod._SQRT_M1 % P25519
    if (x * x - x2) % P25519:
        raise ValueError
    return (x, y, 1, x * y % P25519)


def _encode(pt) -> bytes:
    x, y, z, _ = pt
    zi = pow(z, P25519 - 2, P25519)
    x, y = x * zi % P25519, y * zi % P25519
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


ORDER2 = (P25519 - 1).to_bytes(32, "little")  # y = -1, x = 0


def test_registration_check_refuses_every_small_order_point_and_noncanonical_encodings() -> None:
    torsion = _torsion_encodings()
    assert ORDER2 in torsion and (1).to_bytes(32, "little") in torsion
    for enc in torsion:
        with pytest.raises(InvalidKey):
            check_identity_key(enc)
        y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
        with pytest.raises(InvalidKey):  # the other sign bit (non-canonical when x = 0)
            check_identity_key((int.from_bytes(enc, "little") ^ (1 << 255)).to_bytes(32, "little"))
        if y + P25519 < 1 << 255:  # y + p: a non-canonical encoding of the same point
            with pytest.raises(InvalidKey, match="non-canonical"):
                check_identity_key((y + P25519).to_bytes(32, "little"))
    # a mixed-order key (honest key + order-2 point) is outside the prime-order subgroup
    honest = Identity.generate().public_bytes
    mixed = keymod._add(_decompress_enc(honest), _decompress_enc(ORDER2))
    with pytest.raises(InvalidKey, match="subgroup"):
        check_identity_key(_encode(mixed))
    with pytest.raises(InvalidKey):
        check_identity_key(b"\x00" * 31)
    check_identity_key(honest)  # a real key passes


def _decompress_enc(enc: bytes):
    raw = int.from_bytes(enc, "little")
    x, y, z, _ = _decompress(raw & ((1 << 255) - 1))
    if x & 1 != raw >> 255:
        x = (P25519 - x) % P25519
    return (x, y, z, x * y % P25519)


def test_a_forged_signature_under_the_order_2_key_does_not_verify() -> None:
    # S = 0, R = identity verifies under A of order 2 whenever H(R || A || M) is even: a forgery for
    # about half of all messages without any secret key. The raw library accepts it; the PKI refuses.
    ident, zero = (1).to_bytes(32, "little"), bytes(32)
    msg = next(m for m in (b"forged %d" % i for i in range(64))
               if int.from_bytes(hashlib.sha512(ident + ORDER2 + m).digest(), "little") % keymod._L % 2 == 0)
    Ed25519PublicKey.from_public_bytes(ORDER2).verify(ident + zero, msg)  # the attack, against the library
    with pytest.raises(InvalidKey):
        PublicIdentity.from_registered(ORDER2).verify(ident + zero, msg)


def test_low_order_x25519_keys_are_refused_and_are_exactly_the_all_zero_ones() -> None:
    sk = X25519PrivateKey.generate()
    for u in sorted(keymod.LOW_ORDER_U):
        with pytest.raises(ValueError):  # cryptography: all-zero shared secret
            sk.exchange(X25519PublicKey.from_public_bytes(u.to_bytes(32, "little")))
        with pytest.raises(InvalidKey, match="low order"):
            check_x25519_key(u.to_bytes(32, "little"))
        with pytest.raises(InvalidKey):
            keymod.x25519_exchange(sk.private_bytes_raw(), u.to_bytes(32, "little"))
        if u + P25519 < 1 << 256:
            with pytest.raises(InvalidKey, match="non-canonical"):
                check_x25519_key((u + P25519).to_bytes(32, "little"))
    # the Edwards torsion points map to exactly these u-coordinates (y = 1 maps to infinity)
    for enc in _torsion_encodings():
        y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
        if y != 1:
            assert int.from_bytes(keymod.x25519_public_from_ed25519(enc), "little") in keymod.LOW_ORDER_U
    check_x25519_key(X25519PrivateKey.generate().public_key().public_bytes_raw())


def test_member_registered_with_the_order_2_key_is_named_and_its_neighbours_complete_the_round() -> None:
    n = 10
    params = SecAggParams(n=n, length=5, bits=16)
    members = list(range(n))
    ids, pki = simulated_identities(members, 5)
    bad = 4
    pki[bad] = PublicIdentity.from_registered(ORDER2)  # what the chain registered for it
    x = np.random.default_rng(5).integers(0, 1 << 16, (n, 5)).astype(np.uint32)
    out = run_round(x, members, ids, pki, params, TASK, 1, {}, os.urandom)
    assert set(out.faulty) == {bad} and out.faulty[bad].evidence == (ORDER2,)
    assert bad not in out.survivors
    assert np.array_equal(out.total, plain_sum(x, [m for m in members if m != bad], 16))


def test_forged_low_order_advertisement_under_the_order_2_key_is_refused() -> None:
    # anyone can "sign" for the order-2 member; its forged AdvertiseKeys with u = 0 keys gets nowhere
    s = Session(pki={3: PublicIdentity.from_registered(ORDER2)})
    adv = AdvertiseKeys(dataclasses.replace(s.up[0].header, sender=3), channel_public=bytes(32),
                        mask_public=bytes(32), signature=(1).to_bytes(32, "little") + bytes(32))
    st_, _ = server_handle(s.server, decode(adv.to_bytes()))
    assert 3 in st_.faulty and 3 not in st_.advertised


def test_low_order_advertised_key_is_named_excluded_and_the_round_completes() -> None:
    s = Session()
    bad = s.members[5]

    def tamper(msg):
        if isinstance(msg, AdvertiseKeys) and msg.header.sender == bad:
            return s.resign(dataclasses.replace(msg, mask_public=bytes(32)))  # u = 0, signed by bad itself
        return msg

    s.run(tamper=tamper)
    assert set(s.server.faulty) == {bad}
    evidence = decode(s.server.faulty[bad].evidence[0])
    assert isinstance(evidence, AdvertiseKeys) and evidence.mask_public == bytes(32)
    s.pki[bad].verify(evidence.signature, evidence.digest())
    assert np.array_equal(s.server.result, plain_sum(s.x, [i for i, m in enumerate(s.members) if m != bad], 16))


def test_member_given_a_low_order_neighbour_key_excludes_it_instead_of_crashing() -> None:
    # a malicious server forwards the bad key anyway: the honest member refuses that neighbour only
    s = Session()
    bad = s.members[5]
    poisoned = s.resign(dataclasses.replace(s.up[5], mask_public=(1).to_bytes(32, "little")))
    s.flush()
    rosters = s.advance()
    target = next(r for r in rosters if bad in dict((e[0], e) for e in r.entries) and r.header.recipient != bad)
    entries = tuple((m, ck, poisoned.mask_public, poisoned.signature) if m == bad else (m, ck, mk, sig)
                    for m, ck, mk, sig in target.entries)
    st_, (share_keys,) = client_handle(s.clients[target.header.recipient],
                                       decode(dataclasses.replace(target, entries=entries).to_bytes()), s.rand)
    assert "low order" in st_.rejected[bad] and bad not in st_.roster
    assert bad not in {h for h, *_ in share_keys.entries}


# ---- 4. secrets from the OS CSPRNG ---------------------------------------------------------------------


def _secrets_of(session_rand=None, attempt: int = 0) -> dict[str, object]:
    s = Session(n=5, attempt=attempt, rand=session_rand or os.urandom)
    m = s.members[0]
    s.flush()
    s.deliver(s.advance())
    st_ = s.clients[m]
    mine = st_.held[m]
    share_keys = next(msg for msg in s.up if msg.header.sender == m)
    return {
        "mask key": st_.mask_secret,
        "channel key": st_.channel_secret,
        "self seed": st_.self_seed,
        "self-seed share": mine.self_share,
        "mask-key share": mine.key_share,  # differs through the Shamir coefficients (same secret or not)
        "salts": mine.self_salt + mine.key_salt,
        "nonces": tuple(ct[:12] for _, _, _, _, ct in share_keys.entries if ct),
        "commitments": tuple((cb, cs) for _, cb, cs, _, _ in share_keys.entries),
    }


def test_two_sessions_with_identical_inputs_and_no_injected_source_differ_in_every_secret() -> None:
    a, b = _secrets_of(), _secrets_of()
    for name in a:
        if isinstance(a[name], tuple):
            assert not set(a[name]) & set(b[name]), name
        else:
            assert a[name] != b[name], name
    assert Identity.generate().public_bytes != Identity.generate().public_bytes
    # deterministic simulation mode is exactly that: the same injected source in the same session repeats
    same = [_secrets_of(CryptoRng(b"\x05" * 32).bytes) for _ in range(2)]
    assert same[0] == same[1]
    # ... and still never repeats across sessions
    assert _secrets_of(CryptoRng(b"\x05" * 32).bytes, attempt=1)["mask key"] != same[0]["mask key"]


def test_round_outcome_says_when_a_source_was_injected() -> None:
    members = [0, 1, 2]
    ids, pki = simulated_identities(members, 0)
    params = SecAggParams(n=3, length=2, bits=16)
    x = np.zeros((3, 2), np.uint32)
    assert not run_round(x, members, ids, pki, params, TASK, 0).deterministic
    assert run_round(x, members, ids, pki, params, TASK, 0, rand=CryptoRng(b"\x00" * 32).bytes).deterministic


def test_session_must_match_the_task_and_round_it_runs() -> None:
    members = [0, 1, 2]
    ids, pki = simulated_identities(members, 0)
    with pytest.raises(ValueError, match="another task or round"):
        run_round(np.zeros((3, 2), np.uint32), members, ids, pki, SecAggParams(n=3, length=2, bits=16), TASK, 0,
                  session=SessionContext(CHAIN, MANAGER, TASK, 1))


def test_masked_input_cannot_be_moved_to_another_stage_or_attempt() -> None:
    s = Session()
    s.flush()
    s.deliver(s.advance())
    s.flush()
    s.deliver(s.advance())
    mi = next(msg for msg in s.up if isinstance(msg, MaskedInput))
    other = Session(attempt=2)
    with pytest.raises(ProtocolViolation):
        server_handle(other.server, mi)
    assert s.server.stage == ServerStage.MASKED
    assert isinstance(decode(mi.to_bytes()), MaskedInput)


def test_fresh_identities_come_from_the_os_and_simulated_ones_from_the_seed() -> None:
    from fedledger.secagg import fresh_identities

    a, _ = fresh_identities([0, 1])
    b, _ = fresh_identities([0, 1])
    assert {i.public_bytes for i in a.values()}.isdisjoint(i.public_bytes for i in b.values())
    s1, _ = simulated_identities([0, 1], 3)
    s2, _ = simulated_identities([0, 1], 3)
    assert [i.public_bytes for i in s1.values()] == [i.public_bytes for i in s2.values()]


def test_a_dealer_whose_commitment_signatures_are_bad_is_named_when_its_secret_cannot_be_rebuilt() -> None:
    # every holder refuses its shares (the signature on their commitments does not verify), so its
    # self-mask seed cannot be rebuilt: the round aborts, and the abort names it on its own ShareKeys
    s = Session()
    dealer = s.members[6]

    def tamper(msg):
        if not isinstance(msg, ShareKeys) or msg.header.sender != dealer:
            return msg
        return s.resign(dataclasses.replace(msg, entries=tuple((h, cb, cs, bytes(64), ct)
                                                               for h, cb, cs, _sig, ct in msg.entries)))

    with pytest.raises(SecAggAbort, match="no sum is released") as err:
        s.run(tamper=tamper)
    assert set(err.value.faulty) == {dealer}
    assert all(dealer in st_.rejected for m, st_ in s.clients.items() if m != dealer
               and m in s.graph.neighbours(dealer))
