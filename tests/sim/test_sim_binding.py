"""The random linear check in simulated member-level rounds: update proofs bound to the SecAgg+ input.

Honest rounds pass; a member that feeds SecAgg+ another vector than the one it proved fails the check
and is named by blame; dropouts before the masked input and members without a valid proof are left
out of both the aggregate and T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fedledger.core.config import build_config
from fedledger.core.rng import DeterministicEntropy
from fedledger.sim import Simulation
from fedledger.sim.proofs import RoundBinding
from fedledger.zk import LinearCheckFailed
from fedledger.zk.field import P

CFG = {"dataset": "digits", "partition": "iid", "clients": 5, "model": "logreg", "rounds": 1, "lr": 0.1,
       "dropout": 0.2, "proofs": "update", "privacy": {"dp": "member", "secagg": True, "epsilon": 8.0, "bits": 20}}
SEED = b"round-seed-for-tests"


@dataclass
class FeedsOtherVector(RoundBinding):
    """A member that commits to its honest input, then masks a different one."""

    cheater: int = 0
    delta: int = 1

    def blindings(self, encoding, survivors, ids):
        out = super().blindings(encoding, survivors, ids)
        row = self.cheater
        encoding.wrapped[row, 7] = (int(encoding.wrapped[row, 7]) + self.delta) % (1 << self.bits)
        return out


@dataclass
class ProvesOutOfBounds(RoundBinding):
    """A member whose noise share is far beyond the tail bound: it cannot commit, so it has no proof."""

    loud: int = 0

    def blindings(self, encoding, survivors, ids):
        encoding.noise[self.loud, 0] += 1 << 20
        return super().blindings(encoding, survivors, ids)


def _sim() -> Simulation:
    return Simulation(build_config(CFG))


def _round(sim: Simulation, cls, survivors: np.ndarray, **extra):
    n = sim.ddp.plan.n
    deltas = 0.05 * torch.randn(n, sim.dim, generator=torch.Generator().manual_seed(3))
    names = [f"member{i}" for i in range(n)]
    proofs = sim.proofs
    secrets = DeterministicEntropy(11)
    binding = cls(proofs.spec, proofs.prover, proofs.task, secrets, proofs.bits, 0, SEED, names, **extra)
    agg = sim.ddp.aggregate(deltas, 0, survivors=survivors, entropy=secrets, member_ids=list(range(10, 10 + n)),
                            binding=binding)
    return binding, agg


@pytest.mark.slow
def test_honest_round_passes_the_linear_check() -> None:
    res = _sim().run()
    r = res.rounds[0]
    assert r.proofs is not None and r.survivors > 0
    assert r.proofs["made"] == r.proofs["verified"] == r.survivors and r.proofs["rejected"] == 0
    assert r.proofs["linear_check"] is True and r.proofs["excluded"] == [] and r.proofs["culprits"] == []
    assert r.proofs["verify_seconds"] > 0


@pytest.mark.slow
def test_member_masking_another_vector_fails_the_check_and_is_blamed() -> None:
    sim = _sim()
    sv = np.ones(sim.ddp.plan.n, dtype=bool)
    binding, agg = _round(sim, FeedsOtherVector, sv, cheater=2, delta=3)
    # its proof is valid (it proves the committed vector): only the linear check can catch it
    assert binding.stats.verified == sim.ddp.plan.n and not agg.excluded
    with pytest.raises(LinearCheckFailed, match="member2"):
        sim.proofs.run(0, SEED, agg.encoding, agg.survivors, binding.names, binding, agg)
    assert binding.stats.linear_check is False and binding.stats.culprits == ["member2"]
    assert binding.last_blame is not None and len(binding.last_blame.culprits) == 1
    assert binding.last_blame.disputed == ()
    sim.proofs.close()


@pytest.mark.slow
def test_dropouts_and_members_without_a_valid_proof_are_left_out_of_t() -> None:
    sim = _sim()
    n = sim.ddp.plan.n
    sv = np.ones(n, dtype=bool)
    sv[1] = False  # drops before its masked input
    binding, agg = _round(sim, ProvesOutOfBounds, sv, loud=3)
    assert agg.excluded == (13,)  # member3 masked its input but has no proof: a dropout to SecAgg+
    kept = [0, 2, 4]
    assert agg.survivors.tolist() == [i in kept for i in range(n)]
    assert set(binding.committed) == {10, 12, 14}  # no commitment from the dropout or the loud member
    assert agg.blinding_sum == sum(int(binding.committed[10 + i][0].t) for i in kept) % P
    stats = sim.proofs.run(0, SEED, agg.encoding, agg.survivors, binding.names, binding, agg)
    js = stats.to_json()
    assert js["linear_check"] is True and js["made"] == js["verified"] == 3 and js["rejected"] == 1
    assert js["excluded"] == ["member3"]
    # blame clears every honest survivor (their carries and kappa reports are consistent)
    assert binding.blame([10 + i for i in kept]).culprits == ()
    # the check is not vacuous: a wrong T fails it
    with pytest.raises(LinearCheckFailed):
        binding.check(agg.total, (agg.blinding_sum + 1) % P, [10 + i for i in kept])
    sim.proofs.close()
