"""One plain simulation at scale, in a fresh process:
`python bench/learning_scale.py CONFIG_JSON ROUNDS [PARTITION] [--stacked]`.

Run by bench_learning.scale() once per configuration, with PYTHONPATH pointing at the fedledger source
to measure (this checkout, or the code before streaming extracted from git), so that the peak resident
memory (VmHWM: this process's own high-water mark, not the forking parent's) belongs to one
configuration alone. It uses only the public Simulation API that both versions share. Prints one JSON
line; each round's `cpu_seconds` (user + system, all threads) is a figure the machine's load does not
inflate. With PARTITION, it also writes the members' data and the initial model to that .npz file for the
Flower run (bench/flower_learning.py), so both train the same partition from the same weights.
With `--stacked` (streaming code only) the simulation takes its materialized path instead of streaming:
the batched trainer returns every member's update at once and the strategy steps over the stacked
updates, as before streaming; the model hashes of the two runs are the bench's equality check.
"""

from __future__ import annotations

import json
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def main() -> None:
    import numpy as np
    import torch

    from fedledger.core.config import build_config
    from fedledger.sim import Simulation

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    cfg, rounds = json.loads(args[0]), int(args[1])
    if "--stacked" in sys.argv:
        import fedledger.sim.federation as federation

        federation.streams = lambda trainer, strategy: False  # the whole cohort's updates, then one step
    started = time.perf_counter()
    sim = Simulation(build_config(cfg))
    setup = time.perf_counter() - started
    if len(args) > 2:
        np.savez(args[2], X=sim.pool.X.numpy().reshape(len(sim.pool.y), -1), y=sim.pool.y.numpy(),
                 offsets=sim.pool.offsets, counts=sim.pool.counts,
                 test_X=sim.test_X.numpy().reshape(len(sim.test_y), -1), test_y=sim.test_y.numpy(),
                 initial=sim.global_flat.numpy(), lr=cfg["lr"], batch_size=cfg["batch_size"],
                 local_epochs=cfg["local_epochs"])
    after_setup = _status_kib("VmRSS")
    out = []
    for rnd in range(1, rounds + 1):
        t, cpu = time.perf_counter(), time.process_time()
        rec = sim.run_round(rnd)
        out.append({"round": rnd, "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu,
                    "accuracy": rec.accuracy, "model_hash": rec.model_hash})
    print(json.dumps({"members": len(sim.data.members), "stacked": "--stacked" in sys.argv,
                      "parameters": sim.dim, "setup_seconds": setup,
                      "torch_threads": torch.get_num_threads(), "rss_after_setup_mib": after_setup / 1024,
                      "peak_rss_mib": _status_kib("VmHWM") / 1024, "rounds": out}))


if __name__ == "__main__":
    main()
