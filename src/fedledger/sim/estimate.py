"""How long a run will take, said before it starts.

Update proofs dominate a whole-system round (90% and more), and their cost is modeled per chunk by
`fedledger.zk.update.modeled_chunk_seconds` (fitted on this project's prover; bench/results/zk.json compares
it with measurements). The rest of a round is a measured allowance per round and per member, taken from the
protocol bench's stage split of the default round (bench/results/protocol_stages.json): a conservative round
figure, not a promise. The estimate assumes the machine's cores are free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fedledger.core.config import FederationConfig

#: seconds per round besides the proofs on a ledger (open, seal, submit, votes, finalize, validation, evaluation)
CHAIN_ROUND_S = 3.0
#: seconds per member per round of local training, privatization and masking (small models, a CPU core)
MEMBER_ROUND_S = 0.05


@dataclass(frozen=True, slots=True)
class RunEstimate:
    rounds: int
    proof_s_per_round: float
    other_s_per_round: float

    @property
    def total_s(self) -> float:
        return self.rounds * (self.proof_s_per_round + self.other_s_per_round)

    def describe(self) -> str:
        proofs = f", of which update proofs {self.proof_s_per_round:.0f} s" if self.proof_s_per_round else ""
        return (f"estimated time: about {_duration(self.total_s)} "
                f"({self.proof_s_per_round + self.other_s_per_round:.0f} s per round{proofs}, "
                f"on {_cores()} free cores)")


def estimate_run(cfg: FederationConfig) -> RunEstimate:
    """The modeled wall time of `cfg`'s run on this machine's cores."""
    from fedledger.protocol.rules import cohort_size

    members = cohort_size(cfg)
    other = MEMBER_ROUND_S * members + (CHAIN_ROUND_S if cfg.ledger.enabled else 0.0)
    return RunEstimate(cfg.rounds, _update_proof_seconds(cfg, members), other)


def _update_proof_seconds(cfg: FederationConfig, members: int) -> float:
    """Wall seconds per round of the cohort's update proofs (SecAgg+, with member-level DP or without DP)."""
    p = cfg.privacy
    if cfg.proofs != "update" or p.dp not in ("member", "none") or not p.secagg:
        return 0.0
    from fedledger.models import build_model, get_flat
    from fedledger.protocol.rules import distributed_dp, model_shape, spec_for
    from fedledger.zk.update import modeled_chunk_seconds

    shape, classes = model_shape(cfg.model_dump())
    dim = int(get_flat(build_model(cfg.model, shape, classes, seed=cfg.seed)).numel())
    plan = distributed_dp(cfg, dim).plan
    spec = spec_for(plan)
    return members * spec.n_chunks(plan.length) * modeled_chunk_seconds(spec) / _cores()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
