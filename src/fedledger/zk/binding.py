"""Binding update proofs to the masked inputs of secure aggregation: random linear check and blame.

Setting. Member i feeds y_i = x_i + e_i (signed integers, d entries) into secure aggregation
modulo 2^b, masked as z_i = (y_i + b_i + sum_j sigma_ij m_ij) mod 2^b, with b_i its self mask,
m_ij the pairwise mask of pair {i, j} and sigma_ij = +1 if i < j else -1. Beside the vector it
feeds one extra coordinate over the BN254 field, u_i = t_i + beta_i + sum_j sigma_ij mu_ij mod p,
where t_i is the uniform blinding of its linear-check value and beta_i, mu_ij are the field
analogues of the masks (same seeds, separate PRG label). The aggregate of the field coordinate
is T = sum t_i mod p, and nothing else (see docs/zk.md for why not limbs mod 2^b).

Protocol, in order:
1. Each member posts `posting_digest(commitment, masked-input hash, carry hash)`. All masked
   inputs are now fixed.
2. r = `derive_challenge(round seed, postings)` from chain randomness drawn after step 1.
3. Each member proves s_i = sum_j r^j y_ij + t_i (the update proof, `fedledger.zk.update`).
4. Validators check `check_aggregate`: sum_i s_i == sum_j r^j A_j + T over the survivors, with
   A the aggregate lifted to signed integers. A member that masked y'_i != y_i passes with
   probability at most (d + 1) / p (Schwartz-Zippel, degree-d polynomial in r).
5. If the check fails: `blame`. Each survivor reveals its carry vector w_i, or proves its
   projection <r, w_i> against the carry commitment of step 1 (`commit_carries`,
   `open_carries`), and both ends of each pair report kappa_ij = <r, m_ij> + mu_ij; self-mask
   seeds are revealed as in SecAgg+ unmasking. Member i's equation
       s_i + <r, b_i> + beta_i + sum_j sigma_ij kappa_ij == <r, z_i> + u_i + 2^b <r, w_i>
   then holds for every honest member and fails (except with probability (d+1)/p) for one that
   masked a vector other than the one it proved, unless it lies about some kappa_ij, which
   the other end contradicts. Validators never learn t_i, <r, y_i> or y_i.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.core.errors import ConfigError, DataError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.rng import ByteSource
from fedledger.zk.backend import KeySet
from fedledger.zk.errors import InvalidProof, LinearCheckFailed
from fedledger.zk.field import P, hash_to_field, int_bytes
from fedledger.zk.update import (
    ProofContext,
    UpdateCommitment,
    UpdateProof,
    UpdateProver,
    UpdateSecret,
    UpdateSpec,
    commit_update,
    running_state,
    verify_update,
)


def field_mask(seed: bytes) -> int:
    """The field-coordinate mask a SecAgg seed expands to (beta_i for a self seed, mu_ij for a pair).

    Domain-separated from the vector mask stream of the same seed; uniform in F_p up to 2^-250.
    """
    if len(seed) != 32:
        raise DataError(f"mask seeds are 32 bytes, got {len(seed)}")
    return hash_to_field("secagg/field-mask", seed)


def mask_blinding(me: str, t: int, self_seed: bytes, pair_seeds: Mapping[str, bytes]) -> int:
    """u_i = t_i + beta_i + sum_j sigma_ij mu_ij mod p: the extra coordinate member `me` sends."""
    u = t + field_mask(self_seed)
    for peer, seed in pair_seeds.items():
        u += sigma(me, peer) * field_mask(seed)
    return u % P


def unmask_blinding(
    masked: Mapping[str, int],
    self_seeds: Mapping[str, bytes],
    dropped_pair_seeds: Mapping[tuple[str, str], bytes],
) -> int:
    """T = sum of t_i over the survivors `masked`, given their self seeds and the reconstructed
    seeds of their pairs with dropped members (key (survivor, dropped))."""
    total = sum(masked.values())
    for i, seed in self_seeds.items():
        if i not in masked:
            raise DataError(f"self seed given for {i}, which is not a survivor")
        total -= field_mask(seed)
    for (i, j), seed in dropped_pair_seeds.items():
        if i not in masked or j in masked:
            raise DataError(f"pair ({i}, {j}) is not (survivor, dropped)")
        total -= sigma(i, j) * field_mask(seed)
    return total % P


def derive_challenge(round_seed: bytes, postings: Sequence[bytes]) -> int:
    """The challenge r: a non-zero field element from the round's chain seed and every posting."""
    counter = 0
    while True:
        r = hash_to_field("linear-check/challenge", round_seed, counter.to_bytes(4, "big"), *postings)
        if r != 0:
            return r
        counter += 1  # probability 1/p; kept so r is never 0


def vector_digest(v: np.ndarray) -> bytes:
    """Hash of a masked input or a carry vector (dtype and shape are part of the digest)."""
    a = np.ascontiguousarray(v)
    return domain_hash(Usage.EVIDENCE, a.dtype.str.encode(), str(a.shape).encode(), a.tobytes())


def masked_input_digest(masked: np.ndarray, masked_blinding: int) -> bytes:
    """Hash of a member's whole secure-aggregation input: the vector mod 2^b and the field coordinate."""
    return domain_hash(Usage.EVIDENCE, b"masked-input", vector_digest(masked), int_bytes(masked_blinding % P))


def posting_digest(commitment: UpdateCommitment, masked_digest: bytes, carry_digest: bytes) -> bytes:
    """What a member posts before the challenge: its update commitment, masked input and carries."""
    return domain_hash(Usage.UPDATE_COMMIT, b"posting", commitment.digest(), masked_digest, carry_digest)


def project(r: int, v: np.ndarray) -> int:
    """<r, v> = sum_j r^(j+1) v_j mod p for an integer vector (signed or residues mod 2^b)."""
    acc = 0
    for a in reversed(np.asarray(v).tolist()):
        acc = (acc + int(a)) * r % P
    return acc


def lift(aggregate: np.ndarray, bits: int) -> np.ndarray:
    """Residues mod 2^bits read as signed integers in [-2^(bits-1), 2^(bits-1)) (exact if no overflow)."""
    if not 2 <= bits <= 64:
        raise DataError(f"modulus bits must be in 2..64, got {bits}")
    a = np.asarray(aggregate).astype(np.uint64)
    if bits < 64:
        a = a & np.uint64((1 << bits) - 1)
        return a.astype(np.int64) - (a >= np.uint64(1 << (bits - 1))).astype(np.int64) * (1 << bits)
    return a.view(np.int64)


def carry_vector(
    y: np.ndarray, mask_parts: Sequence[tuple[int, np.ndarray]], masked: np.ndarray, bits: int
) -> np.ndarray:
    """w with y + sum sign*mask = masked + 2^bits w over the integers (what an honest member commits).

    `mask_parts` are (sign, mask) with masks as residues in [0, 2^bits): the self mask with +1
    and each pairwise mask with its sigma. Computed with Python ints: exact for any `bits`.
    """
    total = np.asarray(y).astype(object)
    for sign, m in mask_parts:
        total = total + sign * np.asarray(m).astype(object)
    diff = total - np.asarray(masked).astype(object)
    w = diff // (1 << bits)
    if np.any(w * (1 << bits) != diff):
        raise DataError("masked input is not y plus its masks modulo 2^bits")
    return w.astype(np.int64)


def check_aggregate(r: int, s_values: Mapping[str, int], aggregate: np.ndarray, blinding_sum: int) -> None:
    """Raise LinearCheckFailed unless sum_i s_i == <r, A> + T mod p over the survivors."""
    lhs = sum(int(s) for s in s_values.values()) % P
    rhs = (project(r, np.asarray(aggregate, dtype=np.int64)) + int(blinding_sum)) % P
    if lhs != rhs:
        raise LinearCheckFailed(
            f"linear check failed over {len(s_values)} survivors: the masked inputs are not the proven vectors"
        )


@dataclass(frozen=True)
class MemberEvidence:
    """What validators hold for one survivor during blame (all public or revealed for blame)."""

    s: int  # its verified linear-check value
    masked: np.ndarray  # z_i, residues mod 2^bits
    masked_blinding: int  # u_i, the field coordinate
    self_projection: int  # <r, b_i> + beta_i, from the revealed self-mask seed
    carries: np.ndarray | None  # w_i as revealed (None: refused, or opened in zero knowledge below)
    carry_digest: bytes  # as posted before the challenge
    carry_opening: CarryOpening | None = None  # <r, w_i> with a proof, instead of w_i itself


@dataclass(frozen=True)
class CarryOpening:
    """<r, w_i> proved against the carry commitment posted before the challenge (w_i stays hidden).

    The carries are committed as an update commitment with the member's carry context, a zero
    noise share (bound2e = 0) and t = 0; `salt0` opens the first running state to t = 0, so the
    proof's linear-check value is exactly <r, w_i>.
    """

    commitment: UpdateCommitment
    proof: UpdateProof
    salt0: int


def carry_context(ctx: ProofContext) -> ProofContext:
    """The proof context of a member's carry commitment (distinct from its update's)."""
    return ProofContext(ctx.task_id, ctx.round_id, ctx.member_id + "#carries")


def carry_spec(spec: UpdateSpec) -> UpdateSpec:
    """The update spec reused for carries: same circuit and keys, no noise share, loose norm."""
    return dataclasses.replace(spec, bound2x=(1 << spec.norm_bits) - 1, bound2e=0)


def commit_carries(
    spec: UpdateSpec, ctx: ProofContext, carries: np.ndarray, rng: ByteSource
) -> tuple[UpdateSecret, UpdateCommitment]:
    """Commit to a carry vector before the challenge; post `commitment.digest()` as the carry digest."""
    w = np.asarray(carries, dtype=np.int64)
    return commit_update(carry_spec(spec), carry_context(ctx), w, np.zeros_like(w), rng, t=0)


def open_carries(prover: UpdateProver, secret: UpdateSecret, posted: UpdateCommitment, r: int) -> CarryOpening:
    """In blame: prove <r, w_i> for the committed carries (`prover` built with `carry_spec(spec)`)."""
    if prover.spec.bound2e != 0 or prover.spec.bound2x != (1 << prover.spec.norm_bits) - 1:
        raise ConfigError("open_carries needs a prover built with carry_spec(task spec)")
    return CarryOpening(posted, prover.prove_update(secret, posted, r), secret.salts[0])


def _carry_projection(
    r: int,
    member: str,
    ev: MemberEvidence,
    carry_keys: KeySet | None,
    spec: UpdateSpec | None,
    contexts: Mapping[str, ProofContext] | None,
) -> int | None:
    """<r, w_i> from revealed carries or a verified opening; None if neither checks out."""
    if ev.carries is not None:
        if vector_digest(ev.carries) != ev.carry_digest or ev.carries.shape != ev.masked.shape:
            return None
        return project(r, ev.carries)
    op = ev.carry_opening
    if op is None or carry_keys is None or spec is None or contexts is None or member not in contexts:
        return None
    c = op.commitment
    if c.digest() != ev.carry_digest or c.dim != len(ev.masked):
        return None
    if c.ctx != carry_context(contexts[member]).element or c.state0 != running_state(c.ctx, 0, 0, 0, 0, op.salt0):
        return None
    try:
        verify_update(carry_keys, carry_spec(spec), c, op.proof, r)
    except InvalidProof:
        return None
    return op.proof.s


@dataclass(frozen=True)
class BlameReport:
    """`culprits` failed their own equation (or refused); `disputed` pairs reported different kappa."""

    culprits: tuple[str, ...]
    disputed: tuple[tuple[str, str], ...]


def sigma(i: str, j: str) -> int:
    return 1 if i < j else -1


def blame(
    r: int,
    bits: int,
    evidence: Mapping[str, MemberEvidence],
    reports: Mapping[tuple[str, str], int],
    graph: Mapping[str, Sequence[str]],
    *,
    carry_keys: KeySet | None = None,
    spec: UpdateSpec | None = None,
    contexts: Mapping[str, ProofContext] | None = None,
) -> BlameReport:
    """Name the members whose masked input is not their proven vector.

    `reports[(i, j)]` is kappa_ij = <r, m_ij> + mu_ij as member i reports it; for a dropped
    neighbour j the caller enters the value recomputed from j's reconstructed pairwise seed under
    both keys. `graph[i]` lists i's neighbours (survivors and dropped) in the masking graph.
    Each member's equation uses only its own reports, so an honest member is never a culprit; a
    member that lies about a kappa to fix its equation lands in `disputed` with the honest end,
    and revealing that one pairwise seed settles who lied (`adjudicate`). A member either
    reveals its carries or opens their projection in zero knowledge (`carry_opening`; then
    `carry_keys`, the task's update `spec` and the members' `contexts` are needed).
    """
    culprits: list[str] = []
    disputed: set[tuple[str, str]] = set()
    scale = pow(2, bits, P)
    for i, ev in sorted(evidence.items()):
        carry_proj = _carry_projection(r, i, ev, carry_keys, spec, contexts)
        if carry_proj is None:
            culprits.append(i)
            continue
        pair_sum = 0
        missing = False
        for j in graph[i]:
            mine = reports.get((i, j))
            theirs = reports.get((j, i))
            if mine is None:
                missing = True
                break
            if theirs is not None and theirs % P != mine % P:
                disputed.add((min(i, j), max(i, j)))
            pair_sum += sigma(i, j) * mine
        if missing:
            culprits.append(i)
            continue
        lhs = (ev.s + ev.self_projection + pair_sum) % P
        rhs = (project(r, ev.masked) + ev.masked_blinding + scale * carry_proj) % P
        if lhs != rhs:
            culprits.append(i)
    return BlameReport(tuple(culprits), tuple(sorted(disputed)))


def adjudicate(pair: tuple[str, str], true_kappa: int, reports: Mapping[tuple[str, str], int]) -> tuple[str, ...]:
    """Given kappa recomputed from the pair's revealed seed, the ends whose report was false."""
    i, j = pair
    return tuple(m for m, peer in ((i, j), (j, i)) if reports.get((m, peer), -1) % P != true_kappa % P)


def kappa(r: int, pair_mask: np.ndarray, pair_field_mask: int) -> int:
    """kappa_ij = <r, m_ij> + mu_ij: the only projection of a pairwise mask revealed in blame."""
    return (project(r, pair_mask) + int(pair_field_mask)) % P
