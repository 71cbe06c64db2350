"""Update proofs in a member-level round: every survivor proves its secure-aggregation input well formed.

After the privacy pipeline, member i's input is y_i = x_i + e_i (mod 2^b): x_i its clipped, rotated,
conditionally rounded update (and clip bit), e_i its discrete Gaussian noise share. Each survivor commits
to (x_i, e_i), the challenge r is derived from the round seed and every posted commitment (so it is fixed
after them), and the survivor proves every entry in range, ||x_i||^2 within the plan's rounding bound and
||e_i||^2 within a tail bound. Validators verify every proof; a member whose proof fails is named.

The proof parameters come from the `DdpPlan`, so the bound a proof enforces is exactly the sensitivity
the privacy accounting assumed. (The random linear check that ties each proof to the masked input needs
SecAgg+ to carry one field coordinate per member; it is implemented and tested in `fedledger.zk.binding`
but not yet wired into the simulated rounds.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.core.errors import DataError
from fedledger.core.rng import numpy_rng
from fedledger.privacy import DdpPlan, MemberEncoding
from fedledger.zk import InvalidProof, ProofStats
from fedledger.zk.binding import derive_challenge
from fedledger.zk.update import ProofContext, UpdateProver, UpdateSpec, commit_update, verify_update

SMALL_CHUNK = 1024  # one circuit (and key pair) for models up to a few thousand coordinates
TAIL_SIGMAS = 8  # a noise entry beyond 8 standard deviations has probability below 1e-15


def spec_for(plan: DdpPlan) -> UpdateSpec:
    """The update circuit and bounds that enforce exactly what the privacy plan assumes."""
    bound2x = math.floor(plan.rounding_bound**2 + plan.bit_scale**2)
    entry_bits = math.ceil(math.log2(math.isqrt(bound2x) + 1)) + 1
    sigma = math.sqrt(plan.member_variance)
    noise_bits = math.ceil(math.log2(TAIL_SIGMAS * sigma + 1)) + 1
    noised = plan.padded + (1 if plan.adaptive else 0)
    bound2e = math.ceil(2 * plan.member_variance * noised + TAIL_SIGMAS**2 * plan.member_variance)
    chunk = SMALL_CHUNK if plan.length <= 8 * SMALL_CHUNK else 4096
    return UpdateSpec(chunk_size=chunk, entry_bits=entry_bits, noise_bits=noise_bits, bound2x=bound2x,
                      bound2e=bound2e)


@dataclass
class RoundProofs:
    """Proves and verifies the survivors' update proofs of each round."""

    spec: UpdateSpec
    task: str
    seed: int
    prover: UpdateProver | None = None

    @classmethod
    def for_plan(cls, plan: DdpPlan, task: str, seed: int) -> RoundProofs:
        spec = spec_for(plan)
        return cls(spec, task, seed, UpdateProver(spec))

    @property
    def keys_record(self) -> dict[str, object]:
        assert self.prover is not None
        return self.prover.keys.record.to_json()

    def run(self, round_id: int, round_seed: bytes, encoding: MemberEncoding, survivors: np.ndarray,
            names: Sequence[str]) -> ProofStats:
        """Commit, derive the challenge, prove (trainers) and verify (validators) every survivor's input."""
        assert self.prover is not None
        stats = ProofStats()
        rows = np.flatnonzero(survivors)
        rng = numpy_rng(self.seed, "proofs", round_id)
        committed = {}
        for row in rows:
            ctx = ProofContext(self.task, round_id, names[row])
            try:
                committed[row] = commit_update(self.spec, ctx, encoding.values[row], encoding.noise[row], rng)
            except DataError:
                stats.record_verdict(names[row], InvalidProof(f"{names[row]}: input out of the proven bounds"))
        r = derive_challenge(round_seed, [posted.digest() for _, posted in committed.values()])
        for row, (secret, posted) in committed.items():
            start = time.perf_counter()
            proof = self.prover.prove_update(secret, posted, r)
            stats.record_made(time.perf_counter() - start)
            try:
                verify_update(self.prover.keys, self.spec, posted, proof, r)
            except InvalidProof as err:
                stats.record_verdict(names[row], err)
            else:
                stats.record_verdict(names[row], None)
        return stats

    def close(self) -> None:
        if self.prover is not None:
            self.prover.close()
