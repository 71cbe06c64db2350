"""Run one SecAgg+ round in process: every member and the server exchange real encoded bytes.

This is what the simulation calls. Messages are encoded with `to_bytes` and decoded with
`decode` on the other side, so the bytes counted up and down per member are exactly what a
network transport would carry. `drop_before` says which members go silent and before which
of their messages (a member that drops before `Kind.MASKED_INPUT` is left out of the sum).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.secagg.client import ClientConfig, ClientState, Rand, client_handle, client_start
from fedledger.secagg.entropy import random_bytes
from fedledger.secagg.errors import SecAggAbort
from fedledger.secagg.graph import Graph, SecAggParams
from fedledger.secagg.keys import Identity, PublicIdentity
from fedledger.secagg.messages import SERVER, Kind, Message, decode
from fedledger.secagg.server import ServerConfig, server_advance, server_handle, server_start

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


def run_round(
    inputs: np.ndarray,
    members: Sequence[int],
    identities: Mapping[int, Identity],
    pki: Mapping[int, PublicIdentity],
    params: SecAggParams,
    task_id: bytes,
    round_index: int,
    drop_before: Mapping[int, Kind] | None = None,
    rand: Rand = random_bytes,
) -> RoundOutcome:
    """Aggregate `inputs[i]` (uint32 [n, length], values < 2**bits) of `members[i]`."""
    drop_before = dict(drop_before or {})
    x = np.asarray(inputs, dtype=np.uint32)
    if x.shape != (len(members), params.length):
        raise ValueError(f"inputs must have shape ({len(members)}, {params.length}), got {x.shape}")
    graph = Graph.build(members, params.degree, task_id, round_index)
    server = server_start(ServerConfig(task_id, round_index, pki, params, graph))
    up = {int(m): 0 for m in members}
    down = {int(m): 0 for m in members}
    ctime = {int(m): 0.0 for m in members}
    stime = 0.0
    states: dict[int, ClientState] = {}
    aborted: dict[int, str] = {}

    def deliver_up(sender: int, msgs: list[Message]) -> None:
        nonlocal server, stime
        for msg in msgs:
            if sender in drop_before and _kind(msg) >= drop_before[sender]:
                states.pop(sender, None)
                return
            data = msg.to_bytes()
            up[sender] += len(data)
            t0 = time.perf_counter()
            server, _ = server_handle(server, decode(data))
            stime += time.perf_counter() - t0

    for i, m in enumerate(members):
        m = int(m)
        cfg = ClientConfig(task_id, round_index, m, identities[m], pki, params, graph)
        t0 = time.perf_counter()
        st, msgs = client_start(cfg, x[i], rand)
        ctime[m] += time.perf_counter() - t0
        states[m] = st
        deliver_up(m, msgs)

    while True:
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
                st, replies = client_handle(states[to], decode(data), rand)
            except SecAggAbort as e:  # the member refuses to go on: to the server it has dropped out
                aborted[to] = str(e)
                del states[to]
                continue
            finally:
                ctime[to] += time.perf_counter() - t0
            states[to] = st
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
    )


def _kind(msg: Message) -> int:
    return int(msg.KIND)


def simulated_identities(members: Sequence[int], seed: int) -> tuple[dict[int, Identity], dict[int, PublicIdentity]]:
    """Deterministic identities and the PKI built from their registered 32-byte keys."""
    ids = {int(m): Identity.from_seed(seed, int(m)) for m in members}
    pki = {m: PublicIdentity.from_registered(i.public_bytes) for m, i in ids.items()}
    return ids, pki


__all__ = ["CLIENT_SENDS", "SERVER", "RoundOutcome", "run_round", "simulated_identities"]
