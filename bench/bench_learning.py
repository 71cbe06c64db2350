"""Foundation benchmarks (issue 3): federated vs centralized accuracy, time per round, simulation overhead.

Each accuracy figure is the median over several seeds; every ratio is measured in the same run.

`scale` (issue 15): seconds per round and peak memory of the plain simulation at 1,000, 5,000 and
15,000 Fashion-MNIST members, for this checkout, for the code before streaming (extracted from git)
and for Flower 1.42's Ray simulation on the same partition, each in a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bench.before import BEFORE_COMMIT, CACHE, ROOT
from bench.before import before_src as _before_src
from fedledger.core.config import build_config
from fedledger.learning import Cohort, SequentialTrainer, evaluate
from fedledger.learning.local import probabilities
from fedledger.sim import Simulation
from fedledger.sim.federation import recipe_of


def _federate(seeds: list[int], **cfg: Any) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        sim = Simulation(build_config({**cfg, "seed": seed, "baseline": True}))
        start = time.perf_counter()
        res = sim.run()
        seconds = time.perf_counter() - start
        runs.append({
            "seed": seed,
            "final_accuracy": res.final_accuracy,
            "centralized_accuracy": res.centralized_accuracy,
            "accuracy_ratio": res.accuracy_ratio,
            "seconds_total": seconds,
            "seconds_per_round": statistics.median(r.seconds for r in res.rounds),
        })
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "seed"}
    return {"config": cfg, "median": med, "runs": runs}


def digits_mlp(quick: bool) -> dict[str, Any]:
    return _federate([0] if quick else [0, 1, 2], dataset="digits", partition="dirichlet:0.5", clients=10,
                     model="mlp", rounds=5 if quick else 30, local_epochs=2, lr=0.1, batch_size=16)


def fashion_cnn(quick: bool) -> dict[str, Any]:
    return _federate([0] if quick else [0, 1, 2], dataset="fashion_mnist", partition="dirichlet:0.3", clients=20,
                     model="cnn", rounds=2 if quick else 30, local_epochs=1, lr=0.05, momentum=0.9,
                     batch_size=32, strategy="fednova", max_samples=6000 if quick else None)


def randhie_by_site(quick: bool) -> dict[str, Any]:
    cfg = build_config({"dataset": "randhie", "partition": "natural", "clients": 6, "model": "tabular",
                        "rounds": 3 if quick else 20, "local_epochs": 1, "lr": 0.05, "momentum": 0.9,
                        "baseline": True})
    sim = Simulation(cfg)
    res = sim.run()
    fed_auc = _auc(sim, sim.global_flat)
    central = _central_flat(sim)
    return {
        "members": [m.name for m in sim.data.members],
        "federated": {"accuracy": res.final_accuracy, "auc": fed_auc},
        "centralized": {"accuracy": evaluate(sim.model, central, sim.test_X, sim.test_y)[0],
                        "auc": _auc(sim, central)},
    }


def _central_flat(sim: Simulation) -> torch.Tensor:
    from fedledger.sim.federation import centralized_baseline

    flat: dict[str, torch.Tensor] = {}
    centralized_baseline(sim, sim.examples_processed, keep=flat)
    return flat["model"]


def _auc(sim: Simulation, flat: torch.Tensor) -> float:
    p = probabilities(sim.model, flat, sim.test_X)[:, 1].numpy()
    return float(roc_auc_score(sim.test_y.numpy(), p))


def simulation_overhead(quick: bool) -> dict[str, Any]:
    """One round of 1,000 members (logistic regression on digits) vs the same local work done centrally."""
    clients = 200 if quick else 1000
    cfg = build_config({"dataset": "digits", "partition": "iid", "clients": clients, "model": "logreg",
                        "rounds": 1, "local_epochs": 1, "batch_size": 32, "lr": 0.1,
                        "holdout_fraction": 0.0, "test_fraction": 0.1})
    sim = Simulation(cfg)
    sim.run_round(1)  # warm-up: vmap tracing, allocator
    fed = _best_of(3, lambda: sim.run_round(2))
    counts = sim.pool.counts
    steps = sim.full_steps
    examples = int((steps * np.minimum(cfg.batch_size, counts)).sum())
    # Centrally: one model takes the same number of local steps, each on the same number of examples.
    central_cohort = Cohort(np.array([0]), np.array([len(sim.pool.y)]), np.array([int(steps.sum())]))
    from fedledger.learning import LocalRecipe

    per_step = max(1, examples // int(steps.sum()))
    central_trainer = SequentialTrainer(sim.model, LocalRecipe(lr=0.1, batch_size=per_step, local_steps=1))
    central = _best_of(3, lambda: central_trainer.train(sim.global_flat, sim.pool.X, sim.pool.y, central_cohort,
                                                        torch.Generator().manual_seed(0)))
    seq_trainer = SequentialTrainer(sim.model, recipe_of(cfg))
    cohort = Cohort(sim.pool.offsets, counts, steps)
    sequential = _best_of(1, lambda: seq_trainer.train(sim.global_flat, sim.pool.X, sim.pool.y, cohort,
                                                       torch.Generator().manual_seed(0)))
    return {
        "members": clients,
        "examples_per_round": examples,
        "local_steps_per_round": int(steps.sum()),
        "federated_round_seconds": fed,
        "centralized_same_work_seconds": central,
        "overhead_ratio": fed / central,
        "per_member_loop_seconds": sequential,
        "speedup_vs_per_member_loop": sequential / fed,
    }


def _best_of(repeats: int, fn: Any) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


#: BEFORE_COMMIT is the last commit before the streaming trainer: "before" runs its src/ (the whole cohort in
#: one batch), extracted by bench/before.py
#: Flower's simulation engine needs Ray, so it runs in its own venv (Ray's pins never touch ours), made once by
#: hand: python -m venv .cache/flower-venv && .cache/flower-venv/bin/pip install <FLOWER_PINS>. The bench
#: never installs it; FEDLEDGER_FLOWER_VENV points at a venv elsewhere (e.g. the main checkout's).
FLOWER_VENV = Path(os.environ.get("FEDLEDGER_FLOWER_VENV") or CACHE / "flower-venv")
FLOWER_PINS = ["flwr[simulation]==1.42.0", "ray==2.55.1", f"torch=={torch.__version__.split('+')[0]}"]
SCALE_CONFIG = {"dataset": "fashion_mnist", "partition": "iid", "model": "logreg", "local_epochs": 1,
                "batch_size": 32, "lr": 0.1, "seed": 0}
SCALE_TIMEOUT = 600  # seconds per configuration: "where they fit in 10 minutes"
FLOWER_ABSENT = "skipped: flower venv absent"


def _flower_python() -> Path | None:
    """The Flower venv's interpreter, or None when there is none (the bench installs nothing)."""
    python = FLOWER_VENV / "bin" / "python"
    return python if python.exists() else None


def _tree_pss_kib(root: int) -> int:
    """Proportional set size summed over `root` and its descendants (shared pages counted once overall)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def _measured(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run `cmd` (one JSON line on stdout), sampling its process tree's PSS every 0.5 s."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _tree_pss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *_descendants(proc.pid)]:  # only the processes this run started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()
        stop.set()
        return {"error": f"did not finish within {timeout:.0f} s", "load_average": [load_before, os.getloadavg()]}
    finally:
        stop.set()
        sampler.join()
    result: dict[str, Any] = {"wall_seconds": time.perf_counter() - started,
                              "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
                              "peak_tree_pss_mib_sampled": peak[0] / 1024}
    if proc.returncode != 0:
        return {**result, "error": f"exit {proc.returncode}: {err.strip()[-600:]}"}
    return {**result, **json.loads(out.strip().splitlines()[-1])}


def _descendants(root: int) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


def _per_round(res: dict[str, Any], timed_from: int) -> dict[str, Any]:
    """Seconds per round (median over the rounds after the warm-up), accuracies, peak memory."""
    if "error" in res:
        return res
    rounds = res["rounds"]
    timed = [r for r in rounds if r["round"] >= timed_from]
    cpu = [r["cpu_seconds"] for r in timed if "cpu_seconds" in r]
    return {**res, "seconds_per_round": statistics.median(r["seconds"] for r in timed) if timed else None,
            "cpu_seconds_per_round": statistics.median(cpu) if cpu else None,
            "accuracy_by_round": [r["accuracy"] for r in rounds]}


def _fedledger(members: int, src: Path, rounds: int, export: Path | None = None,
               stacked: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(ROOT / "bench" / "learning_scale.py"),
           json.dumps({**SCALE_CONFIG, "clients": members}), str(rounds)]
    if export is not None:
        cmd.append(str(export))
    if stacked:
        cmd.append("--stacked")
    return _measured(cmd, env, SCALE_TIMEOUT)


def _same_models(row: dict[str, Any]) -> dict[str, Any]:
    """The equality check: the streamed rounds' model hashes against the stacked path of the same code
    (must be equal bit for bit) and against the code before streaming (one vmap call over the whole
    cohort instead of blocks: BLAS may round the last bits differently, so only the accuracy is compared)."""
    after = row.get("after", {}).get("rounds")
    check: dict[str, Any] = {}
    for other in ("after_stacked", "before"):
        theirs = row.get(other, {}).get("rounds")
        if after and theirs:
            check[f"after_vs_{other}"] = {
                "rounds": len(after),
                "same_model_hash_every_round": [a["model_hash"] for a in after] == [b["model_hash"] for b in theirs],
                "max_accuracy_difference": max(abs(a["accuracy"] - b["accuracy"])
                                               for a, b in zip(after, theirs, strict=True)),
            }
    return check


def scale(quick: bool) -> dict[str, Any]:
    """Plain simulation at scale (issue 15): this checkout ("after": cohort streamed in chunks), the code
    before streaming ("before": BEFORE_COMMIT, the whole cohort in one batch) and Flower 1.42 (Ray
    simulation engine, one ClientApp actor per core) on the same partition and initial weights.

    fedledger: 3 rounds, round 1 is the warm-up, seconds per round = median of rounds 2-3 (each includes
    the test-set evaluation), CPU seconds likewise (user + system of all the process's threads: a
    figure the other load on the machine does not inflate); peak = the process's VmHWM (setup and data
    included). "after_stacked" runs this checkout's materialized path (every update at once, then one
    step) for the model-equality check (`model_equality`). Flower: 2 rounds
    with round 2 timed up to 5,000 members, else 1 round (which includes starting the actors); peak =
    the PSS of its process tree (driver, Ray's services and workers) sampled every 0.5 s, so a short
    spike may be missed; a size that does not finish in SCALE_TIMEOUT is recorded and larger ones skipped.
    """
    sizes = [300, 1000] if quick else [1000, 5000, 15000]
    try:
        before_src: Path | None = _before_src()
        before_note = f"src/ of commit {BEFORE_COMMIT}"
    except (OSError, subprocess.CalledProcessError) as e:
        before_src, before_note = None, f"unavailable: {e}"
    flower = _flower_python()
    flower_note = f"flwr 1.42.0 simulation (Ray 2.55.1) in {FLOWER_VENV}" if flower else FLOWER_ABSENT
    out: dict[str, Any] = {"config": SCALE_CONFIG, "before": before_note, "flower": flower_note, "members": {}}
    flower_fits = True
    for members in sizes:
        row: dict[str, Any] = {}
        row["after"] = _per_round(_fedledger(members, ROOT / "src", 3), timed_from=2)
        row["after_stacked"] = _per_round(_fedledger(members, ROOT / "src", 3, stacked=True), timed_from=2)
        if before_src is not None:
            row["before"] = _per_round(_fedledger(members, before_src, 3), timed_from=2)
        if flower is not None and flower_fits:
            partition = CACHE / "bench-learning" / f"fashion_mnist_iid_{members}.npz"
            if not partition.exists():
                partition.parent.mkdir(parents=True, exist_ok=True)
                _fedledger(members, ROOT / "src", 0, export=partition)
            rounds = 2 if members <= 5000 else 1  # the largest: one round, with the actors' start-up
            res = _measured([str(flower), str(ROOT / "bench" / "flower_learning.py"), str(partition), str(rounds)],
                            {**os.environ, "PYTHONPATH": ""}, SCALE_TIMEOUT)
            row["flower"] = _per_round(res, timed_from=rounds)
            flower_fits = "error" not in row["flower"]
        elif flower is not None:
            row["flower"] = {"error": f"skipped: a smaller federation did not fit in {SCALE_TIMEOUT} s"}
        else:
            row["flower"] = {"error": FLOWER_ABSENT}
        _ratios(row)
        row["model_equality"] = _same_models(row)
        out["members"][str(members)] = row
        print(f"[learning] scale {members}: " + json.dumps({k: {m: v.get(m) for m in (
            "seconds_per_round", "cpu_seconds_per_round", "peak_rss_mib", "peak_tree_pss_mib_sampled", "error")}
            for k, v in row.items() if isinstance(v, dict) and k != "model_equality"})
            + " " + json.dumps(row["model_equality"]), flush=True)
    largest = out["members"][str(sizes[-1])].get("after", {})
    if largest.get("seconds_per_round") is not None:
        out["targets"] = {  # issue 15 at 15,000 members: <= 2 GB peak, <= 5 s per round on 2 cores
            "members": sizes[-1],
            "peak_rss_mib": largest["peak_rss_mib"], "peak_within_2_gib": largest["peak_rss_mib"] <= 2048,
            "seconds_per_round": largest["seconds_per_round"],
            "cpu_seconds_per_round": largest["cpu_seconds_per_round"],
            "wall_within_5_s": largest["seconds_per_round"] <= 5.0,
        }
    return out


def _ratios(row: dict[str, Any]) -> None:
    after = row.get("after", {})
    if after.get("seconds_per_round") is None:
        return
    for other in ("before", "flower"):
        theirs = row.get(other, {})
        if theirs.get("seconds_per_round"):
            row[f"speedup_vs_{other}"] = theirs["seconds_per_round"] / after["seconds_per_round"]
    if row.get("before", {}).get("peak_rss_mib"):
        row["peak_memory_ratio_before_over_after"] = row["before"]["peak_rss_mib"] / after["peak_rss_mib"]


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "digits_mlp_10_dirichlet0.5": digits_mlp(quick),
        "fashion_mnist_cnn_20_dirichlet0.3": fashion_cnn(quick),
        "randhie_by_site": randhie_by_site(quick),
        "simulation_overhead_1000_members": simulation_overhead(quick),
        "scale_fashion_mnist_logreg": scale(quick),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["scale"]:  # one part alone: python -m bench.bench_learning scale [--quick]
        print(json.dumps(scale("--quick" in sys.argv), indent=2))
    else:
        print(json.dumps(run(), indent=2))
