"""Our native Groth16 prover: its proofs verify under groth16py's keys, equal a slow reference computed
independently (py_ecc and Python integers) byte for byte, are randomized, and a bad witness never leaves
the prover."""

from __future__ import annotations

import itertools
import warnings

import groth16py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from py_ecc.optimized_bn128 import FQ, FQ2, Z1, Z2, add, multiply, neg, normalize
from zk_support import SMALL

from fedledger.core.errors import ConfigError
from fedledger.zk.backend import DevelopmentSetupWarning, prove_native_checked
from fedledger.zk.errors import ProvingError
from fedledger.zk.field import P
from fedledger.zk.native_groth16 import NativeGroth16, from_limbs, read_proving_key
from fedledger.zk.update import (
    ProofContext,
    UpdateProver,
    chunk_witnesses,
    commit_update,
    update_signals,
    verify_update,
)

CHAIN = """pragma circom 2.0.0;
template Chain(n) {
    signal input x[n];
    signal input k;
    signal input c;
    signal output o;
    signal acc[n + 1];
    acc[0] <== k;
    for (var i = 0; i < n; i++) { acc[i + 1] <== acc[i] * x[i] + 3 * c; }
    o <== acc[n] - 7 * x[0];
}
component main {public [k, c]} = Chain(5);
"""


@pytest.fixture(scope="module")
def chain_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    (d / "chain.circom").write_text(CHAIN)
    pk, vk = groth16py.setup_circom(str(d / "chain.circom"))
    pk.save(str(d / "pk.bin"))
    return d / "pk.bin", groth16py.Verifier(vk)


def _chain_wires(x: list[int], k: int, c: int) -> tuple[list[int], list[int]]:
    """Wire order of circom: 1, outputs, public inputs, private inputs, then the other signals (acc[n] is
    folded into o by the compiler: o's constraint is linear in it)."""
    acc = [k]
    for xi in x:
        acc.append((acc[-1] * xi + 3 * c) % P)
    out = (acc[-1] - 7 * x[0]) % P
    return [1, out, k, c, *x, *acc[1:-1]], [out, k, c]


# -- the reference: Groth16 over arkworks' libsnark reduction, written out with py_ecc ------------------


def _g1(row: np.ndarray):
    x, y = from_limbs(row.reshape(2, 4))
    return Z1 if x == y == 0 else (FQ(x), FQ(y), FQ(1))


def _g2(row: np.ndarray):
    v = from_limbs(row.reshape(4, 4))
    return Z2 if not any(v) else (FQ2(v[:2]), FQ2(v[2:]), FQ2.one())


def _msm(points, scalars, conv):
    acc = Z1 if conv is _g1 else Z2
    for pt, sc in zip(points, scalars, strict=False):
        if sc % P:
            acc = add(acc, multiply(conv(pt), sc % P))
    return acc


def _dft(v: list[int], w: int) -> list[int]:
    return [sum(x * pow(w, i * j, P) for j, x in enumerate(v)) % P for i in range(len(v))]


def _reference_h(a: list[int], b: list[int], n: int) -> list[int]:
    """arkworks' LibsnarkReduction: (A·B − C)/Z on the coset g·D (g = 5), back to coefficients."""
    w, g = pow(5, (P - 1) // n, P), 5
    inv = lambda v: pow(v, P - 2, P)  # noqa: E731

    def on_coset(v):
        coeffs = [x * inv(n) % P for x in _dft(v, inv(w))]
        return _dft([x * pow(g, i, P) % P for i, x in enumerate(coeffs)], w)

    c = [x * y % P for x, y in zip(a, b, strict=True)]
    za = inv((pow(g, n, P) - 1) % P)
    quotient = [(x * y - z) * za % P for x, y, z in zip(on_coset(a), on_coset(b), on_coset(c), strict=True)]
    coeffs = [x * inv(n) % P for x in _dft(quotient, inv(w))]
    return [x * inv(pow(g, i, P)) % P for i, x in enumerate(coeffs)]


def _reference_proof(key, wires: list[int], r: int, s: int) -> bytes:
    n, ninp = key.domain_size, key.n_public + 1

    def rows(csr):
        ptr, cols, co = csr
        return [
            sum(wires[int(j)] * cf for j, cf in zip(cols[lo:hi], from_limbs(co[lo:hi]), strict=True)) % P
            for lo, hi in itertools.pairwise(ptr)
        ]

    a = rows(key.a_rows) + wires[:ninp] + [0] * (n - key.n_constraints - ninp)
    b = rows(key.b_rows) + [0] * (n - key.n_constraints)
    h = _reference_h(a, b, n)[: len(key.h_query)]
    pi_a = add(add(_g1(key.alpha_g1), _msm(key.a_query, wires, _g1)), multiply(_g1(key.delta_g1), r))
    pi_b = add(add(_g2(key.beta_g2), _msm(key.b_g2_query, wires, _g2)), multiply(_g2(key.delta_g2), s))
    b1 = add(add(_g1(key.beta_g1), _msm(key.b_g1_query, wires, _g1)), multiply(_g1(key.delta_g1), s))
    pi_c = add(_msm(key.l_query, wires[ninp:], _g1), _msm(key.h_query, h, _g1))
    pi_c = add(add(add(pi_c, multiply(pi_a, s)), multiply(b1, r)), neg(multiply(_g1(key.delta_g1), r * s % P)))
    (ax, ay), (bx, by), (cx, cy) = normalize(pi_a), normalize(pi_b), normalize(pi_c)
    words = [ax.n, ay.n, bx.coeffs[1], bx.coeffs[0], by.coeffs[1], by.coeffs[0], cx.n, cy.n]
    return b"".join(int(v).to_bytes(32, "big") for v in words)


# -- tests --------------------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    x=st.lists(st.integers(0, P - 1), min_size=5, max_size=5),
    k=st.integers(0, P - 1),
    c=st.sampled_from([0, 1, 2**64 + 5, P - 1]),
    r=st.integers(1, P - 1),
    s=st.integers(1, P - 1),
)
def test_native_proof_equals_the_reference_byte_for_byte_and_verifies(chain_key, x, k, c, r, s) -> None:
    path, verifier = chain_key
    key = read_proving_key(path)
    prover = NativeGroth16(key)
    wires, public = _chain_wires(x, k, c)
    proof = prover.prove(wires, r=r, s=s)
    assert proof == _reference_proof(key, wires, r, s)
    assert verifier.verify(proof, public) is True


def test_proofs_take_fresh_randomness_and_all_verify(chain_key) -> None:
    path, verifier = chain_key
    prover = NativeGroth16.load(path)
    wires, public = _chain_wires([3, 1, 4, 1, 5], 9, 2)
    proofs = {prover.prove(wires) for _ in range(3)}
    assert len(proofs) == 3  # r and s from the OS: no two proofs of one witness alike
    assert all(verifier.verify(p, public) is True for p in proofs)


def test_a_witness_that_breaks_a_constraint_does_not_leave_the_prover(backend) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        keys = backend.keys(SMALL.circuit)
        prover = UpdateProver(SMALL, backend, engine="native")
    rng = np.random.default_rng(7)
    x, e = rng.integers(-50, 50, 16), rng.integers(-5, 5, 16)
    secret, posted = commit_update(SMALL, ProofContext("task", 1, "m"), x, e, rng)
    _, inputs, _ = chunk_witnesses(SMALL, secret, posted, 777)
    wires = prover._plan.witness(update_signals(SMALL, inputs[0]))
    assert prove_native_checked(keys, inputs[0], wires)
    tampered = list(wires)
    tampered[-1] = (tampered[-1] + 1) % P
    with pytest.raises(ProvingError, match="does not satisfy"):
        prove_native_checked(keys, inputs[0], tampered)
    with pytest.raises(ConfigError, match="wires"):
        keys.native_prover.prove(wires[:-1])
    prover.close()


def test_both_provers_prove_the_same_update_and_native_is_the_default(backend) -> None:
    rng = np.random.default_rng(11)
    x, e = rng.integers(-90, 90, 40), rng.integers(-9, 9, 40)
    secret, posted = commit_update(SMALL, ProofContext("task", 2, "m"), x, e, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        keys = backend.keys(SMALL.circuit)
        provers = {e: UpdateProver(SMALL, backend, engine=e) for e in ("native", "groth16py")}
        default = UpdateProver(SMALL, backend)
    assert default.engine == "native"
    proofs = {e: p.prove_update(secret, posted, 31337) for e, p in provers.items()}
    for proof in proofs.values():
        verify_update(keys, SMALL, posted, proof, 31337)
    assert proofs["native"].s == proofs["groth16py"].s
    assert [c.state_out for c in proofs["native"].chunks] == [c.state_out for c in proofs["groth16py"].chunks]
    for p in (*provers.values(), default):
        p.close()


def test_a_damaged_key_file_is_refused_in_one_line(chain_key, tmp_path) -> None:
    path, _ = chain_key
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[: len(data) // 2])
    (tmp_path / "other.bin").write_bytes(b"not a key" + data)
    with pytest.raises(ConfigError, match="truncated"):
        read_proving_key(tmp_path / "short.bin")
    with pytest.raises(ConfigError, match="not a groth16py proving key"):
        read_proving_key(tmp_path / "other.bin")
    with pytest.raises(ConfigError, match="unknown prover"):
        UpdateProver(SMALL, engine="rapid")


def test_without_a_compiler_the_default_falls_back_to_groth16py_and_says_so(backend, monkeypatch) -> None:
    def no_compiler(cls, path):
        raise ConfigError("native Groth16 prover unavailable: g++ is not installed")

    monkeypatch.setattr(NativeGroth16, "load", classmethod(no_compiler))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevelopmentSetupWarning)
        with pytest.warns(RuntimeWarning, match="g\\+\\+ is not installed; proving with groth16py"):
            fallback = UpdateProver(SMALL, backend)
        with pytest.raises(ConfigError, match="g\\+\\+ is not installed"):
            UpdateProver(SMALL, backend, engine="native")
    assert fallback.engine == "groth16py"
    rng = np.random.default_rng(5)
    x, e = rng.integers(-90, 90, 40), rng.integers(-9, 9, 40)
    secret, posted = commit_update(SMALL, ProofContext("task", 3, "m"), x, e, rng)
    verify_update(fallback.keys, SMALL, posted, fallback.prove_update(secret, posted, 99), 99)
    fallback.close()
