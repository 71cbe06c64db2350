"""SecAgg+ server state machine.

`server_handle(state, msg) -> (state, [])` accepts one member message of the current stage (or
raises `ProtocolViolation`: wrong task/round/stage, unknown or duplicate sender, bad signature,
malformed content). `server_advance(state) -> (state, [msgs])` closes the stage at its deadline
(the driver decides when) and emits the next stage's messages; closing the last stage
reconstructs the secrets of the round in one batched Shamir call and leaves the sum in
`state.result`. If too few shares arrived for some member, `SecAggAbort` is raised and no sum
exists: a wrong sum is never returned (reconstructed seeds are checked against their signed
commitments, reconstructed masking keys against their signed public keys).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from fedledger.secagg import shamir
from fedledger.secagg.channel import pairwise_seed, public_of, seed_commitment
from fedledger.secagg.errors import DecodeError, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import P, decode_element, field_mask
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import PublicIdentity
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
    task_id: bytes
    round_index: int
    pki: Mapping[int, PublicIdentity]
    params: SecAggParams
    graph: Graph


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


def server_start(cfg: ServerConfig) -> ServerState:
    return ServerState(cfg=cfg)


def _header(cfg: ServerConfig, to: int) -> Header:
    return Header(cfg.task_id, cfg.round_index, SERVER, to)


def server_handle(state: ServerState, msg: Message) -> tuple[ServerState, list[Message]]:
    cfg = state.cfg
    h = msg.header
    expected = _EXPECTED.get(state.stage)
    if expected is None or not isinstance(msg, expected):
        raise ProtocolViolation(f"server: {type(msg).__name__} out of stage {state.stage.name}")
    if h.task_id != cfg.task_id or h.round_index != cfg.round_index:
        raise ProtocolViolation("server: message for another task or round (replay?)")
    if h.recipient != SERVER or h.sender not in cfg.graph.position:
        raise ProtocolViolation(f"server: message from {h.sender}, who is not in the cohort")
    sender = h.sender
    cfg.pki[sender].verify(msg.signature, msg.digest())  # type: ignore[attr-defined]
    if isinstance(msg, AdvertiseKeys):
        if sender in state.advertised:
            raise ProtocolViolation(f"server: second AdvertiseKeys from {sender} (replay?)")
        return replace(state, advertised={**state.advertised, sender: msg}), []
    if isinstance(msg, ShareKeys):
        if sender in state.shared:
            raise ProtocolViolation(f"server: second ShareKeys from {sender} (replay?)")
        if sender not in state.advertised:
            raise ProtocolViolation(f"server: ShareKeys from {sender}, who advertised no key")
        hood = set(cfg.graph.neighbours(sender)) & set(state.advertised)
        targets = [m for m, _ in msg.ciphertexts]
        if len(set(targets)) != len(targets) or not set(targets) <= hood - {sender}:
            raise ProtocolViolation(f"server: ShareKeys from {sender} addresses non-neighbours or repeats")
        return replace(state, shared={**state.shared, sender: msg}), []
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
        stmt = survivor_statement(cfg.task_id, cfg.round_index, state.survivors)
        cfg.pki[sender].verify(msg.list_signature, stmt)
        return replace(state, list_signatures={**state.list_signatures, sender: msg.list_signature}), []
    assert isinstance(msg, UnmaskShares)
    if sender in state.unmask:
        raise ProtocolViolation(f"server: second UnmaskShares from {sender} (replay?)")
    if sender not in state.list_signatures:
        raise ProtocolViolation(f"server: UnmaskShares from {sender}, who did not confirm the survivors")
    sv = set(state.survivors)
    hood = set(cfg.graph.neighbours(sender))
    owners = [m for m, _, _ in msg.shares]
    if len(set(owners)) != len(owners):
        raise ProtocolViolation(f"server: UnmaskShares from {sender} repeats an owner")
    for owner, kind, share in msg.shares:
        if owner not in hood or owner not in state.shared:
            raise ProtocolViolation(f"server: {sender} sent a share of {owner}, not a neighbour that shared")
        if (kind == ShareType.SELF_MASK) != (owner in sv):
            raise ProtocolViolation(f"server: {sender} sent the wrong kind of share for {owner}")
        shamir.share_from_bytes(share)
    return replace(state, unmask={**state.unmask, sender: msg}), []


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
        _need(len(state.advertised), cfg, "advertised keys")
        out: list[Message] = []
        for m in sorted(state.advertised):
            entries = tuple(
                (j, state.advertised[j].mask_public, state.advertised[j].signature)
                for j in cfg.graph.neighbours(m)
                if j in state.advertised
            )
            out.append(KeyRoster(_header(cfg, m), entries=entries))
        return replace(state, stage=ServerStage.SHARE), out
    if state.stage == ServerStage.SHARE:
        _need(len(state.shared), cfg, "shared keys")
        inbox: dict[int, list[tuple[int, bytes]]] = {m: [] for m in state.shared}
        for sender in sorted(state.shared):
            for to, ct in state.shared[sender].ciphertexts:
                if to in inbox:
                    inbox[to].append((sender, ct))
        out = [ShareRoster(_header(cfg, m), ciphertexts=tuple(inbox[m])) for m in sorted(inbox)]
        return replace(state, stage=ServerStage.MASKED), out
    if state.stage == ServerStage.MASKED:
        _need(len(state.masked), cfg, "sent masked inputs")
        sv = tuple(sorted(state.masked))
        if state.masked_blinding and set(state.masked_blinding) != set(sv):
            raise SecAggAbort("secure aggregation aborted: some masked inputs lack the field coordinate")
        out = [SurvivorList(_header(cfg, m), survivors=sv) for m in sv]
        return replace(state, stage=ServerStage.CONSISTENCY, survivors=sv), out
    if state.stage == ServerStage.CONSISTENCY:
        _need(len(state.list_signatures), cfg, "confirmed the survivor list")
        # each member needs only its neighbours' signatures (>= t of them) to accept the list
        out = [SurvivorCertificate(_header(cfg, m), survivors=state.survivors,
                                   signatures=tuple((j, state.list_signatures[j]) for j in
                                                    sorted(set(cfg.graph.neighbours(m)) & set(state.list_signatures))))
               for m in sorted(state.list_signatures)]
        return replace(state, stage=ServerStage.UNMASK), out
    if state.stage == ServerStage.UNMASK:
        result, blinding = _unmask(state)
        return replace(state, stage=ServerStage.DONE, result=result, blinding_result=blinding), []
    raise ProtocolViolation("server: round already finished")


def _need(count: int, cfg: ServerConfig, what: str) -> None:
    if count < cfg.params.threshold:
        raise SecAggAbort(f"secure aggregation aborted: only {count} members {what}, "
                          f"threshold is {cfg.params.threshold}")


def _reconstruct(state: ServerState, owners: list[int], kind: ShareType) -> dict[int, bytes]:
    """Recover each owner's secret from the first t shares received (one batched Shamir call)."""
    cfg = state.cfg
    t = cfg.params.threshold
    if not owners:
        return {}
    pts: dict[int, list[int]] = {m: [] for m in owners}
    vals: dict[int, list[np.ndarray]] = {m: [] for m in owners}
    for holder in sorted(state.unmask):
        for owner, k, share in state.unmask[holder].shares:
            if k == kind and owner in pts and len(pts[owner]) < t:
                pts[owner].append(cfg.graph.point(holder))
                vals[owner].append(shamir.share_from_bytes(share))
    short = [m for m in owners if len(pts[m]) < t]
    if short:
        what = "self-mask seed" if kind == ShareType.SELF_MASK else "masking key"
        raise SecAggAbort(
            f"secure aggregation aborted: too many dropouts to recover the {what} of member(s) "
            f"{short[:5]}{'...' if len(short) > 5 else ''} (need {t} shares each); no sum is released"
        )
    xs = np.array([pts[m] for m in owners], dtype=np.int64)
    ys = np.stack([np.stack(vals[m]) for m in owners])
    try:
        secrets = shamir.combine_many(xs, ys)
    except DecodeError as e:
        raise SecAggAbort(f"secure aggregation aborted: inconsistent shares ({e})") from None
    return {m: secrets[i].tobytes() for i, m in enumerate(owners)}


def _unmask(state: ServerState) -> tuple[np.ndarray, int | None]:
    cfg = state.cfg
    p = cfg.params
    sv = state.survivors
    dropped = sorted(set(state.shared) - set(sv))
    affected = [j for j in dropped if any(k in state.masked for k in cfg.graph.neighbours(j))]
    seeds = _reconstruct(state, list(sv), ShareType.SELF_MASK)
    keys = _reconstruct(state, affected, ShareType.MASK_KEY)
    for m, seed in seeds.items():
        if seed_commitment(cfg.task_id, cfg.round_index, m, seed) != state.shared[m].seed_commitment:
            raise SecAggAbort(f"secure aggregation aborted: shares of member {m}'s seed do not match its commitment")
    for j, key in keys.items():
        if public_of(key) != state.advertised[j].mask_public:
            raise SecAggAbort(f"secure aggregation aborted: shares of member {j}'s masking key are inconsistent")
    with_field = bool(state.masked_blinding)
    acc = np.zeros(p.length, dtype=np.uint32)
    total = sum(state.masked_blinding.values()) if with_field else 0
    for m in sv:
        acc += unpack(state.masked[m], p.length, p.bits)
        acc -= expand_mask(seeds[m], p.length, p.bits, b"self")
        if with_field:
            total -= field_mask(seeds[m])
    for j in affected:
        for k in cfg.graph.neighbours(j):
            if k not in state.masked or k == j:
                continue
            seed = pairwise_seed(keys[j], state.advertised[k].mask_public, cfg.task_id, cfg.round_index, j, k)
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
    return acc, (total % P if with_field else None)
