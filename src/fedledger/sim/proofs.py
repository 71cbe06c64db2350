"""Update proofs in a member-level round, bound to what each member fed into SecAgg+.

After the privacy pipeline, member i's input is y_i = x_i + e_i (mod 2^b): x_i its clipped, rotated,
conditionally rounded update (and clip bit), e_i its discrete Gaussian noise share. The proofs enforce
every entry in range, ||x_i||^2 within the plan's rounding bound and ||e_i||^2 within a tail bound, with
parameters from the `DdpPlan`, so the bound a proof enforces is exactly the sensitivity the privacy
accounting assumed.

With secure aggregation the proofs are bound to the masked inputs by the random linear check of
`fedledger.zk.binding` (docs/zk.md, "Binding in the simulated round"). A round runs in this order:

1. `RoundBinding.blindings` (before masking): each survivor commits to (x_i, e_i, t_i); t_i becomes
   the field coordinate it sends beside its vector through SecAgg+.
2. `RoundBinding.screen` (every masked input is in, before the survivor list is fixed): each member
   posts `posting_digest(commitment, H(z_i, u_i), H(w_i))` with its masked input (z_i, u_i) and its
   carry vector w_i; the challenge r is derived from the round seed and every posting; each member
   proves s_i; validators verify every proof. Members without a valid proof are returned to SecAgg+,
   which treats them as dropouts (their self seeds stay secret, their pair masks are removed).
3. SecAgg+ unmasks the sum A (mod 2^b) and T = sum of the kept members' t_i (mod p).
4. `RoundBinding.check`: validators check sum_i s_i == <r, lift(A)> + T (`check_aggregate`). If it fails,
   `blame` names the members whose masked input is not their proven vector, and the round raises
   `LinearCheckFailed`.

Carries are revealed in blame (their digest is posted in step 2), the simplest option docs/zk.md
allows; opening them in zero knowledge (`commit_carries`) would need a second commitment per member.
Without secure aggregation (`--no-secagg`) there is no masked input to bind and `run` proves the
bounds only (`linear_check` is then null).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedledger.core.errors import DataError
from fedledger.core.rng import Entropy, Purpose
from fedledger.privacy import DdpPlan, MemberEncoding
from fedledger.privacy.distributed import AggregateResult
from fedledger.protocol.rules import spec_for
from fedledger.secagg.field import MaskingRecord, field_mask
from fedledger.secagg.prg import expand_mask
from fedledger.zk import InvalidProof, LinearCheckFailed, ProofStats
from fedledger.zk.binding import (
    BlameReport,
    MemberEvidence,
    blame,
    check_aggregate,
    derive_challenge,
    kappa,
    lift,
    masked_input_digest,
    posting_digest,
    project,
    vector_digest,
)
from fedledger.zk.field import P
from fedledger.zk.update import (
    ProofContext,
    UpdateCommitment,
    UpdateProof,
    UpdateProver,
    UpdateSecret,
    UpdateSpec,
    commit_update,
    verify_update,
)


@dataclass
class RoundProofStats(ProofStats):
    """`ProofStats` plus the linear check: {made, verified, rejected, prove_seconds, prove_cpu_seconds,
    verify_seconds, linear_check, excluded, culprits}. `linear_check` is null when there was no masked input to bind."""

    verify_seconds: float = 0.0
    prove_cpu_seconds: float = 0.0
    linear_check: bool | None = None
    excluded: list[str] = field(default_factory=list)
    culprits: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "prove_cpu_seconds": round(self.prove_cpu_seconds, 3),
            "verify_seconds": round(self.verify_seconds, 3),
            "linear_check": self.linear_check,
            "excluded": list(self.excluded),
            "culprits": list(self.culprits),
        }


def _key(member_id: int) -> str:
    """Blame's member key: zero-padded so string order is SecAgg+'s integer order (the mask signs)."""
    return f"{int(member_id):012d}"


def _prove_all(prover: UpdateProver, jobs: Sequence[tuple[UpdateSecret, UpdateCommitment]], r: int,
               stats: RoundProofStats) -> list[UpdateProof]:
    """Every member's proof for challenge r, all submitted before any is collected: each member proves its own
    update, and the one prover they share here keeps every core busy (the witnesses of the next members are
    computed while the prover threads prove the previous ones). `prove_seconds` is the wall time of the batch,
    `prove_cpu_seconds` its CPU time (witnesses and proofs; independent of the machine's load)."""
    start, c0 = time.perf_counter(), prover.cpu_seconds
    pending = [prover.submit_update(secret, posted, r) for secret, posted in jobs]
    proofs = [p.result() for p in pending]
    stats.made += len(proofs)
    stats.prove_seconds += time.perf_counter() - start
    stats.prove_cpu_seconds += prover.cpu_seconds - c0
    return proofs


@dataclass
class RoundBinding:
    """One round of `InputBinding` hooks (see `fedledger.privacy.distributed.InputBinding`)."""

    spec: UpdateSpec
    prover: UpdateProver
    task: str
    entropy: Entropy  # the attempt's secrets: each member's commitment randomness is its own stream
    bits: int
    round_id: int
    round_seed: bytes
    names: Sequence[str]  # by row of the cohort
    attempt: int = 0
    stats: RoundProofStats = field(default_factory=RoundProofStats)
    ids: list[int] = field(default_factory=list)
    proved: dict[int, np.ndarray] = field(default_factory=dict)  # id -> y_i = x_i + e_i (signed)
    committed: dict[int, tuple[UpdateSecret, UpdateCommitment]] = field(default_factory=dict)
    r: int | None = None
    s: dict[int, int] = field(default_factory=dict)  # id -> verified linear-check value
    masked: dict[int, np.ndarray] = field(default_factory=dict)
    masked_blindings: dict[int, int] = field(default_factory=dict)
    records: dict[int, MaskingRecord] = field(default_factory=dict)
    carries: dict[int, np.ndarray] = field(default_factory=dict)
    excluded: set[int] = field(default_factory=set)
    last_blame: BlameReport | None = None
    cheaters: frozenset[int] = frozenset()  # attack injection: rows that mask another vector after committing

    def name(self, member_id: int) -> str:
        return self.names[self.ids.index(member_id)]

    # step 1: before masking ------------------------------------------------------------------------
    def blindings(self, encoding: MemberEncoding, survivors: np.ndarray, ids: list[int]) -> Mapping[int, int]:
        self.ids = [int(m) for m in ids]
        out: dict[int, int] = {}
        for row, m in enumerate(self.ids):
            out[m] = 0
            if not survivors[row]:
                continue
            ctx = ProofContext(self.task, self.round_id, self.names[int(row)])
            rng = self.entropy.stream(Purpose.COMMITMENT, member=m, round=self.round_id, attempt=self.attempt)
            try:
                secret, posted = commit_update(self.spec, ctx, encoding.values[row], encoding.noise[row], rng)
            except DataError:
                name = self.names[int(row)]
                self.stats.record_verdict(name, InvalidProof(f"{name}: input out of bounds"))
                continue
            self.committed[m] = (secret, posted)
            self.proved[m] = encoding.values[row] + encoding.noise[row]
            out[m] = int(secret.t)
        for row in self.cheaters:  # commit to one vector, mask another: only the linear check can tell
            encoding.wrapped[row, 0] = (int(encoding.wrapped[row, 0]) + 1) % (1 << self.bits)
        return out

    # step 2: masked inputs in, survivor list not yet fixed ----------------------------------------
    def screen(self, masked: Mapping[int, np.ndarray], masked_blindings: Mapping[int, int],
               records: Mapping[int, MaskingRecord]) -> Collection[int]:
        postings: list[bytes] = []
        posted_by: list[int] = []
        for m in sorted(masked, key=self.ids.index):
            if m not in self.committed or m not in records or m not in masked_blindings:
                self.excluded.add(m)
                continue
            y = self.proved[m]
            # carries of the signed y: y_w = y + 2^b [y < 0], so y + masks = z + 2^b (w_w - [y < 0])
            w = records[m].carries - (y < 0).astype(np.int64)
            self.masked[m] = np.asarray(masked[m])
            self.masked_blindings[m] = int(masked_blindings[m])
            self.records[m] = records[m]
            self.carries[m] = w
            digest = masked_input_digest(self.masked[m], self.masked_blindings[m])
            postings.append(posting_digest(self.committed[m][1], digest, vector_digest(w)))
            posted_by.append(m)
        self.r = derive_challenge(self.round_seed, postings)
        proofs = _prove_all(self.prover, [self.committed[m] for m in posted_by], self.r, self.stats)
        for m, proof in zip(posted_by, proofs, strict=True):
            start = time.perf_counter()
            try:
                verify_update(self.prover.keys, self.spec, self.committed[m][1], proof, self.r)
            except InvalidProof as err:
                self.stats.record_verdict(self.name(m), err)
                self.excluded.add(m)
            else:
                self.stats.record_verdict(self.name(m), None)
                self.s[m] = proof.s
            self.stats.verify_seconds += time.perf_counter() - start
        self.stats.excluded = [self.name(m) for m in sorted(self.excluded, key=self.ids.index)]
        return set(self.excluded)

    # step 4: after unmasking -----------------------------------------------------------------------
    def check(self, aggregate: np.ndarray, blinding_sum: int, survivors: Collection[int]) -> None:
        """Validators' linear check over the kept survivors; on failure, blame and raise."""
        if self.r is None:
            raise LinearCheckFailed("no challenge was derived: the binding hooks did not run")
        kept = sorted(int(m) for m in survivors)
        if set(kept) - set(self.s):
            raise LinearCheckFailed(f"survivors without a verified proof: {sorted(set(kept) - set(self.s))[:5]}")
        try:
            check_aggregate(self.r, {_key(m): self.s[m] for m in kept}, lift(aggregate, self.bits), blinding_sum)
        except LinearCheckFailed as err:
            self.stats.linear_check = False
            report = self.blame(kept)
            self.stats.culprits = [self.name(int(k)) for k in report.culprits]
            disputed = f", disputed pairs {list(report.disputed)}" if report.disputed else ""
            raise LinearCheckFailed(f"{err}; blame names {self.stats.culprits or 'nobody'}{disputed}") from None
        self.stats.linear_check = True

    def blame(self, survivors: Collection[int]) -> BlameReport:
        """Each survivor reveals its carries and its self seed and reports kappa for each of its pairs."""
        if self.r is None:
            raise LinearCheckFailed("no challenge was derived: the binding hooks did not run")
        r = self.r
        evidence: dict[str, MemberEvidence] = {}
        reports: dict[tuple[str, str], int] = {}
        graph: dict[str, list[str]] = {}
        for m in sorted(int(k) for k in survivors):
            rec = self.records[m]
            z = self.masked[m]
            self_mask = expand_mask(rec.self_seed, len(z), self.bits, b"self")
            evidence[_key(m)] = MemberEvidence(
                s=self.s[m], masked=z, masked_blinding=self.masked_blindings[m],
                self_projection=(project(r, self_mask) + field_mask(rec.self_seed)) % P,
                carries=self.carries[m], carry_digest=vector_digest(self.carries[m]),
            )
            graph[_key(m)] = [_key(j) for j in rec.pair_seeds]
            for j, seed in rec.pair_seeds.items():
                reports[(_key(m), _key(j))] = kappa(r, expand_mask(seed, len(z), self.bits, b"pair"), field_mask(seed))
        self.last_blame = blame(r, self.bits, evidence, reports, graph)
        return self.last_blame


@dataclass
class RoundProofs:
    """Proves and verifies the survivors' update proofs of each round."""

    spec: UpdateSpec
    task: str
    prover: UpdateProver | None = None
    bits: int = 32  # the SecAgg+ modulus 2^bits (the plan's)

    @classmethod
    def for_plan(cls, plan: DdpPlan, task: str) -> RoundProofs:
        spec = spec_for(plan)
        return cls(spec, task, UpdateProver(spec, workers=None), bits=plan.bits)  # one prover per core

    @property
    def keys_record(self) -> dict[str, object]:
        assert self.prover is not None
        return self.prover.keys.record.to_json()

    def binding(self, round_id: int, round_seed: bytes, names: Sequence[str], cheaters: Collection[int] = (),
                *, entropy: Entropy, attempt: int = 0) -> RoundBinding:
        """The hooks to pass to `DistributedDP.aggregate(binding=...)` for one attempt of a round; commitment
        randomness from `entropy`. `cheaters` (rows of the cohort; the `mask_swap` attack) mask another vector
        than the one they committed to."""
        assert self.prover is not None
        return RoundBinding(self.spec, self.prover, self.task, entropy, self.bits, round_id, round_seed,
                            list(names), attempt, cheaters=frozenset(cheaters))

    def run(self, round_id: int, round_seed: bytes, encoding: MemberEncoding, survivors: np.ndarray,
            names: Sequence[str], binding: RoundBinding | None = None,
            aggregate: AggregateResult | None = None, *, entropy: Entropy | None = None,
            attempt: int = 0) -> RoundProofStats:
        """With `binding` (it ran inside `aggregate`): the validators' linear check (raises
        `LinearCheckFailed`). Without: commit (randomness from `entropy`), derive the challenge, prove and
        verify every survivor's input after the fact (bounds only, nothing binds the proofs to the masked
        inputs)."""
        assert self.prover is not None
        if binding is not None:
            if aggregate is None or aggregate.total is None or aggregate.blinding_sum is None:
                raise LinearCheckFailed("the aggregate has no field coordinate to check the proofs against")
            kept = [binding.ids[row] for row in np.flatnonzero(aggregate.survivors)]
            binding.check(aggregate.total, aggregate.blinding_sum, kept)
            return binding.stats
        if entropy is None:
            raise ValueError("proving without a binding commits: pass the attempt's entropy")
        stats = RoundProofStats()
        rows = np.flatnonzero(survivors)
        committed = {}
        for row in rows:
            ctx = ProofContext(self.task, round_id, names[int(row)])
            rng = entropy.stream(Purpose.COMMITMENT, member=int(row), round=round_id, attempt=attempt)
            try:
                committed[row] = commit_update(self.spec, ctx, encoding.values[row], encoding.noise[row], rng)
            except DataError:
                name = names[int(row)]
                stats.record_verdict(name, InvalidProof(f"{name}: input out of the proven bounds"))
        r = derive_challenge(round_seed, [posted.digest() for _, posted in committed.values()])
        proofs = _prove_all(self.prover, list(committed.values()), r, stats)
        for (row, (_, posted)), proof in zip(committed.items(), proofs, strict=True):
            start = time.perf_counter()
            try:
                verify_update(self.prover.keys, self.spec, posted, proof, r)
            except InvalidProof as err:
                stats.record_verdict(names[int(row)], err)
            else:
                stats.record_verdict(names[int(row)], None)
            stats.verify_seconds += time.perf_counter() - start
        return stats

    def close(self) -> None:
        if self.prover is not None:
            self.prover.close()
