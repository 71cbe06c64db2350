"""Which chunk layout proves a 16,384-entry update fastest on this machine (issue 15, target 5 s)?

    python -m bench.zk_16k_layouts [--reps N] [--chunks 4096,2731,2048] [--out PATH]   # prints the summary

Each layout is one `UpdateSpec(chunk_size=n)` with the entry/noise widths bench/bench_zk.py uses at 16,384
entries (the defaults, as `plan_chunk(16_384, 2)` is called there), proved by `UpdateProver(spec, workers=2)`
with its keys loaded before timing. One repetition proves one fresh update with every layout, in an order
rotated from repetition to repetition, so drift in the machine's speed touches each layout alike. Timed: the
whole `prove_update` (chunk inputs, native witnesses, the chunk proofs on 2 threads), as a user calls it; the
commitment (before the challenge) and the verification of the bundle (afterwards) are timed apart. One warm-up
update per layout is run first and reported apart. Prover CPU is the delta of `prover.cpu_seconds`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

R = 0x2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091
DIM = 16_384


def _steal() -> int:
    """Jiffies the hypervisor gave this VM's CPUs to others (the 8th field of /proc/stat's cpu line)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def _one(prover: Any, rng: np.random.Generator) -> dict[str, float]:
    from fedledger.zk.update import ProofContext, commit_update, verify_update

    x, e = rng.integers(-2000, 2000, DIM), rng.integers(-200, 200, DIM)
    t0 = time.perf_counter()
    secret, posted = commit_update(prover.spec, ProofContext("bench", 1, "m0"), x, e, rng)
    t1, c1 = time.perf_counter(), prover.cpu_seconds
    proof = prover.prove_update(secret, posted, R)
    t2, c2 = time.perf_counter(), prover.cpu_seconds
    verify_update(prover.keys, prover.spec, posted, proof, R)
    t3 = time.perf_counter()
    return {"prove_wall": t2 - t1, "prove_seconds_reported": proof.prove_seconds, "prover_cpu": c2 - c1,
            "commit_wall": t1 - t0, "verify_wall": t3 - t2, "chunks": len(proof.chunks)}


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def main() -> dict[str, Any]:
    from fedledger.zk.update import UpdateProver, UpdateSpec, constraint_breakdown, domain_size, plan_chunk

    args = sys.argv[1:]
    reps = int(args[args.index("--reps") + 1]) if "--reps" in args else 7
    chunks = [int(c) for c in args[args.index("--chunks") + 1].split(",")] if "--chunks" in args else [4096, 2731]
    warnings.simplefilter("ignore")
    load0 = os.getloadavg()
    provers: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    for n in chunks:
        spec = UpdateSpec(chunk_size=n)
        t0 = time.perf_counter()
        p = UpdateProver(spec, workers=2)
        assert p.native, "circom2 is needed for the native path (set FEDLEDGER_CIRCOM2)"
        label = f"{spec.n_chunks(DIM)}x{n}"
        provers[label] = p
        layout[label] = {"chunk_size": n, "chunks": spec.n_chunks(DIM),
                         "constraints": constraint_breakdown(spec)["total"], "domain": domain_size(spec),
                         "circuit": spec.circuit.name,
                         "keys_load_s": round(time.perf_counter() - t0, 2)}
    rng = np.random.default_rng(16_384)
    warmup = {label: _one(p, rng) for label, p in provers.items()}
    labels = list(provers)
    raw: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    loads, order_log = [], []
    steal0 = _steal()
    for rep in range(reps):
        loads.append(os.getloadavg()[0])
        order = labels[rep % len(labels):] + labels[: rep % len(labels)]
        order_log.append(order)
        for label in order:
            raw[label].append(_one(provers[label], rng))
    steal_s = round((_steal() - steal0) / os.sysconf("SC_CLK_TCK"), 2)
    for p in provers.values():
        p.close()
    summary = {label: {**layout[label],
                       **{k: _stats([r[k] for r in rs]) for k in ("prove_wall", "prover_cpu", "commit_wall")}}
               for label, rs in raw.items()}
    return {"dim": DIM, "reps": reps, "cores": os.cpu_count(), "plan_chunk_today": plan_chunk(DIM, 2),
            "load_average_start": load0, "load_1min_per_rep": loads, "load_average_end": os.getloadavg(),
            "steal_seconds": steal_s, "order_per_rep": order_log, "summary": summary, "warmup": warmup, "raw": raw}


if __name__ == "__main__":
    result = main()
    if "--out" in sys.argv:
        Path(sys.argv[sys.argv.index("--out") + 1]).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
