"""Foundation benchmarks (issue 3): federated vs centralized accuracy, time per round, simulation overhead.

Each accuracy figure is the median over several seeds; every ratio is measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

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


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "digits_mlp_10_dirichlet0.5": digits_mlp(quick),
        "fashion_mnist_cnn_20_dirichlet0.3": fashion_cnn(quick),
        "randhie_by_site": randhie_by_site(quick),
        "simulation_overhead_1000_members": simulation_overhead(quick),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
