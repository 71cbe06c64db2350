"""fedledger.zk: zero-knowledge proofs about hidden updates and data (layer 3).

Entry points (see docs/zk.md):
- `update`: `UpdateSpec`, `ProofContext`, `commit_update`, `UpdateProver`, `verify_update`.
- `binding`: `derive_challenge`, `posting_digest`, `check_aggregate`, `blame`, `carry_vector`, `lift`.
- `data_quality`: `DataSpec`, `DataPolicy`, `dataset_root`, `prove_data_quality`, `verify_data_quality`.
- `training`: `TrainSpec`, `train_fixed_point`, `prove_training`, `verify_training`.
- `backend`: `Groth16Backend` (keys cached by circuit hash, Vyper verifier export).
Verification raises `InvalidProof` (an `IntegrityError`); it never returns a bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.zk.errors import InvalidProof, LinearCheckFailed, ProvingError, SetupRequired

__all__ = ["InvalidProof", "LinearCheckFailed", "ProofStats", "ProvingError", "SetupRequired"]


@dataclass
class ProofStats:
    """Per-round proof counters for results.json: `proofs = {made, verified, rejected, prove_seconds}`."""

    made: int = 0
    verified: int = 0
    rejected: int = 0
    prove_seconds: float = 0.0
    rejected_members: list[str] = field(default_factory=list)

    def record_made(self, seconds: float) -> None:
        self.made += 1
        self.prove_seconds += seconds

    def record_verdict(self, member: str, error: InvalidProof | None) -> None:
        if error is None:
            self.verified += 1
        else:
            self.rejected += 1
            self.rejected_members.append(member)

    def to_json(self) -> dict[str, object]:
        return {
            "made": self.made,
            "verified": self.verified,
            "rejected": self.rejected,
            "prove_seconds": round(self.prove_seconds, 3),
        }
