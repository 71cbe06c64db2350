"""Where the update circuit's constraints go, and the chunk plan that fills the prover's FFT domain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zk_support import SMALL

from fedledger.zk.backend import CIRCUIT_DIR
from fedledger.zk.poseidon import circomlib_dir
from fedledger.zk.update import (
    MAX_CHUNK,
    ProofContext,
    UpdateProver,
    UpdateSpec,
    commit_update,
    constraint_breakdown,
    constraint_breakdown_before,
    domain_size,
    modeled_chunk_seconds,
    plan_chunk,
    verify_update,
)

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

ROOT = Path(__file__).resolve().parents[2]
CIRCOM = ROOT / ".cache" / "zk-node" / "node_modules" / ".bin" / "circom2"


def _r1cs_constraints(path: Path) -> int:
    """nConstraints from the header section of a circom .r1cs file (iden3 binary format)."""
    data = path.read_bytes()
    assert data[:4] == b"r1cs"
    pos, n_sections = 12, int.from_bytes(data[8:12], "little")
    for _ in range(n_sections):
        kind = int.from_bytes(data[pos : pos + 4], "little")
        size = int.from_bytes(data[pos + 4 : pos + 12], "little")
        body = data[pos + 12 : pos + 12 + size]
        if kind == 1:  # header: field size, prime, nWires, nPubOut, nPubIn, nPrvIn, nLabels, nConstraints
            fs = int.from_bytes(body[:4], "little")
            return int.from_bytes(body[4 + fs + 24 : 4 + fs + 28], "little")
        pos += 12 + size
    raise AssertionError("no header section")


@pytest.mark.slow
@pytest.mark.skipif(not CIRCOM.exists(), reason="needs circom2 in .cache/zk-node (see docs/zk.md)")
@pytest.mark.parametrize(
    "spec", [SMALL, UpdateSpec(chunk_size=100, entry_bits=11, noise_bits=7), UpdateSpec(chunk_size=300)]
)
def test_breakdown_is_the_compilers_count(spec, tmp_path) -> None:
    work = tmp_path / "build"
    (work / "lib").mkdir(parents=True)
    for f in CIRCUIT_DIR.glob("*.circom"):
        shutil.copy(f, work)
    for f in Path(circomlib_dir()).glob("*.circom"):
        shutil.copy(f, work / "lib")
    (work / "main.circom").write_text(spec.circuit.main)
    subprocess.run([str(CIRCOM), "main.circom", "--r1cs", "--O2", "-l", "lib", "-l", ".", "-o", "."],
                   cwd=work, check=True, capture_output=True, timeout=600)
    assert _r1cs_constraints(work / "main.r1cs") == constraint_breakdown(spec)["total"]


def test_one_range_check_per_entry_and_the_commitment_is_packed() -> None:
    spec = UpdateSpec(chunk_size=4096)  # entry 16 bits, noise 12 bits: y = x + e in 17 bits
    b = constraint_breakdown(spec)
    per_entry = {k: b[k] / 4096 for k in ("range_y", "squares", "linear_form", "commitment")}
    assert spec.value_bits == 17 and per_entry["range_y"] == 17 and per_entry["squares"] == 1
    assert "range_x" not in b and "range_e" not in b  # one range check per entry, not two
    assert per_entry["linear_form"] < 1.01  # one Horner step per entry, no powers of r recomputed
    assert per_entry["commitment"] < 3.0  # 14 entries per hashed field element, not one
    assert b["total"] == sum(v for k, v in b.items() if k not in ("total", "per_entry_x1000"))
    assert b["total"] / 4096 < 22.25 < 36 < constraint_breakdown_before(spec)["total"] / 4096


def test_the_commitment_is_one_sponge_with_no_head_hash() -> None:
    """(TAG_COMMIT, ctx, k, rho) are absorbed by the sponge's first block and the last block is unpadded: the
    commitment costs less than the sponge plus Poseidon(4) head of the previous circuit at every chunk size
    the planner picks, and is exactly the sponge of (ctx, k, rho, packed) by the off-circuit function."""
    from fedledger.zk.poseidon import sponge
    from fedledger.zk.update import TAG_COMMIT, _padded_sponge_constraints, _poseidon_constraints, commit_packed

    for n in (16, 512, 1024, 2731, 4096, 5462, 5556, 8192):
        spec = UpdateSpec(chunk_size=n)
        npy = -(-n // (253 // spec.value_bits))
        assert constraint_breakdown(spec)["commitment"] < _padded_sponge_constraints(npy) + _poseidon_constraints(4, 1)
    assert commit_packed(5, 2, 9, [1, 2]) == sponge(TAG_COMMIT, [5, 2, 9, 1, 2])
    assert commit_packed(5, 2, 9, [1, 2]) not in (commit_packed(5, 3, 9, [1, 2]), commit_packed(6, 2, 9, [1, 2]),
                                                   commit_packed(5, 2, 8, [1, 2]))


def test_entry_wires_hold_small_non_negative_values(small_prover, rng) -> None:
    """The circuit's private input is u = y + 2^(BY-1): the wires of an entry (u and its bits) stay below 2^BY
    even for negative entries, so no entry wire is a full-size field element in the prover's MSMs."""
    from fedledger.zk.update import chunk_witnesses, update_signals

    assert small_prover.native
    plan = small_prover._plan
    x = -np.arange(1, SMALL.chunk_size + 1)  # every entry negative
    secret, posted = commit_update(SMALL, ProofContext("t", 1, "neg"), x, np.zeros_like(x), rng)
    _, (inp,), _ = chunk_witnesses(SMALL, secret, posted, 5)
    wires = dict(zip(plan.names, plan.witness(update_signals(SMALL, inp))[1:], strict=True))
    entry = {nm: v for nm, v in wires.items() if nm.startswith(("main.u[", "main.ry["))}
    assert len(entry) >= SMALL.chunk_size * SMALL.value_bits
    assert all(0 <= v < 2**SMALL.value_bits for v in entry.values())
    assert not any(nm.startswith("main.y[") for nm in plan.names)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 200_000), workers=st.integers(1, 4))
def test_plan_is_never_worse_than_the_fixed_chunk_sizes(dim, workers) -> None:
    n = plan_chunk(dim, workers)
    assert 1 <= n <= MAX_CHUNK
    spec = UpdateSpec(chunk_size=n)
    assert domain_size(spec) >= constraint_breakdown(spec)["total"] + 13
    assert domain_size(spec) & (domain_size(spec) - 1) == 0

    def waves(s: UpdateSpec) -> float:
        return -(-s.n_chunks(dim) // workers) * modeled_chunk_seconds(s)

    for fixed in (1024, 4096):
        assert waves(spec) <= waves(UpdateSpec(chunk_size=fixed)) + 1e-9


def test_plan_fills_the_domain_for_large_updates() -> None:
    n = plan_chunk(100_000, 2)
    spec = UpdateSpec(chunk_size=n)
    assert spec.n_chunks(100_000) % 2 == 0  # both provers busy to the end
    assert constraint_breakdown(spec)["total"] > 0.9 * domain_size(spec)


def test_parallel_prover_proofs_verify_and_match_the_statement(small_prover, rng) -> None:
    x, e = rng.integers(-300, 300, 5 * SMALL.chunk_size - 3), rng.integers(-50, 50, 5 * SMALL.chunk_size - 3)
    secret, posted = commit_update(SMALL, ProofContext("t", 2, "m"), x, e, rng)
    with UpdateProver(SMALL, small_prover.backend, workers=2) as pool:
        proof = pool.prove_update(secret, posted, 777)
    verify_update(small_prover.keys, SMALL, posted, proof, 777)
    assert [c.index for c in proof.chunks] == list(range(5))
    one = small_prover.prove_update(secret, posted, 777)
    assert one.s == proof.s and [c.state_out for c in one.chunks] == [c.state_out for c in proof.chunks]
    assert np.all([len(c.proof) == 256 for c in proof.chunks])


@pytest.mark.skipif(not CIRCOM.exists(), reason="needs circom2 in .cache/zk-node (see docs/zk.md)")
def test_native_witness_path_matches_the_interpreter(small_prover, rng) -> None:
    """The native witness (wire layout from circom2, values from update_signals) proves the same
    statement as groth16py's wasm interpreter: both proofs verify, with the same s and states."""
    from fedledger.zk.witness import PLAN_FILE

    assert small_prover.native and (small_prover.keys.directory / PLAN_FILE).exists()
    x, e = rng.integers(-300, 300, 2 * SMALL.chunk_size - 5), rng.integers(-50, 50, 2 * SMALL.chunk_size - 5)
    secret, posted = commit_update(SMALL, ProofContext("t", 3, "m"), x, e, rng)
    native = small_prover.prove_update(secret, posted, 4242)
    with UpdateProver(SMALL, small_prover.backend, native=False) as wasm:
        assert not wasm.native
        interp = wasm.prove_update(secret, posted, 4242)
    for proof in (native, interp):
        verify_update(small_prover.keys, SMALL, posted, proof, 4242)
    assert native.s == interp.s and [c.state_out for c in native.chunks] == [c.state_out for c in interp.chunks]


def test_many_updates_in_flight_on_one_prover(small_prover, rng) -> None:
    """submit_update: every member's update submitted before any is collected (the simulation's batch) gives the
    same proofs as one at a time; a member's bad witness fails its own future only, and the prover's CPU counter
    grows with the work."""
    from fedledger.zk.errors import ProvingError

    jobs = []
    for i in range(4):
        x, e = rng.integers(-300, 300, 2 * SMALL.chunk_size - i), rng.integers(-50, 50, 2 * SMALL.chunk_size - i)
        jobs.append(commit_update(SMALL, ProofContext("t", 4, f"m{i}"), x, e, rng))
    bad_x = rng.integers(-300, 300, SMALL.chunk_size)
    bad_x[3] = 2**20  # outside the 17-bit range of y
    bad = commit_update(SMALL, ProofContext("t", 4, "cheat"), bad_x, np.zeros_like(bad_x), rng, check=False)
    with UpdateProver(SMALL, small_prover.backend, workers=2) as prover:
        c0 = prover.cpu_seconds
        pending = [prover.submit_update(s, p, 99) for s, p in [*jobs[:2], bad, *jobs[2:]]]
        proofs = [f.result() for i, f in enumerate(pending) if i != 2]
        with pytest.raises(ProvingError):
            pending[2].result()
        assert prover.cpu_seconds > c0
    for (secret, posted), proof in zip(jobs, proofs, strict=True):
        verify_update(small_prover.keys, SMALL, posted, proof, 99)
        assert proof.s == small_prover.prove_update(secret, posted, 99).s


def test_task_chunks_are_planned_for_the_least_cpu_per_update() -> None:
    """spec_for: a 1,024-entry update is one chunk, cheaper in modeled CPU than two halves."""
    one, two = UpdateSpec(chunk_size=plan_chunk(1024, 1)), UpdateSpec(chunk_size=plan_chunk(1024, 2))
    assert one.n_chunks(1024) == 1 and two.n_chunks(1024) == 2
    assert modeled_chunk_seconds(one) < 2 * modeled_chunk_seconds(two)
