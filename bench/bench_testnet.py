"""Testnet benchmark (issue 13): the same federation as node processes on loopback and as one process.

For 10, 20 and 40 node processes (a testnet of N processes is the owner, 3 aggregators, a committee of 3
validators and N - 7 trainers: `fedledger.node.testnet.layout`), `fedledger testnet up` on digits runs the task
to the end; figures: seconds per round (the supervisor's wall time from a round's opening to its finalization),
bytes on the wire per round (the nodes' own transport counters: trainers' bytes sent, and every node's bytes
received), peak RSS per node process by role, and the wall and CPU seconds of the whole testnet (CPU of every
node process, from the kernel's accounting of reaped children). The same federation in one process,
`fedledger run --chain auto` with the same configuration, gives the same figures (its RoundRecord's seconds and
bytes, and its peak RSS).

Each size is skipped (and says why) when the machine has less available memory than `MB_PER_NODE` per
process. The machine is shared: the load average before and after each measurement is recorded next to it.

`python -m bench.bench_testnet [--quick] [--sizes 10,20]` prints the JSON; `bench/run.py --only testnet`
writes bench/results/testnet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fedledger.core.config import WHOLE_SYSTEM, load_config
from fedledger.node.testnet import AGGREGATORS, Testnet, peak_rss_bytes

SIZES = (10, 20, 40)
QUICK_SIZES = (8,)
COMMITTEE = 3
MB_PER_NODE = 500  # a node process is 300-500 MB (torch: the one-process run peaks at 472 MB on digits)
SETTINGS = {"dataset": "digits", "model": "logreg", "partition": "iid", "seed": 7, "fraction": 1.0,
            "proofs": "none", "ledger.committee": COMMITTEE, "ledger.chain": "auto", "ledger.enabled": True}


def config(members: int, rounds: int) -> Any:
    return load_config(None, {**SETTINGS, "clients": members, "rounds": rounds}, base=WHOLE_SYSTEM)


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _round_figures(payload: dict[str, Any]) -> dict[str, Any]:
    rounds = payload["rounds"]
    secs = [r["seconds"] for r in rounds if r["seconds"]]
    return {
        "rounds": len(rounds),
        "round_seconds_mean": round(statistics.mean(secs), 3) if secs else None,
        "round_seconds": secs,
        "bytes_up_per_round": [r["bytes_up"] for r in rounds],
        "bytes_down_per_round": [r["bytes_down"] for r in rounds],
        "final_accuracy": payload["final_accuracy"],
        "final_model_hash": payload["final_model_hash"],
    }


def daemon_missing() -> str | None:
    """Why node processes cannot run from this checkout (None: they can)."""
    import argparse

    from fedledger.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = {"node", "task"} - set(sub.choices)
    return f"`fedledger {' / '.join(sorted(missing))}` not in this checkout" if missing else None


def testnet_figures(processes: int, rounds: int, timeout: float) -> dict[str, Any]:
    members = processes - 1 - AGGREGATORS - COMMITTEE
    if (why := daemon_missing()) is not None:
        return {"skipped": why}
    need = processes * MB_PER_NODE
    if available_mb() < need:
        return {"skipped": f"{available_mb()} MB available, {need} MB needed for {processes} node processes"}
    out: dict[str, Any] = {"processes": processes, "members": members, "load_before": load()}
    with tempfile.TemporaryDirectory(prefix=f"bench-testnet-{processes}-") as tmp:
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        payload = Testnet(tmp).up(config(members, rounds), members, stall=5.0, timeout=timeout)
        out["wall_seconds"] = round(time.perf_counter() - wall0, 2)
        out["cpu_seconds_nodes"] = round(_children_cpu() - cpu0, 2)
    out["load_after"] = load()
    out |= _round_figures(payload)
    nodes = [n for n in payload["testnet"]["nodes"] if n.get("role")]
    by_role: dict[str, list[int]] = {}
    for n in nodes:
        if n.get("peak_rss"):
            by_role.setdefault(n["role"], []).append(n["peak_rss"])
    out["peak_rss_mb_by_role"] = {role: {"mean": round(statistics.mean(v) / 2**20, 1), "max": round(max(v) / 2**20, 1)}
                                  for role, v in by_role.items()}
    out["bytes_sent_total"] = sum(n.get("bytes_sent") or 0 for n in nodes)
    out["bytes_received_total"] = sum(n.get("bytes_received") or 0 for n in nodes)
    return out


def simulation_figures(processes: int, rounds: int, timeout: float) -> dict[str, Any]:
    """The same federation through `fedledger run --chain auto`, in one process (its peak RSS polled)."""
    members = processes - 1 - AGGREGATORS - COMMITTEE
    out: dict[str, Any] = {"members": members, "load_before": load()}
    with tempfile.TemporaryDirectory(prefix=f"bench-sim-{processes}-") as tmp:
        argv = [sys.executable, "-m", "fedledger.cli", "run", "--dataset", "digits", "--model", "logreg",
                "--partition", "iid", "--seed", "7", "--fraction", "1.0", "--proofs", "none", "--committee",
                str(COMMITTEE), "--chain", "auto", "--clients", str(members), "--rounds", str(rounds),
                "--out", tmp, "--quiet"]
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0
        end = time.monotonic() + timeout
        while proc.poll() is None:
            peak = max(peak, peak_rss_bytes(proc.pid) or 0)
            if time.monotonic() > end:
                proc.kill()
                break
            time.sleep(0.2)
        err = proc.stderr.read().decode() if proc.stderr else ""
        proc.wait()
        out["wall_seconds"] = round(time.perf_counter() - wall0, 2)
        out["cpu_seconds"] = round(_children_cpu() - cpu0, 2)
        if proc.returncode != 0:
            return out | {"error": err.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
        payload = json.loads((Path(tmp) / "results.json").read_text())
    out["load_after"] = load()
    out["peak_rss_mb"] = round(peak / 2**20, 1)
    return out | _round_figures(payload)


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    rounds = 1 if quick else 2
    timeout = 900.0 if quick else 3600.0
    figures: dict[str, Any] = {"settings": {**SETTINGS, "rounds": rounds, "committee": COMMITTEE},
                               "cpus": os.cpu_count(), "memory_available_mb": available_mb()}
    for n in sizes or (QUICK_SIZES if quick else SIZES):
        figures[f"{n}_processes"] = {"testnet": testnet_figures(n, rounds, timeout),
                                     "simulation": simulation_figures(n, rounds, timeout)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated process counts (default 10,20,40)")
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None
    print(json.dumps(run(args.quick, sizes), indent=2))


if __name__ == "__main__":
    main()
