"""A task's public rules, derived from its spec (the blob whose hash the chain records) by every role alike.

The simulation, the validators and `fedledger audit` all call `task_rules`, so what a validator recomputes is
fixed by the spec on chain, not by anything the aggregator or the run directory says.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.core.config import FederationConfig, build_config
from fedledger.core.errors import DataError
from fedledger.core.rng import derive_seed
from fedledger.data import DATASETS
from fedledger.learning import build_strategy
from fedledger.ledger.types import to_fixed
from fedledger.models import build_model, get_flat
from fedledger.privacy import DdpPlan, DistributedDP
from fedledger.privacy.record_secagg import plain_secagg_plan
from fedledger.protocol.secure import SecureRules
from fedledger.secagg.graph import SecAggParams
from fedledger.zk.backend import Groth16Backend, require_task_keys
from fedledger.zk.update import UpdateSpec, plan_chunk

PROVER_CHUNKS_FOR = 1  # chunks planned for the least prover CPU per update (spec_for says why)
TAIL_SIGMAS = 8  # a noise entry beyond 8 standard deviations has probability below 1e-15


def min_survivors(cohort: int, dropout: float) -> int:
    """Survivors the noise is sized for: the cohort less a generous margin over the expected dropouts."""
    if dropout == 0:
        return cohort
    margin = dropout * cohort + 3 * np.sqrt(cohort * dropout * (1 - dropout))
    return max(1, int(np.floor(cohort - margin)))


def cohort_size(cfg: FederationConfig) -> int:
    return max(1, round(cfg.fraction * cfg.clients))


def spec_for(plan: DdpPlan) -> UpdateSpec:
    """The update circuit and bounds that enforce exactly what the privacy plan assumes."""
    bound2x = math.floor(plan.rounding_bound**2 + plan.bit_scale**2)
    entry_bits = math.ceil(math.log2(math.isqrt(bound2x) + 1)) + 1
    sigma = math.sqrt(plan.member_variance)
    noise_bits = max(2, math.ceil(math.log2(TAIL_SIGMAS * sigma + 1)) + 1)  # no noise (secagg without DP): 2
    noised = plan.padded + (1 if plan.adaptive else 0)
    bound2e = math.ceil(2 * plan.member_variance * noised + TAIL_SIGMAS**2 * plan.member_variance)
    # chunks sized for the least prover CPU per update, filling their FFT domains (1,024 entries: one chunk, 0.80 s
    # CPU, where two half chunks for two cores cost 0.92 s): a round proves many updates at once (a simulation's
    # members share one prover, every core busy with some member's chunk), so CPU per update is what its proving
    # time is made of. A fixed plan keeps the circuit, and so the keys, the same on every machine
    chunk = plan_chunk(plan.length, PROVER_CHUNKS_FOR, entry_bits=entry_bits, noise_bits=noise_bits)
    return UpdateSpec(chunk_size=chunk, entry_bits=entry_bits, noise_bits=noise_bits, bound2x=bound2x,
                      bound2e=bound2e)


def planned_releases(cfg: FederationConfig) -> int:
    """Member-level releases the noise is planned for: one per round, plus spares on a ledger, where an
    attempt can be redone after its sum was unmasked (every attempt is accounted)."""
    return cfg.rounds + (cfg.privacy.spare_releases if cfg.ledger.enabled else 0)


def secagg_survivors(n: int, cfg: FederationConfig) -> int:
    """Survivors a sum outside member-level DP needs: the margin over the expected dropouts, and SecAgg+'s
    threshold (a strict majority of a neighbourhood, all of a small cohort), below which nothing can be unmasked:
    such a round is not released (InsufficientSurvivors) rather than aborted."""
    threshold = SecAggParams.for_cohort(n, 1, cfg.privacy.bits, dropout=cfg.dropout).threshold if n >= 2 else 1
    return max(min_survivors(n, cfg.dropout), threshold)


def public_seed(cfg: FederationConfig) -> bytes:
    """The rotations' public seed: every role derives it from the task's seed."""
    return derive_seed(cfg.seed, "public").to_bytes(8, "big")


def secure_sum_pipeline(cfg: FederationConfig, plan: DdpPlan, clip_norm: float) -> DistributedDP:
    """The `DistributedDP` that runs `plan` (SecAgg+ alone, or record-level DP-SGD steps) for a task's `cfg`."""
    p = cfg.privacy
    return DistributedDP(epsilon=p.epsilon, delta=p.delta, clip_norm=clip_norm, d=plan.d, n=plan.n,
                         rounds=plan.rounds, min_survivors=plan.min_survivors, bits=plan.bits,
                         public_seed=public_seed(cfg), secagg_dropout=cfg.dropout,
                         keep_encoding=cfg.proofs != "none", plan=plan)


def distributed_dp(cfg: FederationConfig, dim: int) -> DistributedDP:
    """The secure-aggregation pipeline a task's spec fixes (plan, SecAgg+ parameters, rotation seed): member-level
    DP, or SecAgg+ alone (`dp = "none"`: each member's update clipped to the norm the proofs enforce, quantized and
    summed with no noise, as Flower's SecAgg+ mod; privacy/record_secagg.py)."""
    n, p = cohort_size(cfg), cfg.privacy
    if p.dp == "none":
        plan = plain_secagg_plan(d=dim, n=n, min_survivors=secagg_survivors(n, cfg), bits=p.bits)
        return secure_sum_pipeline(cfg, plan, p.clip_norm)
    return DistributedDP.from_config(
        p, d=dim, n=n, rounds=planned_releases(cfg), min_survivors=min_survivors(n, cfg.dropout),
        public_seed=public_seed(cfg), secagg_dropout=cfg.dropout, keep_encoding=cfg.proofs != "none",
    )


@dataclass(frozen=True)
class TaskRules:
    """What validators need to recompute any round of the task."""

    cfg: FederationConfig
    cohort: int
    secure: SecureRules | None  # SecAgg+ (member-level DP or none): rounds replayed from the transcript
    strategy: Callable[[], Any]  # a fresh server strategy
    private: bool  # privacy is accounted (a non-zero privacy spent may be posted)


def model_shape(spec: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of the task's model: recorded in the spec, or (older specs) the bundled
    data set's registry entry."""
    if "input_shape" in spec and "num_classes" in spec:
        return tuple(int(d) for d in spec["input_shape"]), int(spec["num_classes"])
    info = DATASETS.get(str(spec.get("dataset")))
    if info is None:
        raise DataError(f"the task spec names data set {spec.get('dataset')!r}, which is not bundled, and records no "
                        "input shape: the model cannot be rebuilt from the spec")
    return info.input_shape, info.num_classes


def task_config(spec: dict[str, Any]) -> FederationConfig:
    """The configuration a task's spec fixes (its `FederationConfig` fields; the rest is description)."""
    return build_config({k: v for k, v in spec.items() if k in FederationConfig.model_fields})


def model_dim(spec: dict[str, Any]) -> int:
    """The number of parameters of the task's model, rebuilt from the spec."""
    cfg = task_config(spec)
    shape, classes = model_shape(spec)
    return int(get_flat(build_model(cfg.model, shape, classes, seed=cfg.seed)).numel())


def release_allowance(cfg: FederationConfig, plan: DdpPlan, rnd: int) -> int:
    """Member-level releases that may be spent once round `rnd` is finalized: every planned release but one
    for each round after it."""
    return plan.rounds - (cfg.rounds - rnd)


def privacy_per_round(spec: dict[str, Any], *, dim: int | None = None) -> int:
    """The member-level privacy plan's per-round spend a task commits on chain with its budget (18 decimals): the
    most one round can add to the posted cumulative spent. The contract bounds each round by the spent so far
    plus it (within the budget), so an honest result always fits and the owner declares nothing per round.

    A round may use up to `m` releases (its own and every spare one), so this is the largest rise of the posted
    value, to_fixed(epsilon_after(n)), over any `m` consecutive planned releases."""
    cfg = task_config(spec)
    plan = distributed_dp(cfg, model_dim(spec) if dim is None else dim).plan
    m = release_allowance(cfg, plan, 1)  # the releases round 1 may use; no later round may use more

    def posted(n: int) -> int:
        eps = plan.epsilon_after(n)
        return to_fixed(0.0 if eps != eps else eps)  # as `privacy_spent` posts it (NaN: nothing)

    values = [posted(n) for n in range(plan.rounds + 1)]
    return max(values[min(n + m, plan.rounds)] - values[n] for n in range(plan.rounds))


def task_rules(spec: dict[str, Any], *, dim: int | None = None, keys: Any = None) -> TaskRules:
    """The rules of the task whose spec is `spec` (`FederationConfig` fields)."""
    cfg = task_config(spec)

    def strategy() -> Any:
        return build_strategy(cfg.strategy, server_lr=cfg.server_lr, trim=cfg.trim_fraction,
                              byzantine=cfg.krum_byzantine)

    secure = None
    p = cfg.privacy
    if p.secagg and p.dp in ("member", "none") and cfg.proofs != "training":
        ddp = distributed_dp(cfg, model_dim(spec) if dim is None else dim)
        assert ddp.secagg_params is not None
        spec_ = spec_for(ddp.plan) if cfg.proofs == "update" else None
        if spec_ is not None and keys is None:
            keys = Groth16Backend().keys(spec_.circuit)
        if spec_ is not None:  # only the keys the task committed to (their hash is in the spec, on chain)
            require_task_keys(keys, (spec.get("zk_keys") or {}).get("update"))
        secure = SecureRules(plan=ddp.plan, params=ddp.secagg_params, public_seed=ddp.public_seed,
                             clip_norm=float(p.clip_norm), target_quantile=float(p.target_quantile),
                             strategy=strategy, spec=spec_, keys=keys)
    return TaskRules(cfg, cohort_size(cfg), secure, strategy, p.dp != "none")
