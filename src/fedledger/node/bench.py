"""Loopback figures of the network transport: round-trip latency and throughput between two real nodes.

    python -m fedledger.node.bench [--rounds 200] [--mib 256]

Starts a managed anvil, deploys the contracts, registers two members and publishes their nodes'
endpoints and certificate fingerprints, then measures on 127.0.0.1 (gRPC, mutual TLS):
- ping: the heartbeat RPC's round trip (median and 99th percentile);
- envelope round trip: a 64-byte envelope to the peer and its answer back through both inboxes;
- streamed throughput: 16 MiB envelopes (16 chunks each), sender to the receiver's inbox;
- unary throughput: 512 KiB envelopes (one gRPC message each);
- blob fetch: one blob by CID, chunked, hashed on receipt and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from fedledger.ledger import DeployParams, Ledger, Role
from fedledger.ledger.backends import AnvilBackend
from fedledger.node.blobs import CidStore
from fedledger.node.peers import PeerDirectory
from fedledger.node.tls import NodeIdentity
from fedledger.node.transport import GrpcTransport, MiB
from fedledger.protocol.transport import Envelope
from fedledger.secagg.keys import Identity


def _node(chain: Ledger, i: int, root: Path) -> GrpcTransport:
    member = chain.dev(i)
    if member.member() is None:
        member.register(Role.TRAINER, Identity(os.urandom(32)).public_bytes)
    ident = NodeIdentity.generate(member.address)
    t = GrpcTransport(member.address, ident, PeerDirectory(chain), blobs=CidStore(root / str(i))).start()
    t.register(member.address)
    t.publish(member)
    return t


def _throughput(a: GrpcTransport, b: GrpcTransport, size: int, total: int) -> float:
    count = max(1, total // size)
    payload = os.urandom(size)
    done = threading.Event()

    def drain() -> None:
        for _ in range(count):
            if b.receive(b.address, timeout=60) is None:
                raise RuntimeError("the receiver waited a minute for an envelope")
        done.set()

    r = threading.Thread(target=drain)
    t0 = time.perf_counter()
    r.start()
    for _ in range(count):
        a.send(Envelope(a.address, b.address, "bench", payload))
    r.join()
    return count * size / MiB / (time.perf_counter() - t0)


def run(rounds: int, mib: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fl-node-bench-") as tmp:
        root = Path(tmp)
        backend = AnvilBackend(root / "chain")
        chain = Ledger.attach(backend, params=DeployParams())
        a, b = _node(chain, 1, root), _node(chain, 2, root)
        try:
            a.ping(b.address, timeout=10)
            b.ping(a.address, timeout=10)
            pings = sorted(a.ping(b.address) for _ in range(rounds))
            rtts = []
            for i in range(rounds):
                t0 = time.perf_counter()
                a.send(Envelope(a.address, b.address, "q", i.to_bytes(8, "big") * 8))
                q = b.receive(b.address, timeout=10)
                assert q is not None
                b.send(Envelope(b.address, a.address, "r", q.payload))
                assert a.receive(a.address, timeout=10) is not None
                rtts.append(time.perf_counter() - t0)
            rtts.sort()
            streamed = _throughput(a, b, 16 * MiB, mib * MiB)
            unary = _throughput(a, b, 512 * 1024, mib * MiB // 4)
            blob = os.urandom(mib * MiB // 4)
            cid = b.put_blob(blob)
            t0 = time.perf_counter()
            assert a.fetch_blob(cid, [b.address]) == blob
            fetch = len(blob) / MiB / (time.perf_counter() - t0)
        finally:
            a.stop(0)
            b.stop(0)
            chain.close()
            backend.close()
    p99 = max(0, int(0.99 * rounds) - 1)
    return {
        "ping_median_ms": 1e3 * statistics.median(pings),
        "ping_p99_ms": 1e3 * pings[p99],
        "envelope_round_trip_median_ms": 1e3 * statistics.median(rtts),
        "envelope_round_trip_p99_ms": 1e3 * rtts[p99],
        "streamed_16MiB_MiB_per_s": streamed,
        "unary_512KiB_MiB_per_s": unary,
        "blob_fetch_MiB_per_s": fetch,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedledger.node.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="round trips to time (default 200)")
    ap.add_argument("--mib", type=int, default=256, help="MiB to stream for the throughput figure (default 256)")
    args = ap.parse_args(argv)
    json.dump({k: round(v, 3) for k, v in run(args.rounds, args.mib).items()}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
