"""Where two parallel 512-entry chunk proofs lose time on a 2-core machine (issue 15, 1,024 entries in 0.5 s).

    python -m bench.zk_contention [--reps N] [--only PREFIX] [--out PATH]   # prints JSON; all of it to PATH

One chunk's `groth16py.prove_wtns` is timed alone, two at once in two threads of one process (one proving key, or
one key each, or each thread pinned to a CPU), and two at once in two persistent worker processes (each loaded its
key once; pinned or not), with CPU split in user and system time and minor page faults per proof; alone and two
in threads also run under glibc malloc settings (MALLOC_ARENA_MAX, a fixed mmap/trim threshold, huge pages), in
servers started with that environment. A pure-Python loop (no memory traffic) is timed alone and on both cores
at once: how much a core slows when the other one works, whatever the work. The witness stage is timed alone
and beside a running proof, and the whole `UpdateProver.prove_update` of a 1,024-entry update (2 prover threads)
as a user calls it. All arrangements are interleaved, repetition by repetition, so a change in the machine's
speed touches each alike; medians are reported. (A prover-process variant of `UpdateProver`, witnesses computed
in the workers, was measured against the threads on commit ed154ec of branch w-zkproc: docs/zk.md.)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

R = 0x2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091
MALLOC_ENVS: dict[str, dict[str, str]] = {
    "default": {},
    "arena_max_1": {"MALLOC_ARENA_MAX": "1"},
    "arena_max_2": {"MALLOC_ARENA_MAX": "2"},
    # no mmap/munmap per large buffer: freed memory stays in the heap and is reused by the next proof
    "no_trim_no_mmap": {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
                        "MALLOC_TOP_PAD_": str(1 << 28)},
    # transparent huge pages for malloc's memory (the system's THP mode is madvise): fewer TLB misses in the MSMs
    "thp": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
}


def _usage() -> tuple[float, float, int]:
    u = resource.getrusage(resource.RUSAGE_THREAD)
    return u.ru_utime, u.ru_stime, u.ru_minflt


def _timed_prove(pk: Any, path: str) -> dict[str, float]:
    import groth16py

    u0, s0, f0 = _usage()
    t0 = time.perf_counter()
    groth16py.prove_wtns(pk, path)
    wall = time.perf_counter() - t0
    u1, s1, f1 = _usage()
    return {"wall": wall, "user": u1 - u0, "sys": s1 - s0, "cpu": (u1 - u0) + (s1 - s0), "minflt": f1 - f0}


def _setup(key_dir: str) -> tuple[Any, list[str], list[dict[str, object]], Any]:
    """The proving key, two chunk witness files of a 1,024-entry update (in /dev/shm), their inputs, the spec."""
    import groth16py

    from fedledger.zk.backend import CIRCUIT_DIR
    from fedledger.zk.poseidon import circomlib_dir
    from fedledger.zk.update import ProofContext, UpdateSpec, chunk_witnesses, commit_update, update_signals
    from fedledger.zk.witness import build_plan, write_wtns

    spec = UpdateSpec(chunk_size=512)
    pk = groth16py.ProvingKey.load(os.path.join(key_dir, "pk.bin"))
    plan = build_plan(spec.circuit.main, [str(CIRCUIT_DIR), circomlib_dir()], Path(key_dir))
    rng = np.random.default_rng(7)
    x, e = rng.integers(-2000, 2000, 1024), rng.integers(-200, 200, 1024)
    secret, posted = commit_update(spec, ProofContext("bench", 1, "m0"), x, e, rng)
    _, inputs, _ = chunk_witnesses(spec, secret, posted, R)
    paths = []
    for k, inp in enumerate(inputs):
        fd, path = tempfile.mkstemp(suffix=f"-{k}.wtns", dir="/dev/shm")
        os.close(fd)
        write_wtns(Path(path), plan.witness(update_signals(spec, inp)))
        paths.append(path)
    return pk, paths, inputs, (spec, plan)


def _two_threads(pks: list[Any], paths: list[str], pin: bool = False) -> dict[str, Any]:
    res: list[dict[str, float]] = [{}, {}]
    gate = threading.Barrier(3)

    def run(i: int) -> None:
        if pin:  # this thread only (Linux affinity is per thread)
            os.sched_setaffinity(0, {i})
        gate.wait()
        res[i] = _timed_prove(pks[i], paths[i])

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return {"wall_both": time.perf_counter() - t0, "each": res}


def _witness(spec_plan: Any, inp: dict[str, object], path: str) -> dict[str, float]:
    from fedledger.zk.update import update_signals
    from fedledger.zk.witness import write_wtns

    spec, plan = spec_plan
    c0, t0 = time.thread_time(), time.perf_counter()
    wit = plan.witness(update_signals(spec, inp))
    c1, t1 = time.thread_time(), time.perf_counter()
    write_wtns(Path(path), wit)
    return {"witness_wall": t1 - t0, "witness_cpu": c1 - c0, "write_wall": time.perf_counter() - t1,
            "write_cpu": time.thread_time() - c1}


def _server(key_dir: str, env: dict[str, str], conn: Any) -> None:
    """A process started with `env` (malloc settings act at start): runs the arrangements it is asked for."""
    warnings.simplefilter("ignore")
    pk, paths, inputs, spec_plan = _setup(key_dir)
    pk2 = None
    conn.send("ready")
    try:
        while True:
            cmd = conn.recv()
            if cmd == "stop":
                break
            if cmd == "alone":
                out: Any = _timed_prove(pk, paths[0])
            elif cmd == "threads2":
                out = _two_threads([pk, pk], paths)
            elif cmd == "threads2_pinned":
                out = _two_threads([pk, pk], paths, pin=True)
            elif cmd == "threads2_own_key":
                if pk2 is None:
                    import groth16py

                    pk2 = groth16py.ProvingKey.load(os.path.join(key_dir, "pk.bin"))
                out = _two_threads([pk, pk2], paths)
            elif cmd == "witness_alone":
                out = _witness(spec_plan, inputs[1], paths[1] + ".w")
            elif cmd == "witness_beside_proof":  # as UpdateProver does: chunk 1's witness while chunk 0 proves
                box: dict[str, Any] = {}
                t = threading.Thread(target=lambda b=box: b.update(_timed_prove(pk, paths[0])))
                t.start()
                time.sleep(0.005)
                out = _witness(spec_plan, inputs[1], paths[1] + ".w")
                t.join()
                out["proof"] = box
            else:
                raise ValueError(cmd)
            conn.send(out)
    finally:
        for p in paths:
            for q in (p, p + ".w"):
                if os.path.exists(q):
                    os.unlink(q)


def _worker(key_dir: str, path_index: int, pin: bool, conn: Any) -> None:
    """A persistent prover process: loads the key once, proves its witness file on each 'go' (on CPU
    `path_index` only, if `pin`)."""
    warnings.simplefilter("ignore")
    if pin:
        os.sched_setaffinity(0, {path_index})
    pk, paths, _, _ = _setup(key_dir)
    conn.send("ready")
    try:
        while (cmd := conn.recv()) != "stop":
            if cmd == "spin":  # pure interpreter work in L1: what the other core's load costs a core itself
                c0, t0 = time.thread_time(), time.perf_counter()
                acc = 0
                for i in range(2_000_000):
                    acc ^= i * 7
                conn.send({"wall": time.perf_counter() - t0, "cpu": time.thread_time() - c0})
                continue
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            r = _timed_prove(pk, paths[path_index])
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            r["process_cpu"] = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
            conn.send(r)
    finally:
        for p in paths:
            os.unlink(p)


def _start(target: Any, *args: Any, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    with mock.patch.dict(os.environ, env or {}):  # the spawned child reads its environment at start
        proc = ctx.Process(target=target, args=(*args, child))
        proc.start()
    return proc, parent


def _e2e(prover: Any, rng: np.random.Generator) -> dict[str, float]:
    """One 1,024-entry update as a user proves it: commit (before the challenge), then `prove_update` (chunk
    inputs, witnesses, both chunk proofs, their checks); the bundle is verified afterwards, untimed."""
    from fedledger.zk.update import ProofContext, commit_update, verify_update

    x, e = rng.integers(-2000, 2000, 1024), rng.integers(-200, 200, 1024)
    t0 = time.perf_counter()
    secret, posted = commit_update(prover.spec, ProofContext("bench", 1, "m0"), x, e, rng)
    t1, c1 = time.perf_counter(), prover.cpu_seconds
    proof = prover.prove_update(secret, posted, R)
    t2 = time.perf_counter()
    verify_update(prover.keys, prover.spec, posted, proof, R)
    return {"commit_wall": t1 - t0, "prove_wall": t2 - t1, "commit_plus_prove_wall": t2 - t0,
            "prover_cpu": prover.cpu_seconds - c1}


def _steal() -> int:
    """Jiffies the hypervisor gave this VM's CPUs to others (the 8th field of /proc/stat's cpu line)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def main() -> dict[str, Any]:
    from fedledger.zk.backend import Groth16Backend
    from fedledger.zk.update import UpdateSpec

    args = sys.argv[1:]
    reps = int(args[args.index("--reps") + 1]) if "--reps" in args else 15
    load0 = os.getloadavg()
    warnings.simplefilter("ignore")
    key_dir = str(Groth16Backend().keys(UpdateSpec(chunk_size=512).circuit).directory)
    servers = {name: _start(_server, key_dir, env, env=env) for name, env in MALLOC_ENVS.items()}
    workers = [_start(_worker, key_dir, i, False) for i in range(2)]
    pinned = [_start(_worker, key_dir, i, True) for i in range(2)]
    for _, conn in [*servers.values(), *workers, *pinned]:
        assert conn.recv() == "ready"
    from fedledger.zk.update import UpdateProver

    e2e = {"threads": UpdateProver(UpdateSpec(chunk_size=512), workers=2)}
    e2e_rng = np.random.default_rng(11)
    jobs = [(f"{name}/{cmd}", name, cmd) for name in MALLOC_ENVS for cmd in ("alone", "threads2")]
    jobs += [("default/threads2_own_key", "default", "threads2_own_key"),
             ("default/threads2_pinned", "default", "threads2_pinned"), ("processes2_pinned", None, "pinned"),
             ("default/witness_alone", "default", "witness_alone"),
             ("default/witness_beside_proof", "default", "witness_beside_proof"), ("processes2", None, None),
             ("spin/alone", "spin", "1"), ("spin/two_processes", "spin", "2"),
             ("e2e_1024/threads", "e2e", "threads")]
    if "--only" in args:  # e.g. --only e2e_1024: the arrangements whose label starts so
        jobs = [j for j in jobs if j[0].startswith(args[args.index("--only") + 1])]
    raw: dict[str, list[Any]] = {j[0]: [] for j in jobs}
    loads = []
    steal0 = _steal()
    for rep in range(reps):
        loads.append(os.getloadavg()[0])
        order = jobs[rep % len(jobs):] + jobs[: rep % len(jobs)]  # rotate the order from one repetition to the next
        for label, name, cmd in order:
            if name == "e2e":
                raw[label].append(_e2e(e2e[cmd], e2e_rng))
            elif name == "spin":
                pair = workers[: int(cmd)]
                t0 = time.perf_counter()
                for _, conn in pair:
                    conn.send("spin")
                each = [conn.recv() for _, conn in pair]
                raw[label].append({"wall_both": time.perf_counter() - t0, "each": each})
            elif name is None:
                pair = pinned if cmd == "pinned" else workers
                t0 = time.perf_counter()
                for _, conn in pair:
                    conn.send("go")
                each = [conn.recv() for _, conn in pair]
                raw[label].append({"wall_both": time.perf_counter() - t0, "each": each})
            else:
                _, conn = servers[name]
                conn.send(cmd)
                raw[label].append(conn.recv())
    for p in e2e.values():
        p.close()
    for proc, conn in [*servers.values(), *workers, *pinned]:
        conn.send("stop")
        proc.join(30)
    summary: dict[str, Any] = {}
    for label, rs in raw.items():
        if "wall_both" in rs[0]:
            each = [e for r in rs for e in r["each"]]
            summary[label] = {"wall_both_median": _median([r["wall_both"] for r in rs]),
                              **{f"per_proof_{k}_median": _median([e[k] for e in each])
                                 for k in ("wall", "cpu", "user", "sys", "minflt") if k in each[0]}}
        else:
            keys = [k for k in rs[0] if isinstance(rs[0][k], float | int)]
            summary[label] = {f"{k}_median": _median([r[k] for r in rs]) for k in keys}
    return {"reps": reps, "cores": os.cpu_count(), "load_average_start": load0, "load_1min_per_rep": loads,
            "steal_seconds": round((_steal() - steal0) / os.sysconf("SC_CLK_TCK"), 2),
            "load_average_end": os.getloadavg(), "summary": summary,
            "raw": raw}


if __name__ == "__main__":
    result = main()
    text = json.dumps(result, indent=1)
    if "--out" in sys.argv:
        Path(sys.argv[sys.argv.index("--out") + 1]).write_text(text)
    print(json.dumps(result["summary"], indent=1))
