"""One protocol run in a fresh process: `python bench/protocol_round.py CONFIG_JSON OUT_DIR`.

Run by bench_protocol.default_round() with PYTHONPATH pointing at the fedledger source to measure (this
checkout, or the code before issues 11 and 12 extracted from git by bench/before.py), so both versions run
the same harness on one torch thread. It uses only the public `build_config` / `Simulation.run` API that both
share. Prints one JSON line: per round the wall seconds, the stage split (`RoundRecord.stages`), the provers'
seconds, and the CPU seconds of this process tree (this process, its prover workers and the managed anvil
node: user + system, all threads) between the end of one round and the end of the next, a figure the
machine's other jobs do not inflate the way they inflate wall seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


def tree_cpu_seconds() -> float:
    """User + system seconds of this process (with its reaped children) and every live descendant."""
    total = 0
    me = os.getpid()
    for pid in [me, *_children(me)]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11..14] = utime, stime, cutime, cstime (stat fields 14-17)
        total += int(fields[11]) + int(fields[12])
        if pid == me:
            total += int(fields[13]) + int(fields[14])
    return total / TICKS


def main() -> None:
    import torch

    from fedledger.core.config import build_config
    from fedledger.sim import Simulation

    torch.set_num_threads(1)
    cfg, out = json.loads(sys.argv[1]), sys.argv[2]
    started, cpu0 = time.perf_counter(), tree_cpu_seconds()
    sim = Simulation(build_config(cfg))
    rounds: list[dict[str, Any]] = []
    last = [time.perf_counter(), tree_cpu_seconds()]

    def on_round(record: Any) -> None:
        now, cpu = time.perf_counter(), tree_cpu_seconds()
        proofs = getattr(record, "proofs", None) or {}
        rounds.append({"round": record.round, "seconds": record.seconds, "stages": record.stages or {},
                       "attempts": getattr(record, "attempts", None), "prove_seconds": proofs.get("prove_seconds"),
                       "proofs_made": proofs.get("made"), "cpu_seconds": cpu - last[1],
                       "wall_between_rounds": now - last[0], "accuracy": record.accuracy})
        last[:] = [now, cpu]

    result = sim.run(__import__("pathlib").Path(out), on_round=on_round)
    ledger = result.ledger or {}
    print(json.dumps({
        "wall_seconds": time.perf_counter() - started, "cpu_seconds": tree_cpu_seconds() - cpu0,
        "final_accuracy": result.final_accuracy, "rounds_finalized": ledger.get("finalized_rounds"),
        "slashed": len(ledger.get("slashed", [])), "torch_threads": torch.get_num_threads(), "rounds": rounds}))


if __name__ == "__main__":
    main()
