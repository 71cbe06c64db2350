"""Run one SecAgg+ round in process: every member and the server exchange real encoded bytes.

This is what the simulation calls. Messages are encoded with `to_bytes` and decoded with
`decode` on the other side, so the bytes counted up and down per member are exactly what a
network transport would carry. `drop_before` says which members go silent and before which
of their messages (a member that drops before `Kind.MASKED_INPUT` is left out of the sum).

The run is bound to one `SessionContext` (chain, contract, task, round, attempt, sub-session):
pass a new one for every attempt and every re-sum. A message the server refuses (another
session, a bad signature, out of stage) is treated like a dropout of its sender; members the
protocol names with evidence are in `RoundOutcome.faulty`. Randomness: `rand=None` uses the OS
CSPRNG; passing a source is deterministic simulation mode when that source is seeded
(`RoundOutcome.deterministic` says a source other than the OS was injected).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedledger.secagg.client import ClientConfig, ClientState, Rand, client_handle, client_start
from fedledger.secagg.context import SessionContext
from fedledger.secagg.entropy import random_bytes
from fedledger.secagg.errors import Fault, ProtocolViolation, SecAggAbort
from fedledger.secagg.field import MaskingRecord
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import SERVER, Kind, Message, decode
from fedledger.secagg.packing import unpack
from fedledger.secagg.server import (
    ServerConfig,
    ServerStage,
    server_advance,
    server_exclude,
    server_handle,
    server_start,
)

CLIENT_SENDS = (Kind.ADVERTISE_KEYS, Kind.SHARE_KEYS, Kind.MASKED_INPUT, Kind.SURVIVOR_SIGNATURE,
                Kind.UNMASK_SHARES)


@dataclass(frozen=True)
class RoundOutcome:
    """The sum modulo 2**bits of the survivors' inputs, and what it cost."""

    total: np.ndarray
    survivors: tuple[int, ...]
    masked_inputs: Mapping[int, bytes]  # what the server saw (evidence)
    bytes_up: Mapping[int, int]
    bytes_down: Mapping[int, int]
    client_seconds: Mapping[int, float]
    server_seconds: float
    aborted: Mapping[int, str]  # members that stopped on their own (e.g. too few live neighbours)
    # with field coordinates (`blindings`): T = sum of the survivors' t_i mod p, what the server saw
    # of each member's coordinate, each member's local masking record (for blame), and who `screen`
    # set aside
    blinding_sum: int | None = None
    masked_blindings: Mapping[int, int] = field(default_factory=dict)
    records: Mapping[int, MaskingRecord] = field(default_factory=dict)
    excluded: tuple[int, ...] = ()
    # members named by the server with the evidence (their own signed messages or registered key)
    faulty: Mapping[int, Fault] = field(default_factory=dict)
    refused: Mapping[int, str] = field(default_factory=dict)  # messages the server refused, by sender
    rejected: Mapping[int, Mapping[int, str]] = field(default_factory=dict)  # member -> peers it refused
    session: SessionContext | None = None
    deterministic: bool = False  # a randomness source other than the OS CSPRNG was injected


Screen = Callable[[Mapping[int, np.ndarray], Mapping[int, int], Mapping[int, MaskingRecord]], Collection[int]]


def run_round(
    inputs: np.ndarray,
    members: Sequence[int],
    identities: Mapping[int, Identity],
    pki: Mapping[int, PublicIdentity],
    params: SecAggParams,
    task_id: bytes,
    round_index: int,
    drop_before: Mapping[int, Kind] | None = None,
    rand: Rand | None = None,
    blindings: Mapping[int, int] | None = None,
    screen: Screen | None = None,
    *,
    session: SessionContext | None = None,
) -> RoundOutcome:
    """Aggregate `inputs[i]` (uint32 [n, length], values < 2**bits) of `members[i]`.

    `blindings[m]`: optional field coordinate t_m in [0, p) per member (all members or none); the
    outcome's `blinding_sum` is then the sum over the survivors mod p. `screen(masked vectors,
    masked field coordinates, masking records)` is called once every masked input is in and
    before the survivor list is fixed; the members it returns are excluded (treated as dropouts).
    `session`: the attempt's context; by default `SessionContext.simulated(task_id, round_index)`
    (attempt 0, no chain), so callers running several attempts or re-sums must pass their own.
    """
    session = session or SessionContext.simulated(task_id, round_index)
    if session.task_id != task_id or session.round_index != round_index:
        raise ValueError("the session context is for another task or round")
    deterministic = rand is not None and rand not in (random_bytes, os.urandom)
    draw: Rand = random_bytes if rand is None else rand
    drop_before = dict(drop_before or {})
    if blindings is not None and set(int(m) for m in blindings) != set(int(m) for m in members):
        raise ValueError("blindings must give one field coordinate per member")
    x = np.asarray(inputs, dtype=np.uint32)
    if x.shape != (len(members), params.length):
        raise ValueError(f"inputs must have shape ({len(members)}, {params.length}), got {x.shape}")
    graph = Graph.build(members, params.degree, task_id, round_index)
    server = server_start(ServerConfig(session, pki, params, graph))
    up = {int(m): 0 for m in members}
    down = {int(m): 0 for m in members}
    ctime = {int(m): 0.0 for m in members}
    stime = 0.0
    states: dict[int, ClientState] = {}
    aborted: dict[int, str] = {}
    refused: dict[int, str] = {}
    rejected: dict[int, Mapping[int, str]] = {}

    def deliver_up(sender: int, msgs: list[Message]) -> None:
        nonlocal server, stime
        for msg in msgs:
            if sender in drop_before and _kind(msg) >= drop_before[sender]:
                states.pop(sender, None)
                return
            data = msg.to_bytes()
            up[sender] += len(data)
            t0 = time.perf_counter()
            try:
                server, _ = server_handle(server, decode(data))
            except ProtocolViolation as e:  # refused: to the server its sender went silent
                refused[sender] = str(e)
                states.pop(sender, None)
                return
            finally:
                stime += time.perf_counter() - t0

    for i, m in enumerate(members):
        m = int(m)
        cfg = ClientConfig(session, m, identities[m], pki, params, graph)
        t0 = time.perf_counter()
        st, msgs = client_start(cfg, x[i], draw, None if blindings is None else int(blindings[m]))
        ctime[m] += time.perf_counter() - t0
        states[m] = st
        deliver_up(m, msgs)

    records: dict[int, MaskingRecord] = {}
    screened = screen is None
    while True:
        if not screened and server.stage == ServerStage.MASKED and len(server.masked) > 0:
            screened = True
            vectors = {m: unpack(v, params.length, params.bits) for m, v in server.masked.items()}
            out = screen(vectors, dict(server.masked_blinding), {m: records[m] for m in vectors if m in records})
            server = server_exclude(server, out)
        t0 = time.perf_counter()
        server, outbound = server_advance(server)
        stime += time.perf_counter() - t0
        if server.result is not None:
            break
        for msg in outbound:
            to = msg.header.recipient
            if to not in states:
                continue
            data = msg.to_bytes()
            down[to] += len(data)
            t0 = time.perf_counter()
            try:
                st, replies = client_handle(states[to], decode(data), draw)
            except SecAggAbort as e:  # the member refuses to go on: to the server it has dropped out
                aborted[to] = str(e)
                del states[to]
                continue
            finally:
                ctime[to] += time.perf_counter() - t0
            states[to] = st
            if st.rejected:
                rejected[to] = dict(st.rejected)
            if st.record is not None and to not in records:
                records[to] = st.record
            deliver_up(to, replies)
    return RoundOutcome(
        total=server.result,
        survivors=server.survivors,
        masked_inputs=dict(server.masked),
        bytes_up=up,
        bytes_down=down,
        client_seconds=ctime,
        server_seconds=stime,
        aborted=aborted,
        blinding_sum=server.blinding_result,
        masked_blindings=dict(server.masked_blinding),
        records=records,
        excluded=server.excluded,
        faulty=dict(server.faulty),
        refused=refused,
        rejected=rejected,
        session=session,
        deterministic=deterministic,
    )


def _kind(msg: Message) -> int:
    return int(msg.KIND)


def fresh_identities(members: Sequence[int]) -> tuple[dict[int, Identity], dict[int, PublicIdentity]]:
    """Identities from the OS CSPRNG (`Identity.generate`) and the PKI built from their public keys."""
    ids = {int(m): Identity.generate() for m in members}
    pki = {m: PublicIdentity.from_registered(i.public_bytes) for m, i in ids.items()}
    return ids, pki


def simulated_identities(members: Sequence[int], seed: int) -> tuple[dict[int, Identity], dict[int, PublicIdentity]]:
    """DETERMINISTIC SIMULATION MODE: identities derived from `seed` (anyone who knows the seed has every
    secret key) and the PKI built from their registered 32-byte keys. Real members use
    `Identity.generate()` (OS CSPRNG) and `keys.pki_from_registered` over the chain's registry."""
    ids = {int(m): Identity.from_seed(seed, int(m)) for m in members}
    pki = {m: PublicIdentity.from_registered(i.public_bytes) for m, i in ids.items()}
    return ids, pki


__all__ = ["CLIENT_SENDS", "SERVER", "RoundOutcome", "fresh_identities", "run_round", "simulated_identities"]
