"""SecAgg+ member state machine: `client_start` then `client_handle(state, msg) -> (state, [msgs])`.

States are frozen values; secrets live only in them. Randomness is injected (`rand(n) -> bytes`,
by default the OS CSPRNG). Every inbound message is checked for task, round, stage, sender and
recipient before it is used; anything else raises `ProtocolViolation`, and a round that cannot be
completed safely (too few neighbours left) raises `SecAggAbort`.

Stages (Bell et al. 2020, with the consistency check of Bonawitz et al. 2017):
  start            -> AdvertiseKeys (ephemeral masking key, signed)
  KeyRoster        -> ShareKeys (Shamir shares of the self-mask seed b and the masking key s,
                      AES-GCM-encrypted per neighbour, plus a commitment to b; signed)
  ShareRoster      -> MaskedInput (x + PRG(b) + sum of +-PRG(s_ij) mod 2**bits; signed)
  SurvivorList     -> SurvivorSignature (signature on the list)
  SurvivorCertificate (>= t neighbour signatures on the same list)
                   -> UnmaskShares (b-share of each surviving neighbour, s-share of each dropped one)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger.secagg import shamir
from fedledger.secagg.channel import channel_key, open_sealed, pairwise_seed, seal, seed_commitment
from fedledger.secagg.entropy import CryptoRng, random_bytes
from fedledger.secagg.errors import ProtocolViolation, SecAggAbort
from fedledger.secagg.field import MaskingRecord, P, encode_element, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import (
    SERVER,
    AdvertiseKeys,
    Header,
    KeyRoster,
    MaskedInput,
    Message,
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
    task_id: bytes
    round_index: int
    member: int
    identity: Identity
    pki: Mapping[int, PublicIdentity]
    params: SecAggParams
    graph: Graph

    def header(self) -> Header:
        return Header(self.task_id, self.round_index, self.member, SERVER)


@dataclass(frozen=True)
class ClientState:
    cfg: ClientConfig
    stage: ClientStage
    vector: np.ndarray
    mask_secret: bytes
    roster: Mapping[int, bytes] = field(default_factory=dict)  # neighbour -> masking public key
    self_seed: bytes = b""
    held: Mapping[int, tuple[bytes, bytes]] = field(default_factory=dict)  # owner -> (b share, s share)
    survivors: tuple[int, ...] = ()
    channel: Mapping[int, bytes] = field(default_factory=dict)  # neighbour -> long-term X25519 secret
    blinding: int | None = None  # optional field coordinate t_i (secagg.field); None: vector only
    record: MaskingRecord | None = None  # kept for blame when a field coordinate is sent


def _sign(cfg: ClientConfig, msg: Message) -> Message:
    return replace(msg, signature=cfg.identity.sign(msg.digest()))  # type: ignore[call-arg]


def client_start(cfg: ClientConfig, vector: np.ndarray, rand: Rand = random_bytes,
                 blinding: int | None = None) -> tuple[ClientState, list[Message]]:
    """Begin a round with an encoded input (uint32 values < 2**bits, length params.length).

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
    secret = X25519PrivateKey.from_private_bytes(rand(32))
    secret_raw = secret.private_bytes_raw()
    msg = _sign(cfg, AdvertiseKeys(cfg.header(), mask_public=secret.public_key().public_bytes_raw()))
    return ClientState(cfg=cfg, stage=ClientStage.AWAIT_KEY_ROSTER, vector=v, mask_secret=secret_raw,
                       blinding=None if blinding is None else int(blinding)), [msg]


def _check(state: ClientState, msg: Message, expected: type[Message]) -> None:
    cfg = state.cfg
    h = msg.header
    if not isinstance(msg, expected):
        raise ProtocolViolation(f"member {cfg.member}: expected {expected.__name__}, got {type(msg).__name__}")
    if h.task_id != cfg.task_id or h.round_index != cfg.round_index:
        raise ProtocolViolation(f"member {cfg.member}: message for another task or round (replay?)")
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
    roster: dict[int, bytes] = {}
    for m, pk, sig in msg.entries:
        if m not in hood:
            raise ProtocolViolation(f"member {cfg.member}: roster lists non-neighbour {m}")
        if m in roster:
            raise ProtocolViolation(f"member {cfg.member}: roster lists {m} twice")
        adv = AdvertiseKeys(Header(cfg.task_id, cfg.round_index, m, SERVER), mask_public=pk, signature=sig)
        cfg.pki[m].verify(sig, adv.digest())
        roster[m] = pk
    own = X25519PrivateKey.from_private_bytes(state.mask_secret).public_key().public_bytes_raw()
    if roster.get(cfg.member) != own:
        raise ProtocolViolation(f"member {cfg.member}: roster does not carry this member's own key")
    t = cfg.params.threshold
    if len(roster) < t:
        raise SecAggAbort(f"member {cfg.member}: only {len(roster)} neighbours left, threshold is {t}")
    holders = sorted(roster)
    xs = np.array([cfg.graph.point(m) for m in holders], dtype=np.int64)
    self_seed = rand(32)
    secrets = np.frombuffer(self_seed + state.mask_secret, dtype=np.uint8).reshape(2, 32)
    shares = shamir.split_many(secrets, np.stack([xs, xs]), t, CryptoRng(rand(32)))
    cts: list[tuple[int, bytes]] = []
    held: dict[int, tuple[bytes, bytes]] = {}
    channel: dict[int, bytes] = {}
    for idx, m in enumerate(holders):
        b_sh, s_sh = shamir.share_to_bytes(shares[0, idx]), shamir.share_to_bytes(shares[1, idx])
        if m == cfg.member:
            held[m] = (b_sh, s_sh)
            continue
        channel[m] = cfg.identity.agree(cfg.pki[m].x25519)
        key = channel_key(channel[m], cfg.task_id, cfg.round_index, cfg.member, m)
        cts.append((m, seal(key, rand(12), b_sh + s_sh, cfg.task_id, cfg.round_index, cfg.member, m)))
    commit = seed_commitment(cfg.task_id, cfg.round_index, cfg.member, self_seed)
    out = _sign(cfg, ShareKeys(cfg.header(), seed_commitment=commit, ciphertexts=tuple(cts)))
    new = replace(state, stage=ClientStage.AWAIT_SHARE_ROSTER, roster=roster, self_seed=self_seed, held=held,
                  channel=channel)
    return new, [out]


def _on_share_roster(state: ClientState, msg: ShareRoster) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    held = dict(state.held)
    for m, ct in msg.ciphertexts:
        if m not in state.roster or m == cfg.member:
            raise ProtocolViolation(f"member {cfg.member}: shares from unexpected member {m}")
        if m in held:
            raise ProtocolViolation(f"member {cfg.member}: two share messages from {m}")
        key = channel_key(state.channel[m], cfg.task_id, cfg.round_index, m, cfg.member)
        pt = open_sealed(key, ct, cfg.task_id, cfg.round_index, m, cfg.member)
        if len(pt) != 2 * shamir.SHARE_BYTES:
            raise ProtocolViolation(f"member {cfg.member}: malformed shares from {m}")
        held[m] = (pt[: shamir.SHARE_BYTES], pt[shamir.SHARE_BYTES :])
    if len(held) < cfg.params.threshold:
        raise SecAggAbort(f"member {cfg.member}: only {len(held)} neighbours shared keys, threshold is "
                          f"{cfg.params.threshold}")
    p = cfg.params
    with_field = state.blinding is not None
    self_mask = expand_mask(state.self_seed, p.length, p.bits, b"self")
    y = state.vector + self_mask
    exact = state.vector.astype(np.int64) + self_mask if with_field else None  # for the carries
    u = (state.blinding + field_mask(state.self_seed)) if with_field else 0
    pair_seeds: dict[int, bytes] = {}
    for m in held:
        if m == cfg.member:
            continue
        seed = pairwise_seed(state.mask_secret, state.roster[m], cfg.task_id, cfg.round_index, cfg.member, m)
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
    return replace(state, stage=ClientStage.AWAIT_SURVIVOR_LIST, held=held, vector=np.zeros(0, np.uint32),
                   channel={}, record=record, blinding=None), [out]


def _on_survivor_list(state: ClientState, msg: SurvivorList) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    sv = msg.survivors
    if list(sv) != sorted(set(sv)) or cfg.member not in sv:
        raise ProtocolViolation(f"member {cfg.member}: survivor list is not a sorted list containing this member")
    hood = set(cfg.graph.neighbours(cfg.member))
    live = [m for m in sv if m in hood]
    unknown = [m for m in live if m not in state.held]
    if unknown:
        raise ProtocolViolation(f"member {cfg.member}: survivors {unknown} never shared keys with this member")
    if len(live) < cfg.params.threshold:
        raise SecAggAbort(f"member {cfg.member}: only {len(live)} neighbours survived, threshold is "
                          f"{cfg.params.threshold}")
    stmt = survivor_statement(cfg.task_id, cfg.round_index, sv)
    out = _sign(cfg, SurvivorSignature(cfg.header(), list_signature=cfg.identity.sign(stmt)))
    return replace(state, stage=ClientStage.AWAIT_CERTIFICATE, survivors=sv), [out]


def _on_certificate(state: ClientState, msg: SurvivorCertificate) -> tuple[ClientState, list[Message]]:
    cfg = state.cfg
    if msg.survivors != state.survivors:
        raise ProtocolViolation(f"member {cfg.member}: certificate is for a different survivor list")
    stmt = survivor_statement(cfg.task_id, cfg.round_index, state.survivors)
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
        (m, ShareType.SELF_MASK, b) if m in sv else (m, ShareType.MASK_KEY, s)
        for m, (b, s) in sorted(state.held.items())
    )
    out = _sign(cfg, UnmaskShares(cfg.header(), shares=shares))
    done = replace(state, stage=ClientStage.DONE, mask_secret=b"", self_seed=b"", held={})
    return done, [out]
