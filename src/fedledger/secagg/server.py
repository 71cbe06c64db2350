"""SecAgg+ server state machine.

`server_handle(state, msg) -> (state, [])` accepts one member message of the current stage (or
raises `ProtocolViolation`: another session, wrong stage, unknown or duplicate sender, bad
signature, malformed content). `server_advance(state) -> (state, [msgs])` closes the stage at its
deadline (the driver decides when) and emits the next stage's messages; closing the last stage
reconstructs the secrets of the round in batched Shamir calls and leaves the sum in `state.result`.

Members that misbehave in a way their own signed message proves are named in `state.faulty` (with
that evidence) and the round goes on without what they sent:
* a registered identity key that is invalid or of small order, or advertised X25519 keys of low
  order: the member is not admitted to the session;
* an unmasking share that does not open the commitment its holder echoes (or whose echoed dealer
  signature is bad): the share is excluded, the holder named on its own UnmaskShares, and
  reconstruction uses the good shares (`check_revealed` is the check, for validators too);
* a dealer that signed other commitments for a holder than those in its ShareKeys: named (both of
  its signatures are the evidence), that share excluded;
* a dealer whose committed shares are not on one polynomial of degree < t: named. If its good
  shares still rebuild the secret it committed to (seed commitment, advertised masking key), the
  round completes; if not, `SecAggAbort` names it. A wrong sum is never returned.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger.secagg import shamir
from fedledger.secagg.channel import (
    SALT_BYTES,
    commitment_statement,
    pairwise_seed,
    public_of,
    seed_commitment,
    share_commitment,
)
from fedledger.secagg.context import SessionContext
from fedledger.secagg.errors import DecodeError, Fault, InvalidKey, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import P, decode_element, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import PublicIdentity, check_x25519_key
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
from fedledger.secagg.packing import unpack
from fedledger.secagg.prg import expand_mask


class ServerStage(IntEnum):
    ADVERTISE = 1
    SHARE = 2
    MASKED = 3
    CONSISTENCY = 4
    UNMASK = 5
    DONE = 6


_EXPECTED: dict[ServerStage, type[Message]] = {
    ServerStage.ADVERTISE: AdvertiseKeys,
    ServerStage.SHARE: ShareKeys,
    ServerStage.MASKED: MaskedInput,
    ServerStage.CONSISTENCY: SurvivorSignature,
    ServerStage.UNMASK: UnmaskShares,
}


@dataclass(frozen=True)
class ServerConfig:
    session: SessionContext
    pki: Mapping[int, PublicIdentity]
    params: SecAggParams
    graph: Graph

    @property
    def task_id(self) -> bytes:
        return self.session.task_id

    @property
    def round_index(self) -> int:
        return self.session.round_index


@dataclass(frozen=True)
class ServerState:
    cfg: ServerConfig
    stage: ServerStage = ServerStage.ADVERTISE
    advertised: Mapping[int, AdvertiseKeys] = field(default_factory=dict)
    shared: Mapping[int, ShareKeys] = field(default_factory=dict)
    masked: Mapping[int, bytes] = field(default_factory=dict)
    survivors: tuple[int, ...] = ()
    list_signatures: Mapping[int, bytes] = field(default_factory=dict)
    unmask: Mapping[int, UnmaskShares] = field(default_factory=dict)
    result: np.ndarray | None = None
    masked_blinding: Mapping[int, int] = field(default_factory=dict)  # optional field coordinates u_i
    excluded: tuple[int, ...] = ()  # sent a masked input but were set aside (e.g. no valid proof)
    blinding_result: int | None = None  # T = sum of the survivors' t_i mod p, if they sent one
    faulty: Mapping[int, Fault] = field(default_factory=dict)  # members named, with their own signed evidence
    bad_shares: frozenset[tuple[int, int]] = frozenset()  # (holder, dealer): revealed shares that failed
    commitments: Mapping[int, Mapping[int, tuple[bytes, bytes]]] = field(default_factory=dict)  # dealer -> holder


def server_start(cfg: ServerConfig) -> ServerState:
    return ServerState(cfg=cfg)


def _header(cfg: ServerConfig, to: int) -> Header:
    return Header(cfg.session, SERVER, to)


def _name(state: ServerState, fault: Fault) -> ServerState:
    if fault.member in state.faulty:
        return state
    return replace(state, faulty={**state.faulty, fault.member: fault})


def server_handle(state: ServerState, msg: Message) -> tuple[ServerState, list[Message]]:
    cfg = state.cfg
    h = msg.header
    expected = _EXPECTED.get(state.stage)
    if expected is None or not isinstance(msg, expected):
        raise ProtocolViolation(f"server: {type(msg).__name__} out of stage {state.stage.name}")
    if h.session != cfg.session:
        raise ProtocolViolation("server: message from another session (replay?)")
    if h.recipient != SERVER or h.sender not in cfg.graph.position:
        raise ProtocolViolation(f"server: message from {h.sender}, who is not in the cohort")
    sender = h.sender
    if sender in state.faulty and isinstance(msg, AdvertiseKeys):
        raise ProtocolViolation(f"server: member {sender} is not admitted to this session")
    if sender not in cfg.pki:
        raise ProtocolViolation(f"server: member {sender} has no registered key")
    try:
        cfg.pki[sender].check()
    except InvalidKey as e:  # its registration is the evidence; nothing it "signs" can be trusted
        return _name(state, Fault(sender, f"invalid registered key: {e}", (cfg.pki[sender].ed25519,))), []
    cfg.pki[sender].verify(msg.signature, msg.digest())  # type: ignore[attr-defined]
    if isinstance(msg, AdvertiseKeys):
        if sender in state.advertised:
            raise ProtocolViolation(f"server: second AdvertiseKeys from {sender} (replay?)")
        try:
            check_x25519_key(msg.channel_public)
            check_x25519_key(msg.mask_public)
        except InvalidKey as e:  # its own signed message carries the bad key: named, not admitted
            return _name(state, Fault(sender, f"advertised {e}", (msg.to_bytes(),))), []
        return replace(state, advertised={**state.advertised, sender: msg}), []
    if isinstance(msg, ShareKeys):
        if sender in state.shared:
            raise ProtocolViolation(f"server: second ShareKeys from {sender} (replay?)")
        if sender not in state.advertised:
            raise ProtocolViolation(f"server: ShareKeys from {sender}, who advertised no key")
        hood = set(cfg.graph.neighbours(sender)) & set(state.advertised)
        holders = [m for m, *_ in msg.entries]
        if len(set(holders)) != len(holders) or set(holders) != hood:
            raise ProtocolViolation(f"server: ShareKeys from {sender} does not deal to exactly its live neighbours")
        if any((m == sender) != (ct == b"") for m, _, _, _, ct in msg.entries):
            raise ProtocolViolation(f"server: ShareKeys from {sender} has a ciphertext for itself or none for a peer")
        return replace(state, shared={**state.shared, sender: msg},
                       commitments={**state.commitments, sender: msg.commitments()}), []
    if isinstance(msg, MaskedInput):
        if sender in state.masked:
            raise ProtocolViolation(f"server: second MaskedInput from {sender} (replay?)")
        if sender not in state.shared:
            raise ProtocolViolation(f"server: MaskedInput from {sender}, who shared no keys")
        unpack(msg.payload, cfg.params.length, cfg.params.bits)  # size and padding check
        blinding = dict(state.masked_blinding)
        if msg.blinding:
            try:
                blinding[sender] = decode_element(msg.blinding)
            except ValueError as e:
                raise ProtocolViolation(f"server: MaskedInput from {sender}: {e}") from None
        return replace(state, masked={**state.masked, sender: msg.payload}, masked_blinding=blinding), []
    if isinstance(msg, SurvivorSignature):
        if sender in state.list_signatures:
            raise ProtocolViolation(f"server: second SurvivorSignature from {sender} (replay?)")
        if sender not in state.survivors:
            raise ProtocolViolation(f"server: SurvivorSignature from non-survivor {sender}")
        stmt = survivor_statement(cfg.session, state.survivors)
        cfg.pki[sender].verify(msg.list_signature, stmt)
        return replace(state, list_signatures={**state.list_signatures, sender: msg.list_signature}), []
    assert isinstance(msg, UnmaskShares)
    if sender in state.unmask:
        raise ProtocolViolation(f"server: second UnmaskShares from {sender} (replay?)")
    if sender not in state.list_signatures:
        raise ProtocolViolation(f"server: UnmaskShares from {sender}, who did not confirm the survivors")
    sv = set(state.survivors)
    hood = set(cfg.graph.neighbours(sender))
    owners = [r.owner for r in msg.shares]
    if len(set(owners)) != len(owners):
        raise ProtocolViolation(f"server: UnmaskShares from {sender} repeats an owner")
    for r in msg.shares:
        if r.owner not in hood or r.owner not in state.shared:
            raise ProtocolViolation(f"server: {sender} sent a share of {r.owner}, not a neighbour that shared")
        if (r.kind == ShareType.SELF_MASK) != (r.owner in sv):
            raise ProtocolViolation(f"server: {sender} sent the wrong kind of share for {r.owner}")
    # each share against the dealer's commitment for this holder: a bad one is set aside and whoever
    # its evidence blames is named; the round goes on with the good shares
    bad = set(state.bad_shares)
    for r in msg.shares:
        stored = state.commitments[r.owner].get(sender)
        authentic = stored is not None and (r.c_self, r.c_key) == stored  # what the dealer's signed ShareKeys says
        try:
            check_revealed(cfg.session, None if authentic else cfg.pki[r.owner], sender, r)
        except ProtocolViolation as e:  # the holder's own message is inconsistent: its fault
            bad.add((sender, r.owner))
            state = _name(state, Fault(sender, f"revealed a bad share of member {r.owner}'s secret: {e}",
                                       (msg.to_bytes(),)))
            continue
        if not authentic:  # a share the dealer signed for, but not the commitments it sent the server
            bad.add((sender, r.owner))
            state = _name(state, Fault(r.owner, f"signed two different commitments for holder {sender}",
                                       (state.shared[r.owner].to_bytes(), msg.to_bytes())))
    return replace(state, unmask={**state.unmask, sender: msg}, bad_shares=frozenset(bad)), []


def check_revealed(session: SessionContext, dealer: PublicIdentity | None, holder: int, r: Revealed) -> None:
    """Raise `ProtocolViolation` unless revealed share `r` of `holder` opens the commitment the holder
    itself echoes and, if `dealer` is given, that commitment carries the dealer's signature.

    A member's signed UnmaskShares that fails this check is evidence of its own fault: an honest
    holder checks the same signature and opening before it accepts a share (`client._open_entry`).
    The server passes `dealer=None` when the echoed commitments equal the ones in the dealer's
    signed ShareKeys (already authenticated); a validator re-checking a fault passes the dealer's key.
    """
    if dealer is not None:
        dealer.verify(r.dealer_signature, commitment_statement(session, r.owner, holder, r.c_self, r.c_key))
    committed = r.c_self if r.kind == ShareType.SELF_MASK else r.c_key
    if len(r.salt) != SALT_BYTES or share_commitment(session, r.owner, holder, int(r.kind), r.share,
                                                     r.salt) != committed:
        raise ProtocolViolation("the share does not open the dealer's commitment")
    try:
        shamir.share_from_bytes(r.share)
    except DecodeError as e:
        raise ProtocolViolation(f"the share is malformed: {e}") from None


def server_exclude(state: ServerState, members: Collection[int]) -> ServerState:
    """Set aside masked inputs before the survivor list is fixed: those members count as dropouts
    (their self-mask seeds are never revealed; their pairwise masks are reconstructed and removed)."""
    if state.stage != ServerStage.MASKED:
        raise ProtocolViolation("server: members can only be excluded while masked inputs are collected")
    out = set(members)
    unknown = out - set(state.masked)
    if unknown:
        raise ProtocolViolation(f"server: cannot exclude {sorted(unknown)[:5]}: no masked input from them")
    return replace(
        state,
        masked={m: v for m, v in state.masked.items() if m not in out},
        masked_blinding={m: v for m, v in state.masked_blinding.items() if m not in out},
        excluded=tuple(sorted(set(state.excluded) | out)),
    )


def server_advance(state: ServerState) -> tuple[ServerState, list[Message]]:
    """Close the current stage (its deadline passed) and emit the next stage's messages."""
    cfg = state.cfg
    if state.stage == ServerStage.ADVERTISE:
        _need(len(state.advertised), state, "advertised keys")
        out: list[Message] = []
        for m in sorted(state.advertised):
            entries = tuple(
                (j, state.advertised[j].channel_public, state.advertised[j].mask_public, state.advertised[j].signature)
                for j in cfg.graph.neighbours(m)
                if j in state.advertised
            )
            out.append(KeyRoster(_header(cfg, m), entries=entries))
        return replace(state, stage=ServerStage.SHARE), out
    if state.stage == ServerStage.SHARE:
        _need(len(state.shared), state, "shared keys")
        inbox: dict[int, list[ShareEntry]] = {m: [] for m in state.shared}
        for sender in sorted(state.shared):
            for to, cb, cs, sig, ct in state.shared[sender].entries:
                if to in inbox and to != sender:
                    inbox[to].append((sender, cb, cs, sig, ct))
        out = [ShareRoster(_header(cfg, m), entries=tuple(inbox[m])) for m in sorted(inbox)]
        return replace(state, stage=ServerStage.MASKED), out
    if state.stage == ServerStage.MASKED:
        _need(len(state.masked), state, "sent masked inputs")
        sv = tuple(sorted(state.masked))
        if state.masked_blinding and set(state.masked_blinding) != set(sv):
            raise SecAggAbort("secure aggregation aborted: some masked inputs lack the field coordinate")
        out = [SurvivorList(_header(cfg, m), survivors=sv) for m in sv]
        return replace(state, stage=ServerStage.CONSISTENCY, survivors=sv), out
    if state.stage == ServerStage.CONSISTENCY:
        _need(len(state.list_signatures), state, "confirmed the survivor list")
        # each member needs only its neighbours' signatures (>= t of them) to accept the list
        out = [SurvivorCertificate(_header(cfg, m), survivors=state.survivors,
                                   signatures=tuple((j, state.list_signatures[j]) for j in
                                                    sorted(set(cfg.graph.neighbours(m)) & set(state.list_signatures))))
               for m in sorted(state.list_signatures)]
        return replace(state, stage=ServerStage.UNMASK), out
    if state.stage == ServerStage.UNMASK:
        result, blinding, faulty = _unmask(state)
        return replace(state, stage=ServerStage.DONE, result=result, blinding_result=blinding, faulty=faulty), []
    raise ProtocolViolation("server: round already finished")


def _need(count: int, state: ServerState, what: str) -> None:
    if count < state.cfg.params.threshold:
        raise SecAggAbort(f"secure aggregation aborted: only {count} members {what}, "
                          f"threshold is {state.cfg.params.threshold}", state.faulty)


def _reconstruct(state: ServerState, owners: list[int], kind: ShareType) -> tuple[dict[int, bytes], set[int]]:
    """Recover each owner's secret from its good shares (batched per share count).

    Returns the secrets rebuilt from each owner's first t good shares, and the owners whose good
    shares (every one opening the owner's own signed commitment) are not on one polynomial of
    degree < t: those owners dealt inconsistently."""
    cfg = state.cfg
    t = cfg.params.threshold
    if not owners:
        return {}, set()
    pts: dict[int, list[int]] = {m: [] for m in owners}
    vals: dict[int, list[np.ndarray]] = {m: [] for m in owners}
    for holder in sorted(state.unmask):
        for r in state.unmask[holder].shares:
            if r.kind == kind and r.owner in pts and (holder, r.owner) not in state.bad_shares:
                pts[r.owner].append(cfg.graph.point(holder))
                vals[r.owner].append(shamir.share_from_bytes(r.share))
    short = [m for m in owners if len(pts[m]) < t]
    if short:
        what = "self-mask seed" if kind == ShareType.SELF_MASK else "masking key"
        raise SecAggAbort(
            f"secure aggregation aborted: too many dropouts to recover the {what} of member(s) "
            f"{short[:5]}{'...' if len(short) > 5 else ''} (need {t} shares each); no sum is released",
            {**state.faulty, **_bad_dealings(state, short)},
        )
    out: dict[int, bytes] = {}
    inconsistent: set[int] = set()
    by_count: dict[int, list[int]] = {}
    for m in owners:
        by_count.setdefault(len(pts[m]), []).append(m)
    for count, group in by_count.items():
        xs = np.array([pts[m] for m in group], dtype=np.int64)
        ys = np.stack([np.stack(vals[m]) for m in group])
        if count > t:
            ok = shamir.consistent_rows(xs, ys, t)
            inconsistent |= {m for m, good in zip(group, ok, strict=True) if not good}
        secrets, in_range = shamir.combine_rows(xs[:, :t], ys[:, :t])
        for i, m in enumerate(group):
            out[m] = secrets[i].tobytes() if in_range[i] else b""
            if not in_range[i]:
                inconsistent.add(m)
    return out, inconsistent


def _bad_dealings(state: ServerState, dealers: list[int]) -> dict[int, Fault]:
    """Dealers whose own signed ShareKeys carries a commitment signature that does not verify: their
    holders had to refuse those shares. Checked only when a secret cannot be rebuilt (k signatures per
    dealer would otherwise be verified for every member on every round)."""
    cfg = state.cfg
    out: dict[int, Fault] = {}
    for m in dealers:
        sk = state.shared[m]
        for h, cb, cs, sig, _ct in sk.entries:
            try:
                cfg.pki[m].verify(sig, commitment_statement(cfg.session, m, h, cb, cs))
            except ProtocolViolation:
                out[m] = Fault(m, f"its signed ShareKeys carries a bad commitment signature for holder {h}",
                               (sk.to_bytes(),))
                break
    return out


def _dealer_fault(state: ServerState, dealer: int, kind: ShareType, why: str) -> Fault:
    """A dealer named on its own signed ShareKeys and the signed UnmaskShares that opened its commitments."""
    openers = tuple(state.unmask[h].to_bytes() for h in sorted(state.unmask)
                    if any(r.owner == dealer and r.kind == kind for r in state.unmask[h].shares))
    return Fault(dealer, why, (state.shared[dealer].to_bytes(), *openers))


def _unmask(state: ServerState) -> tuple[np.ndarray, int | None, dict[int, Fault]]:
    cfg = state.cfg
    p = cfg.params
    sv = state.survivors
    dropped = sorted(set(state.shared) - set(sv))
    affected = [j for j in dropped if any(k in state.masked for k in cfg.graph.neighbours(j))]
    seeds, odd_b = _reconstruct(state, list(sv), ShareType.SELF_MASK)
    keys, odd_s = _reconstruct(state, affected, ShareType.MASK_KEY)
    faulty = dict(state.faulty)
    fatal: list[int] = []
    for m, seed in seeds.items():
        if seed == b"" or seed_commitment(cfg.session, m, seed) != state.shared[m].seed_commitment:
            fatal.append(m)
            faulty[m] = _dealer_fault(state, m, ShareType.SELF_MASK, "its committed shares do not rebuild the "
                                                                     "self-mask seed it committed to")
        elif m in odd_b:
            faulty.setdefault(m, _dealer_fault(state, m, ShareType.SELF_MASK, "committed to shares of its self-mask "
                                                                             "seed that are not on one polynomial"))
    for j, key in keys.items():
        if key == b"" or public_of(key) != state.advertised[j].mask_public:
            fatal.append(j)
            faulty[j] = _dealer_fault(state, j, ShareType.MASK_KEY, "its committed shares do not rebuild the "
                                                                    "masking key it advertised")
        elif j in odd_s:
            faulty.setdefault(j, _dealer_fault(state, j, ShareType.MASK_KEY, "committed to shares of its masking "
                                                                            "key that are not on one polynomial"))
    if fatal:
        raise SecAggAbort(f"secure aggregation aborted: member(s) {sorted(fatal)} dealt shares that do not rebuild "
                          "their committed secrets; no sum is released", faulty)
    with_field = bool(state.masked_blinding)
    acc = np.zeros(p.length, dtype=np.uint32)
    total = sum(state.masked_blinding.values()) if with_field else 0
    for m in sv:
        acc += unpack(state.masked[m], p.length, p.bits)
        acc -= expand_mask(seeds[m], p.length, p.bits, b"self")
        if with_field:
            total -= field_mask(seeds[m])
    for j in affected:
        secret = X25519PrivateKey.from_private_bytes(keys[j])
        for k in cfg.graph.neighbours(j):
            if k not in state.masked or k == j:
                continue
            seed = pairwise_seed(secret, state.advertised[k].mask_public, cfg.session, j, k)
            mask = expand_mask(seed, p.length, p.bits, b"pair")
            # k added +mask if k < j, else -mask: take it back out
            if k < j:
                acc -= mask
            else:
                acc += mask
            if with_field:
                total -= field_mask(seed) if k < j else -field_mask(seed)
    if p.bits < 32:
        acc &= np.uint32((1 << p.bits) - 1)
    return acc, (total % P if with_field else None), faulty
