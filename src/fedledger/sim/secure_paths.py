"""Secure aggregation outside member-level DP, in the simulation (issue 17, item 2; privacy/record_secagg.py).

* `--dp record --secagg`: every DP-SGD step of a round is one secure sum of the members' clipped batch gradients
  with their noise shares; the round runs as many steps as central DP-SGD takes in the same epochs.
* `--secagg` alone: the members' local updates, clipped to the norm the proofs enforce and quantized, are
  summed through SecAgg+ with no noise.

Both reuse the member-level encoding, SecAgg+, the update proofs and their binding (`DistributedDP` with
another plan), through `Simulation._aggregate_distributed`. On a ledger, `--secagg` alone runs in the trainer,
aggregator and validator roles (`protocol.secure`, with the plan `protocol.rules.distributed_dp` fixes); record-level
DP through SecAgg+ runs off chain only for now (a round is many secure sums, one per DP-SGD step), so it is refused.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fedledger.core.errors import ConfigError
from fedledger.core.rng import Purpose
from fedledger.learning import LocalResult
from fedledger.privacy.distributed import AggregateResult, DistributedDP
from fedledger.privacy.record_secagg import RecordPlan, clipped_batch_sums, plan_record_secagg, record_schedule
from fedledger.protocol.rules import distributed_dp, secagg_survivors, secure_sum_pipeline


def secure_pipeline(sim: Any) -> DistributedDP:
    """The `DistributedDP` that runs `--secagg` without member-level DP for this simulation."""
    cfg, p = sim.cfg, sim.cfg.privacy
    if cfg.ledger.enabled and p.dp == "record":
        raise ConfigError("--secagg with --dp record runs off chain only for now (a round is one secure sum per DP-SGD "
                          "step, which the ledger's roles do not run); add --chain off")
    if sim.strategy.needs_individual_updates:
        raise ConfigError(f"strategy {sim.strategy.name} needs to see individual updates; with --secagg use fedavg, "
                          "fednova or a server optimizer (fedadam, fedyogi, fedadagrad)")
    if p.dp == "none":
        return distributed_dp(cfg, sim.dim)  # the plan every role of a task derives alike
    n = sim.cohort_size
    m = secagg_survivors(n, cfg)  # the noise is sized for the fewest survivors a sum is released with
    counts = [int(c) for c in sim.pool.counts]
    q, steps = record_schedule(counts, cfg.batch_size, n, cfg.local_epochs)
    plan = plan_record_secagg(epsilon=p.epsilon, delta=p.delta, steps_per_round=steps, rounds=cfg.rounds,
                              sample_rate=q, d=sim.dim, n=n, min_survivors=m, max_records=max(counts),
                              clip_norm=p.clip_norm, bits=p.bits)
    return secure_sum_pipeline(cfg, plan, plan.batch_clip)


def server_update(sim: Any, agg: AggregateResult, selected: np.ndarray) -> torch.Tensor:
    """What the server adds to the model from one secure sum: a DP-SGD step (the noisy gradient sum over the
    survivors' expected batch, times -lr) under record-level DP, the mean update otherwise."""
    plan = sim.ddp.plan
    if not isinstance(plan, RecordPlan):
        return agg.mean
    records = float(sim.pool.counts[selected[agg.survivors]].sum())
    return -sim.cfg.lr * agg.sum / (plan.sample_rate * records)


def record_round(sim: Any, rnd: int, selected: np.ndarray, survives: np.ndarray, attempt: int) -> Any:
    """One round of record-level DP through SecAgg+: `steps_per_round` secure sums, each one DP-SGD step.

    Release j (from 1, over the whole run) keys its secrets, rotation and SecAgg+ session, so no two steps share
    noise or masks. Returns the simulation's `_RoundStep` for the round (bytes summed over the steps)."""
    plan = sim.ddp.plan
    assert isinstance(plan, RecordPlan)
    members = selected[survives]
    up = down = 0
    last = None
    faulty: set[int] = set()
    for s in range(plan.steps_per_round):
        release = (rnd - 1) * plan.steps_per_round + s + 1
        gens = [sim.entropy.torch(Purpose.DPSGD, member=int(i), round=release, attempt=attempt) for i in members]
        with sim.clock.stage("training"):
            sums, sizes = clipped_batch_sums(sim.model, sim.global_flat, sim.pool.X, sim.pool.y,
                                             sim.pool.offsets[members], sim.pool.counts[members], plan.sample_rate,
                                             plan.record_clip, gens)
        sim.examples_processed += int(sizes.sum())
        local = LocalResult(sums, torch.zeros(len(members)), sizes, sizes.astype(np.float64))
        step = sim._aggregate_distributed(release, selected, survives, local, attempt)
        if not step.aggregated:
            return step
        up += step.bytes_up or 0
        down += step.extra_bytes_down
        faulty |= set(step.faulty)
        last = step
    assert last is not None
    return replace(last, bytes_up=up, extra_bytes_down=down, faulty=tuple(sorted(faulty)))
