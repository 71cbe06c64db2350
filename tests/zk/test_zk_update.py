"""Update proof: valid proofs verify; every broken constraint fails to prove or to verify."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from zk_support import SMALL

from fedledger.core.errors import DataError, IntegrityError
from fedledger.zk.errors import InvalidProof, ProvingError
from fedledger.zk.field import P, signed
from fedledger.zk.update import (
    PUBLIC_INPUTS,
    ChunkProof,
    ProofContext,
    UpdateCommitment,
    UpdateProof,
    chunk_public_inputs,
    chunk_witnesses,
    commit_packed,
    commit_update,
    running_state,
    verify_update,
)

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

CTX = ProofContext("task-a", 7, "member-1")
R = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF
DIM = 40  # three chunks of 16 (the last one padded)


def _vectors(rng: np.random.Generator, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(-300, 300, dim), rng.integers(-50, 50, dim)


@pytest.fixture(scope="module")
def honest(small_prover):
    rng = np.random.default_rng(1)
    x, e = _vectors(rng)
    secret, posted = commit_update(SMALL, CTX, x, e, rng)
    proof = small_prover.prove_update(secret, posted, R)
    return x, e, secret, posted, proof


def test_valid_proof_verifies_and_s_is_the_blinded_linear_form(small_prover, honest) -> None:
    x, e, secret, posted, proof = honest
    verify_update(small_prover.keys, SMALL, posted, proof, R)
    expected = (sum(pow(R, j + 1, P) * int(v) for j, v in enumerate((x + e).tolist())) + secret.t) % P
    assert proof.s == expected
    assert len(proof.chunks) == 3
    assert all(len(c.proof) == 256 for c in proof.chunks)


def test_commitment_hides_and_binds_context(rng) -> None:
    x, e = _vectors(rng)
    _, a = commit_update(SMALL, CTX, x, e, np.random.default_rng(5))
    _, b = commit_update(SMALL, CTX, x, e, np.random.default_rng(6))
    _, c = commit_update(SMALL, dataclasses.replace(CTX, round_id=8), x, e, np.random.default_rng(5))
    assert a.chunk_commits != b.chunk_commits  # fresh randomness: same vector, new commitment
    assert a.chunk_commits != c.chunk_commits  # same randomness, other round: other commitment
    assert a.digest() != b.digest()


LOOSE = dataclasses.replace(SMALL, bound2x=2**40, bound2e=2**40)  # same circuit: bounds are public


def _forge(spec, posted_ctx: int, y: list[int], rng: np.random.Generator) -> tuple[UpdateCommitment, dict]:
    """A malicious one-chunk witness for arbitrary field values y, consistent in every other
    constraint: commitment, running states, sums and s computed modulo p exactly as the circuit
    computes them, m the largest honest value. The circuit's private input is u = y + 2^(BY-1) mod p."""
    n, by = spec.chunk_size, spec.value_bits
    y = [v % P for v in y] + [0] * (n - len(y))
    u = [(v + (1 << (by - 1))) % P for v in y]
    per = 253 // by
    packed = [sum(u[q + i] * (1 << (by * i)) for i in range(min(per, n - q))) % P for q in range(0, n, per)]
    rho, t, salt0, salt1 = (int(v) for v in rng.integers(1, 2**62, 4))
    commit = commit_packed(posted_ctx, 0, rho, packed)
    state0 = running_state(posted_ctx, 0, 0, 0, t, salt0)
    sy = sum(v * v for v in y) % P
    h = 0
    for v in reversed(y):
        h = (h + v) * R % P
    state1 = running_state(posted_ctx, 1, sy, h, t, salt1)
    posted = UpdateCommitment(posted_ctx, n, (commit,), state0)
    s = (h + t) % P
    inp = dict(zip(PUBLIC_INPUTS, chunk_public_inputs(spec, posted, 0, state0, state1, R, s), strict=True))
    inp.update(u=u, rho=rho, syIn=0, linIn=0, t=t, saltIn=salt0, saltOut=salt1,
               m=math.isqrt(spec.bound2x * spec.bound2e))
    return posted, inp


def test_forged_witness_helper_is_consistent(small_prover, rng) -> None:
    """Control for the attacks below: the forging helper with in-range values proves and verifies."""
    posted, inp = _forge(LOOSE, CTX.element, [2**16 - 1, -(2**16), 5], rng)
    (proof,) = small_prover.prove_chunks([inp])
    s = inp["s"]
    verify_update(small_prover.keys, LOOSE, posted, UpdateProof(s, (ChunkProof(0, inp["stateOut"], proof),)), R)


@pytest.mark.parametrize("value", [2**16, -(2**16) - 1, 2**40])
def test_entry_out_of_range_fails_to_prove(small_prover, rng, value) -> None:
    """One past the 17-bit range of y (BY = max(16, 12) + 1) under bounds so loose that only the
    range check can stop it."""
    _posted, inp = _forge(LOOSE, CTX.element, [3, value, -7], rng)
    with pytest.raises(ProvingError):
        small_prover.prove_chunks([inp])


def test_field_wrapped_entry_with_a_small_norm_fails_to_prove(small_prover, rng) -> None:
    """y_0 = i * 1000 with i^2 = -1 in F_p and y_1 = 1000: the squares cancel (sum y^2 = 0 mod p),
    so the norm check alone would accept a huge entry; the range check rejects it."""
    i = pow(5, (P - 1) // 4, P)
    assert i * i % P == P - 1
    _posted, inp = _forge(SMALL, CTX.element, [i * 1000 % P, 1000], rng)
    off = 1 << (SMALL.value_bits - 1)
    assert sum((v - off) ** 2 for v in inp["u"]) % P == 0
    with pytest.raises(ProvingError):
        small_prover.prove_chunks([inp])


def test_entries_outside_their_own_widths_are_refused_by_the_honest_trainer(rng) -> None:
    """x and e keep their widths in the trainer's own check (the circuit checks y only)."""
    for field, index, value in (("x", 3, 2**15), ("x", 0, -(2**15) - 1), ("e", 17, 2**11)):
        x, e = _vectors(rng)
        (x if field == "x" else e)[index] = value
        with pytest.raises(DataError, match=field):
            commit_update(SMALL, CTX, x, e, rng)


def test_largest_entries_in_range_prove(small_prover, rng) -> None:
    spec = dataclasses.replace(SMALL, bound2x=2**40, bound2e=2**40)
    x, e = _vectors(rng, 16)
    x[0], x[1], e[0], e[1] = 2**15 - 1, -(2**15), 2**11 - 1, -(2**11)
    secret, posted = commit_update(spec, CTX, x, e, rng)
    # bounds are public inputs, so the same keys serve another bound
    from fedledger.zk.update import UpdateProver

    prover = UpdateProver(spec, small_prover.backend)
    verify_update(prover.keys, spec, posted, prover.prove_update(secret, posted, R), R)


def test_norm_over_bound_fails_to_prove(small_prover, rng) -> None:
    x, e = _vectors(rng)
    x[:], e[:] = 700, 0  # 40 * 700^2 = 19.6e6 > SMALL.bound2y = 17,324,554, every entry in range
    with pytest.raises(DataError, match="norm of x"):
        commit_update(SMALL, CTX, x, e, rng)
    secret, posted = commit_update(SMALL, CTX, x, e, rng, check=False)
    with pytest.raises(ProvingError):
        small_prover.prove_update(secret, posted, R)


def test_norm_exactly_at_bound_proves(small_prover, rng) -> None:
    x = np.zeros(DIM, dtype=np.int64)
    e = np.zeros(DIM, dtype=np.int64)
    x[:10] = 1000  # 10 * 1000^2 = 10,000,000 = bound2x
    e[:4] = 500  # 4 * 500^2 = 1,000,000 = bound2e
    secret, posted = commit_update(SMALL, CTX, x, e, rng)
    verify_update(small_prover.keys, SMALL, posted, small_prover.prove_update(secret, posted, R), R)


def _squares_summing_to(total: int, n: int) -> list[int]:
    """Greedy: n integers whose squares sum to exactly `total` (each step leaves < 2 sqrt(rest))."""
    out = []
    for _ in range(n):
        v = math.isqrt(total)
        out.append(v)
        total -= v * v
    assert total == 0
    return out


def test_folded_norm_at_the_bound_proves_and_one_over_fails(small_prover, rng) -> None:
    """The circuit's bound is bound2y = bound2x + bound2e + 2 isqrt(bound2x bound2e) on y = x + e:
    exactly at it a (malicious) witness proves, one over it does not."""
    assert SMALL.bound2y == 10_000_000 + 1_000_000 + 2 * 3_162_277
    at = _squares_summing_to(SMALL.bound2y, SMALL.chunk_size)
    _posted, inp = _forge(SMALL, CTX.element, at, rng)
    small_prover.prove_chunks([inp])
    over = _squares_summing_to(SMALL.bound2y + 1, SMALL.chunk_size)
    _, inp = _forge(SMALL, CTX.element, over, rng)
    with pytest.raises(ProvingError):
        small_prover.prove_chunks([inp])


def test_a_larger_m_cannot_loosen_the_folded_bound(small_prover, rng) -> None:
    """m is the prover's witness of floor(sqrt(bound2x bound2e)); a larger m would admit a larger
    norm, and fails m^2 <= bound2x bound2e."""
    over = _squares_summing_to(SMALL.bound2y + 2, SMALL.chunk_size)
    _, inp = _forge(SMALL, CTX.element, over, rng)
    inp["m"] += 1  # bound2x + bound2e + 2 (m + 1) = bound2y + 2 would now hold
    with pytest.raises(ProvingError):
        small_prover.prove_chunks([inp])


def test_noise_share_bound_is_folded_into_the_norm(small_prover, rng) -> None:
    """Deliberate: a noise share over its own bound but with ||x + e|| <= sqrt(bound2x) + sqrt(bound2e)
    proves. It moves the aggregate no further than a split that respects both bounds could,
    since e is the trainer's choice either way (docs/zk.md, "Where the constraints go")."""
    x = np.zeros(DIM, dtype=np.int64)
    e = np.zeros(DIM, dtype=np.int64)
    e[:8] = 500  # sum e^2 = 2,000,000 > bound2e = 1,000,000; sum y^2 = 2e6 <= bound2y
    with pytest.raises(DataError, match="noise"):
        commit_update(SMALL, CTX, x, e, rng)
    secret, posted = commit_update(SMALL, CTX, x, e, rng, check=False)
    verify_update(small_prover.keys, SMALL, posted, small_prover.prove_update(secret, posted, R), R)


def test_noise_norm_over_bound_fails_to_prove(small_prover, rng) -> None:
    """Noise far over its bound pushes y over the folded bound (40 * ~2000^2 > 17.3e6)."""
    x, e = _vectors(rng)
    e[:] = 2000  # in 12-bit range, 40 * 4e6 > 1e6
    secret, posted = commit_update(SMALL, CTX, x, e, rng, check=False)
    with pytest.raises(ProvingError):
        small_prover.prove_update(secret, posted, R)


def test_first_chunk_cannot_start_from_negative_norm(small_prover, rng) -> None:
    """A prover that posts an initial state with sum y^2 = -K (mod p) to pass the norm check."""
    x, e = _vectors(rng)
    x[:], e[:] = 700, 0
    secret, posted = commit_update(SMALL, CTX, x, e, rng, check=False)
    _, inputs, _ = chunk_witnesses(SMALL, secret, posted, R)
    forged = dict(inputs[0])
    forged["syIn"] = P - 10_000_000
    forged["stateIn"] = running_state(posted.ctx, 0, P - 10_000_000, 0, secret.t, secret.salts[0])
    with pytest.raises(ProvingError):
        small_prover.prove_chunks([forged])


def test_wrong_commitment_fails_to_verify(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    commits = list(posted.chunk_commits)
    commits[1] = (commits[1] + 1) % P
    bad = dataclasses.replace(posted, chunk_commits=tuple(commits))
    with pytest.raises(InvalidProof, match="chunk 1"):
        verify_update(small_prover.keys, SMALL, bad, proof, R)
    bad0 = dataclasses.replace(posted, state0=(posted.state0 + 1) % P)
    with pytest.raises(InvalidProof, match="chunk 0"):
        verify_update(small_prover.keys, SMALL, bad0, proof, R)


def test_commitment_to_other_vector_fails(small_prover, honest, rng) -> None:
    """Proving a vector other than the committed one: the prover cannot produce a witness."""
    x, _e, secret, posted, _ = honest
    other = dataclasses.replace(secret, x=x.copy())
    other.x[5] += 1
    with pytest.raises(ProvingError):
        small_prover.prove_update(other, posted, R)


def test_wrong_linear_check_value_fails_to_verify(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    for s in ((proof.s + 1) % P, 0):
        with pytest.raises(InvalidProof, match="chunk 2"):
            verify_update(small_prover.keys, SMALL, posted, dataclasses.replace(proof, s=s), R)


def test_other_challenge_fails_to_verify(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    with pytest.raises(InvalidProof):
        verify_update(small_prover.keys, SMALL, posted, proof, R + 1)


def test_chunk_from_another_member_or_round_fails(small_prover, honest) -> None:
    x, e, _, posted, proof = honest
    for other_ctx in (dataclasses.replace(CTX, member_id="member-2"), dataclasses.replace(CTX, round_id=8)):
        rng = np.random.default_rng(9)
        secret2, posted2 = commit_update(SMALL, other_ctx, x, e, rng)
        proof2 = small_prover.prove_update(secret2, posted2, R)
        verify_update(small_prover.keys, SMALL, posted2, proof2, R)
        # splice the other context's chunk 1 (with its states) into ours
        mixed = dataclasses.replace(proof, chunks=(proof.chunks[0], proof2.chunks[1], proof.chunks[2]))
        with pytest.raises(InvalidProof):
            verify_update(small_prover.keys, SMALL, posted, mixed, R)
        # and claim the other context's whole proof with our commitment
        with pytest.raises(InvalidProof, match="chunk 0"):
            verify_update(small_prover.keys, SMALL, posted, proof2, R)


def test_reordered_dropped_or_relabelled_chunks_fail(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    c0, c1, c2 = proof.chunks
    with pytest.raises(InvalidProof, match="expected 3"):
        verify_update(small_prover.keys, SMALL, posted, dataclasses.replace(proof, chunks=(c0, c2)), R)
    with pytest.raises(InvalidProof):
        verify_update(small_prover.keys, SMALL, posted, dataclasses.replace(proof, chunks=(c0, c2, c1)), R)
    relabelled = (c0, ChunkProof(1, c2.state_out, c1.proof), ChunkProof(2, c2.state_out, c2.proof))
    with pytest.raises(InvalidProof):
        verify_update(small_prover.keys, SMALL, posted, dataclasses.replace(proof, chunks=relabelled), R)


def test_tampered_proof_bytes_fail(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    raw = bytearray(proof.chunks[1].proof)
    raw[40] ^= 1
    chunks = (proof.chunks[0], dataclasses.replace(proof.chunks[1], proof=bytes(raw)), proof.chunks[2])
    with pytest.raises(IntegrityError):
        verify_update(small_prover.keys, SMALL, posted, dataclasses.replace(proof, chunks=chunks), R)
    short = (proof.chunks[0], dataclasses.replace(proof.chunks[1], proof=bytes(raw[:200])), proof.chunks[2])
    with pytest.raises(InvalidProof):
        verify_update(small_prover.keys, SMALL, posted, UpdateProof(proof.s, short), R)


def test_dimension_mismatch_fails(small_prover, honest) -> None:
    _, _, _, posted, proof = honest
    with pytest.raises(InvalidProof):
        verify_update(
            small_prover.keys, SMALL, UpdateCommitment(posted.ctx, 70, posted.chunk_commits, posted.state0), proof, R
        )


def test_bounds_are_enforced_by_the_verifier_not_the_prover(small_prover, honest) -> None:
    """A proof made against a looser bound does not verify under the task's bound."""
    x, e, _, _, _ = honest
    loose = dataclasses.replace(SMALL, bound2x=10**12)
    rng = np.random.default_rng(3)
    x2 = x.copy()
    x2[:] = 800  # 40 * ~800^2 > SMALL.bound2y
    secret, posted = commit_update(loose, CTX, x2, e, rng)
    from fedledger.zk.update import UpdateProver

    proof = UpdateProver(loose, small_prover.backend).prove_update(secret, posted, R)
    verify_update(small_prover.keys, loose, posted, proof, R)
    with pytest.raises(InvalidProof):
        verify_update(small_prover.keys, SMALL, posted, proof, R)


def test_signed_roundtrip() -> None:
    for v in (0, 1, -1, 2**200, -(2**200)):
        assert signed(v % P) == v


@pytest.mark.slow
def test_process_pool_prover_proves_in_parallel_and_reports_bad_witnesses(small_prover) -> None:
    from fedledger.zk.update import UpdateProver

    rng = np.random.default_rng(21)
    x, e = _vectors(rng)
    secret, posted = commit_update(SMALL, CTX, x, e, rng)
    with UpdateProver(SMALL, small_prover.backend, workers=2) as pool:
        proof = pool.prove_update(secret, posted, R)
        verify_update(small_prover.keys, SMALL, posted, proof, R)
        x[0] = 2**15
        bad_secret, bad_posted = commit_update(SMALL, CTX, x, e, rng, check=False)
        with pytest.raises(ProvingError):
            pool.prove_update(bad_secret, bad_posted, R)
