"""SecAgg+ member state machine: `client_start` then `client_handle(state, msg) -> (state, [msgs])`.

States are frozen values; secrets live only in them. Randomness is injected (`rand(n) -> bytes`,
by default the OS CSPRNG). Every inbound message is checked for task, round, stage, sender and
recipient before it is used; anything else raises `ProtocolViolation`, and a round that cannot be
completed safely (too few neighbours left) raises `SecAggAbort`.

Stages (Bell et al. 2020, with the consistency check of Bonawitz et al. 2017):
  start            -> AdvertiseKeys (fresh per-session X25519 channel and masking keys, signed by
                      the member's registered identity key)
  KeyRoster        -> ShareKeys (Shamir shares of the self-mask seed b and the masking key s,
                      AES-GCM-encrypted per neighbour under per-session channel keys, a commitment to
                      b, and per holder salted commitments to its two shares, signed; see docs/secagg.md)
  ShareRoster      -> MaskedInput (x + PRG(b) + sum of +-PRG(s_ij) mod 2**bits; signed)
  SurvivorList     -> SurvivorSignature (signature on the list)
  SurvivorCertificate (>= t neighbour signatures on the same list)
                   -> UnmaskShares (b-share of each surviving neighbour, s-share of each dropped one,
                      each with the salt that opens its commitment)

Everything is bound to `cfg.session` (`context.SessionContext`). A peer whose keys are invalid
(registered identity key not of prime order, low-order X25519 key) or whose dealt shares do not
match its own signed commitments is refused and recorded in `state.rejected`; the round goes on
without relying on it. Every secret comes from `rand` (the OS CSPRNG unless a deterministic source
is injected for simulation), put through `session_secret` with the session and member.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger.secagg import shamir
from fedledger.secagg.channel import (
    NONCE_BYTES,
    SALT_BYTES,
    channel_key,
    commitment_statement,
    open_sealed,
    pairwise_seed,
    seal,
    seed_commitment,
    share_commitment,
)
from fedledger.secagg.context import SessionContext, session_secret
from fedledger.secagg.entropy import CryptoRng, random_bytes
from fedledger.secagg.errors import InvalidKey, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import MaskingRecord, P, encode_element, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity, check_x25519_key
from fedledger.secagg.messages import (
    SERVER,
    AdvertiseKeys,
    Header,
    KeyRoster,
    MaskedInput,
    Message,
    Revealed,
    ShareEntry,
    ShareKeys,
    ShareRoster,
    ShareType,
    SurvivorCertificate,
    SurvivorList,
    SurvivorSignature,
    UnmaskShares,
    survivor_statement,
)
from fedledger.secagg.packing import pack
from fedledger.secagg.prg import expand_mask

Rand = Callable[[int], bytes]


class ClientStage(IntEnum):
    AWAIT_KEY_ROSTER = 1
    AWAIT_SHARE_ROSTER = 2
    AWAIT_SURVIVOR_LIST = 3
    AWAIT_CERTIFICATE = 4
    DONE = 5


@dataclass(frozen=True)
class ClientConfig:
    session: SessionContext
    member: int
    identity: Identity
    pki: Mapping[int, PublicIdentity]
    params: SecAggParams
    graph: Graph

    @property
    def task_id(self) -> bytes:
        return self.session.task_id

    @property
    def round_index(self) -> int:
        return self.session.round_index

    def header(self) -> Header:
        return Header(self.session, self.member, SERVER)


@dataclass(frozen=True)
class Held:
    """The two shares a member holds of one dealer's secrets, the salts opening their commitments, and
    the commitments with the dealer's signature on them (echoed when a share is revealed)."""

    self_share: bytes
    key_share: bytes
    self_salt: bytes
    key_salt: bytes
    c_self: bytes = b""
    c_key: bytes = b""
    dealer_signature: bytes = b""


@dataclass(frozen=True)
class ClientState:
    cfg: ClientConfig
    stage: ClientStage
    vector: np.ndarray
    mask_secret: bytes
    channel_secret: bytes = b""
    roster: Mapping[int, tuple[bytes, bytes]] = field(default_factory=dict)  # neighbour -> (channel, masking) key
    self_seed: bytes = b""
    held: Mapping[int, Held] = field(default_factory=dict)  # dealer -> the valid shares it dealt this member
    sharers: frozenset[int] = frozenset()  # neighbours that sent this member share entries (mask partners)
    rejected: Mapping[int, str] = field(default_factory=dict)  # peers this member refused, and why
    survivors: tuple[int, ...] = ()
    blinding: int | None = None  # optional field coordinate t_i (secagg.field); None: vector only
    record: MaskingRecord | None = None  # kept for blame when a field coordinate is sent


def _sign(cfg: ClientConfig, msg: Message) -> Message:
    return replace(msg, signature=cfg.identity.sign(msg.digest()))  # type: ignore[call-arg]


def client_start(cfg: ClientConfig, vector: np.ndarray, rand: Rand = random_bytes,
                 blinding: int | None = None) -> tuple[ClientState, list[Message]]:
    """Begin a session with an encoded input (uint32 values < 2**bits, length params.length).

    Draws this session's channel and masking keys (never reused by another session).
    `blinding`: an optional field element t_i in [0, p) sent masked beside the vector (secagg.field).
    """
    if blinding is not None and not 0 <= int(blinding) < P:
        raise ValueError("the field coordinate must be in [0, p)")
    v = np.ascontiguousarray(vector, dtype=np.uint32)
    if v.shape != (cfg.params.length,):
        raise ValueError(f"input must have shape ({cfg.params.length},), got {v.shape}")
    if cfg.params.bits < 32 and v.size and int(v.max()) >> cfg.params.bits:
        raise ValueError(f"input values must be below 2**{cfg.params.bits}")
    if cfg.member not in cfg.graph.position:
        raise ValueError(f"member {cfg.member} is not in this round's cohort")
    fresh = rand(32)
    mask = X25519PrivateKey.from_private_bytes(session_secret(fresh, cfg.session, cfg.member, b"mask-key"))
    chan = X25519PrivateKey.from_private_bytes(session_secret(fresh, cfg.session, cfg.member, b"channel-key"))
    msg = _sign(cfg, AdvertiseKeys(cfg.header(), channel_public=chan.public_key().public_bytes_raw(),
                                   mask_public=mask.public_key().public_bytes_raw()))
    return ClientState(cfg=cfg, stage=ClientStage.AWAIT_KEY_ROSTER, vector=v, mask_secret=mask.private_bytes_raw(),
                       channel_secret=chan.private_bytes_raw(),
                       blinding=None if blinding is None else int(blinding)), [msg]


def _check(state: ClientState, msg: Message, expected: type[Message]) -> None:
    cfg = state.cfg
    h = msg.header
    if not isinstance(msg, expected):
        raise ProtocolViolation(f"member {cfg.member}: expected {expected.__name__}, got {type(msg).__name__}")
    if h.session != cfg.session:
        raise ProtocolViolation(f"member {cfg.member}: message from another session (replay?)")
    if h.sender != SERVER or h.recipient != cfg.member:
        raise ProtocolViolation(f"member {cfg.member}: message not from the server to this member")


def client_handle(state: ClientState, msg: Message, rand: Rand = random_bytes) -> tuple[ClientState, list[Message]]:
    if state.stage == ClientStage.AWAIT_KEY_ROSTER:
        _check(state, msg, KeyRoster)
        assert isinstance(msg, KeyRoster)
        return _on_key_roster(state, msg, rand)
    if state.stage == ClientStage.AWAIT_SHARE_ROSTER:
        _check(state, msg, ShareRoster)
        assert isinstance(msg, ShareRoster)
        return _on_share_roster(state, msg)
    if state.stage == ClientStage.AWAIT_SURVIVOR_LIST:
        _check(state, msg, SurvivorList)
        assert isinstance(msg, SurvivorList)
        return _on_survivor_list(state, msg)
    if state.stage == ClientStage.AWAIT_CERTIFICATE:
        _check(state, msg, SurvivorCertificate)
        assert isinstance(msg, SurvivorCertificate)
        return _on_certificate(state, msg)
    raise ProtocolViolation(f"member {state.cfg.member}: round already finished")


def _on_key_roster(state: ClientState, msg: KeyRoster, rand: Rand) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    hood = set(cfg.graph.neighbours(cfg.member))
    roster: dict[int, tuple[bytes, bytes]] = {}
    rejected = dict(state.rejected)
    channel: dict[int, bytes] = {}
    seen: set[int] = set()
    chan = X25519PrivateKey.from_private_bytes(state.channel_secret)
    for m, ck, mk, sig in msg.entries:
        if m not in hood:
            raise ProtocolViolation(f"member {cfg.member}: roster lists non-neighbour {m}")
        if m in seen:
            raise ProtocolViolation(f"member {cfg.member}: roster lists {m} twice")
        seen.add(m)
        adv = AdvertiseKeys(Header(cfg.session, m, SERVER), channel_public=ck, mask_public=mk, signature=sig)
        try:
            if m not in cfg.pki:
                raise InvalidKey(f"member {m} has no registered key")
            cfg.pki[m].verify(sig, adv.digest())  # InvalidKey first if its registered key is unusable
            check_x25519_key(ck)
            check_x25519_key(mk)
            if m != cfg.member:
                channel[m] = channel_key(chan, ck, cfg.session, cfg.member, m)
        except InvalidKey as e:  # never agree a key with it; it is left out like a dropout
            rejected[m] = str(e)
            continue
        roster[m] = (ck, mk)
    own = (X25519PrivateKey.from_private_bytes(state.channel_secret).public_key().public_bytes_raw(),
           X25519PrivateKey.from_private_bytes(state.mask_secret).public_key().public_bytes_raw())
    if roster.get(cfg.member) != own:
        raise ProtocolViolation(f"member {cfg.member}: roster does not carry this member's own keys")
    t = cfg.params.threshold
    if len(roster) < t:
        raise SecAggAbort(f"member {cfg.member}: only {len(roster)} neighbours left, threshold is {t}")
    holders = sorted(roster)
    k = len(holders)
    stream = CryptoRng(session_secret(rand(32), cfg.session, cfg.member, b"share-keys"))
    self_seed = stream.bytes(32)
    coeff_rng = CryptoRng(stream.bytes(32))
    salts = stream.bytes(2 * SALT_BYTES * k)
    nonces = stream.bytes(NONCE_BYTES * k)
    xs = np.array([cfg.graph.point(m) for m in holders], dtype=np.int64)
    secrets = np.frombuffer(self_seed + state.mask_secret, dtype=np.uint8).reshape(2, 32)
    shares = shamir.split_many(secrets, np.stack([xs, xs]), t, coeff_rng)
    entries: list[ShareEntry] = []
    held: dict[int, Held] = {}
    for idx, m in enumerate(holders):
        b_sh, s_sh = shamir.share_to_bytes(shares[0, idx]), shamir.share_to_bytes(shares[1, idx])
        sb = salts[2 * SALT_BYTES * idx : 2 * SALT_BYTES * idx + SALT_BYTES]
        ss = salts[2 * SALT_BYTES * idx + SALT_BYTES : 2 * SALT_BYTES * (idx + 1)]
        cb = share_commitment(cfg.session, cfg.member, m, int(ShareType.SELF_MASK), b_sh, sb)
        cs = share_commitment(cfg.session, cfg.member, m, int(ShareType.MASK_KEY), s_sh, ss)
        sig = cfg.identity.sign(commitment_statement(cfg.session, cfg.member, m, cb, cs))
        if m == cfg.member:
            held[m] = Held(b_sh, s_sh, sb, ss, cb, cs, sig)
            entries.append((m, cb, cs, sig, b""))
            continue
        nonce = nonces[NONCE_BYTES * idx : NONCE_BYTES * (idx + 1)]
        entries.append((m, cb, cs, sig, seal(channel[m], nonce, b_sh + s_sh + sb + ss, cfg.session, cfg.member, m)))
    commit = seed_commitment(cfg.session, cfg.member, self_seed)
    out = _sign(cfg, ShareKeys(cfg.header(), seed_commitment=commit, entries=tuple(entries)))
    new = replace(state, stage=ClientStage.AWAIT_SHARE_ROSTER, roster=roster, self_seed=self_seed, held=held,
                  rejected=rejected)
    return new, [out]


_PLAIN_BYTES = 2 * shamir.SHARE_BYTES + 2 * SALT_BYTES


def _open_entry(state: ClientState, dealer: int, entry: ShareEntry, chan: X25519PrivateKey) -> Held:
    """Decrypt the shares `dealer` dealt this member and check them against its signed commitments."""
    cfg = state.cfg
    _, cb, cs, sig, ct = entry
    cfg.pki[dealer].verify(sig, commitment_statement(cfg.session, dealer, cfg.member, cb, cs))
    key = channel_key(chan, state.roster[dealer][0], cfg.session, dealer, cfg.member)
    pt = open_sealed(key, ct, cfg.session, dealer, cfg.member)
    if len(pt) != _PLAIN_BYTES:
        raise ProtocolViolation(f"malformed shares from {dealer}")
    n = shamir.SHARE_BYTES
    got = Held(pt[:n], pt[n : 2 * n], pt[2 * n : 2 * n + SALT_BYTES], pt[2 * n + SALT_BYTES :], cb, cs, sig)
    shamir.share_from_bytes(got.self_share)
    shamir.share_from_bytes(got.key_share)
    if (share_commitment(cfg.session, dealer, cfg.member, int(ShareType.SELF_MASK), got.self_share, got.self_salt)
            != cb or share_commitment(cfg.session, dealer, cfg.member, int(ShareType.MASK_KEY), got.key_share,
                                      got.key_salt) != cs):
        raise ProtocolViolation(f"shares from {dealer} do not match its signed commitments")
    return got


def _on_share_roster(state: ClientState, msg: ShareRoster) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    held = dict(state.held)
    rejected = dict(state.rejected)
    sharers: set[int] = set()
    chan = X25519PrivateKey.from_private_bytes(state.channel_secret)
    for entry in msg.entries:
        m = entry[0]
        if m in state.rejected:
            continue  # refused at the key roster: nothing of it is used
        if m not in state.roster or m == cfg.member:
            raise ProtocolViolation(f"member {cfg.member}: shares from unexpected member {m}")
        if m in sharers:
            raise ProtocolViolation(f"member {cfg.member}: two share messages from {m}")
        # m dealt to this member, so m masks with it: mask with m whatever its shares are worth, or
        # the pairwise mask would not cancel; but only hold shares that open m's signed commitments
        sharers.add(m)
        try:
            held[m] = _open_entry(state, m, entry, chan)
        except ProtocolViolation as e:  # not a share this member could ever be blamed for
            rejected[m] = str(e)
    if len(sharers) + 1 < cfg.params.threshold:
        raise SecAggAbort(f"member {cfg.member}: only {len(sharers) + 1} neighbours shared keys, threshold is "
                          f"{cfg.params.threshold}")
    p = cfg.params
    with_field = state.blinding is not None
    self_mask = expand_mask(state.self_seed, p.length, p.bits, b"self")
    y = state.vector + self_mask
    exact = state.vector.astype(np.int64) + self_mask if with_field else None  # for the carries
    u = (state.blinding + field_mask(state.self_seed)) if with_field else 0
    pair_seeds: dict[int, bytes] = {}
    mine = X25519PrivateKey.from_private_bytes(state.mask_secret)
    for m in sorted(sharers):
        seed = pairwise_seed(mine, state.roster[m][1], cfg.session, cfg.member, m)
        mask = expand_mask(seed, p.length, p.bits, b"pair")
        sign = 1 if cfg.member < m else -1
        if sign > 0:
            y += mask
        else:
            y -= mask
        if with_field:
            pair_seeds[m] = seed
            exact = exact + sign * mask.astype(np.int64)
            u += sign * field_mask(seed)
    if p.bits < 32:
        y &= np.uint32((1 << p.bits) - 1)
    record = None
    blinding = b""
    if with_field:
        assert exact is not None
        carries = (exact - y.astype(np.int64)) >> p.bits  # exact: the difference is a multiple of 2**bits
        record = MaskingRecord(self_seed=state.self_seed, pair_seeds=pair_seeds, carries=carries)
        blinding = encode_element(u % P)
    out = _sign(cfg, MaskedInput(cfg.header(), payload=pack(y, p.bits), blinding=blinding))
    return replace(state, stage=ClientStage.AWAIT_SURVIVOR_LIST, held=held, sharers=frozenset(sharers),
                   rejected=rejected, vector=np.zeros(0, np.uint32), channel_secret=b"", record=record,
                   blinding=None), [out]


def _on_survivor_list(state: ClientState, msg: SurvivorList) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    sv = msg.survivors
    if list(sv) != sorted(set(sv)) or cfg.member not in sv:
        raise ProtocolViolation(f"member {cfg.member}: survivor list is not a sorted list containing this member")
    hood = set(cfg.graph.neighbours(cfg.member))
    live = [m for m in sv if m in hood]
    unknown = [m for m in live if m not in state.sharers and m != cfg.member]
    if unknown:
        raise ProtocolViolation(f"member {cfg.member}: survivors {unknown} never shared keys with this member")
    if len(live) < cfg.params.threshold:
        raise SecAggAbort(f"member {cfg.member}: only {len(live)} neighbours survived, threshold is "
                          f"{cfg.params.threshold}")
    stmt = survivor_statement(cfg.session, sv)
    out = _sign(cfg, SurvivorSignature(cfg.header(), list_signature=cfg.identity.sign(stmt)))
    return replace(state, stage=ClientStage.AWAIT_CERTIFICATE, survivors=sv), [out]


def _on_certificate(state: ClientState, msg: SurvivorCertificate) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    if msg.survivors != state.survivors:
        raise ProtocolViolation(f"member {cfg.member}: certificate is for a different survivor list")
    stmt = survivor_statement(cfg.session, state.survivors)
    hood = set(cfg.graph.neighbours(cfg.member))
    sv = set(state.survivors)
    seen: set[int] = set()
    for m, sig in msg.signatures:
        if m in seen or m not in sv:
            raise ProtocolViolation(f"member {cfg.member}: certificate signer {m} duplicated or not a survivor")
        seen.add(m)
        cfg.pki[m].verify(sig, stmt)
    if len(seen & hood) < cfg.params.threshold:
        raise SecAggAbort(f"member {cfg.member}: only {len(seen & hood)} neighbours confirmed the survivor list")
    shares = tuple(
        Revealed(m, ShareType.SELF_MASK, h.self_share, h.self_salt, h.c_self, h.c_key, h.dealer_signature)
        if m in sv else
        Revealed(m, ShareType.MASK_KEY, h.key_share, h.key_salt, h.c_self, h.c_key, h.dealer_signature)
        for m, h in sorted(state.held.items())
    )
    out = _sign(cfg, UnmaskShares(cfg.header(), shares=shares))
    done = replace(state, stage=ClientStage.DONE, mask_secret=b"", self_seed=b"", held={})
    return done, [out]
