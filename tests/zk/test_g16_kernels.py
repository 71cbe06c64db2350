"""Correctness of the native Groth16 kernels (libfedg16.so, built from fedledger/zk/native/g16.cpp).

MSMs are checked against py_ecc: every base is a known multiple k_i of the generator, so the expected sum is
(sum s_i k_i mod r) times the generator, one py_ecc scalar multiplication. circom_h and the sparse
matrix-vector product are checked against plain Python integer arithmetic.
"""

from __future__ import annotations

import ctypes
import functools
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from py_ecc import optimized_bn128 as bn

from fedledger.zk.native.build import build
from fedledger.zk.native_groth16 import library

Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
MASK = (1 << 64) - 1
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to build the native kernels")


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The library the prover uses (built once per machine), with this module's own pointer-typed signatures."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(library()._name)
        vp, u64p, sz = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t
        lib.g16_g1_bases.restype = vp
        lib.g16_g1_bases.argtypes = [u64p, sz]
        lib.g16_g2_bases.restype = vp
        lib.g16_g2_bases.argtypes = [u64p, sz]
        lib.g16_free_bases.argtypes = [vp]
        lib.g16_bases_len.restype = sz
        lib.g16_bases_len.argtypes = [vp]
        lib.g16_msm_g1.argtypes = [vp, u64p, sz, sz, u64p]
        lib.g16_msm_g2.argtypes = [vp, u64p, sz, sz, u64p]
        lib.g16_circom_h.argtypes = [u64p, u64p, sz, u64p]
        lib.g16_libsnark_h.argtypes = [u64p, u64p, sz, u64p]
        lib.g16_sparse_matvec.argtypes = [
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(ctypes.c_uint32),
            u64p,
            sz,
            u64p,
            u64p,
        ]
        lib.g16_selftest.restype = ctypes.c_int
        _LIB = lib
    return _LIB


def _u64s(values: Sequence[int]) -> ctypes.Array:
    """Field elements (ints) as 4 little-endian u64 limbs each."""
    limbs = [(v >> (64 * k)) & MASK for v in values for k in range(4)]
    return (ctypes.c_uint64 * max(len(limbs), 1))(*limbs)


def _ints(buf: ctypes.Array, count: int) -> list[int]:
    return [sum(int(buf[4 * i + k]) << (64 * k) for k in range(4)) for i in range(count)]


def _g1_affine(p) -> tuple[int, int]:
    if bn.is_inf(p):
        return (0, 0)
    x, y = bn.normalize(p)
    return (int(x), int(y))


def _g2_affine(p) -> tuple[int, int, int, int]:
    if bn.is_inf(p):
        return (0, 0, 0, 0)
    x, y = bn.normalize(p)
    return (*(int(c) for c in x.coeffs), *(int(c) for c in y.coeffs))


@functools.cache
def _mult(group: int, k: int):
    return bn.multiply(bn.G1 if group == 1 else bn.G2, k)


def _points(group: int, mults: Sequence[int | None]) -> list:
    """k*G for each k (None = infinity). An arithmetic progression k_i = k_0 + i*d is built by additions."""
    ks = list(mults)
    if len(ks) > 8 and None not in ks and len({(ks[i + 1] - ks[i]) % R for i in range(len(ks) - 1)}) == 1:
        step = _mult(group, (ks[1] - ks[0]) % R)
        pts = [_mult(group, ks[0])]
        for _ in ks[1:]:
            pts.append(bn.add(pts[-1], step))
        return pts
    return [None if k is None else _mult(group, k) for k in ks]


def _msm(group: int, mults: Sequence[int | None], scalars: Sequence[int], offset: int = 0) -> tuple[int, ...]:
    """Run the native MSM over bases k*G (None = the point at infinity) and return the affine result."""
    lib = _lib()
    conv, width = (_g1_affine, 2) if group == 1 else (_g2_affine, 4)
    coords: list[int] = []
    for p in _points(group, mults):
        coords.extend([0] * width if p is None else conv(p))
    make = lib.g16_g1_bases if group == 1 else lib.g16_g2_bases
    handle = make(_u64s(coords), len(mults))
    try:
        assert lib.g16_bases_len(handle) == len(mults)
        out = (ctypes.c_uint64 * (4 * width))()
        run = lib.g16_msm_g1 if group == 1 else lib.g16_msm_g2
        run(handle, _u64s(scalars), offset, len(scalars), out)
        return tuple(_ints(out, width))
    finally:
        lib.g16_free_bases(handle)


def _expected(group: int, mults: Sequence[int | None], scalars: Sequence[int], offset: int = 0) -> tuple[int, ...]:
    gen, conv = (bn.G1, _g1_affine) if group == 1 else (bn.G2, _g2_affine)
    total = sum(s * (mults[offset + i] or 0) for i, s in enumerate(scalars)) % R
    return conv(bn.multiply(gen, total)) if total else conv(bn.Z1 if group == 1 else bn.Z2)


def _mixed_scalar(rnd: random.Random) -> int:
    kind = rnd.randrange(7)
    if kind == 0:
        return 0
    if kind == 1:
        return 1
    if kind == 2:
        return rnd.randrange(2, 1 << rnd.randrange(2, 41))
    if kind == 3:
        return R - rnd.randrange(1, 1 << 20)  # small negative
    if kind == 4:
        return R - 1
    return rnd.randrange(R)


def test_selftest() -> None:
    assert _lib().g16_selftest() == 0


@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_msm_mixed_scalars(group: int, n: int) -> None:
    rnd = random.Random(1000 * group + n)
    mults = [rnd.randrange(1, R) for _ in range(n)]
    scalars = [_mixed_scalar(rnd) for _ in range(n)]
    assert _msm(group, mults, scalars) == _expected(group, mults, scalars)


@pytest.mark.parametrize("group", [1, 2])
def test_msm_full_scalars_many_points(group: int) -> None:
    # enough points for wide windows, so the batched-affine buckets (>= 128 buckets) are exercised
    rnd = random.Random(77 + group)
    n = 2000 if group == 1 else 600
    base = rnd.randrange(1, R)
    mults = [(base * (i + 1)) % R for i in range(n)]
    scalars = [rnd.randrange(R) for _ in range(n)]
    assert _msm(group, mults, scalars) == _expected(group, mults, scalars)


@pytest.mark.parametrize("group", [1, 2])
def test_msm_repeated_bases_collide_in_buckets(group: int) -> None:
    # the same point many times with the same scalar: every addition lands in one bucket (doublings,
    # collisions within a batch, P + (-P)), plus pairs that cancel exactly
    rnd = random.Random(5 + group)
    k = rnd.randrange(1, R)
    s = rnd.randrange(R)
    n = 1500
    mults = [k] * n
    scalars = [s] * (n - 2) + [s, R - s]
    assert _msm(group, mults, scalars) == _expected(group, mults, scalars)
    small = [3] * n
    assert _msm(group, mults, small) == _expected(group, mults, small)


@pytest.mark.parametrize("group", [1, 2])
def test_msm_infinity_inputs_and_result(group: int) -> None:
    rnd = random.Random(11 + group)
    k = rnd.randrange(1, R)
    s = rnd.randrange(2, R)
    inf = (0,) * (2 if group == 1 else 4)
    # s*P + (r-s)*P = 0
    assert _msm(group, [k, k], [s, R - s]) == inf
    # infinity bases contribute nothing, whatever the scalar
    mults = [None, k, None, (2 * k) % R]
    scalars = [s, 5, R - 1, 1]
    assert _msm(group, mults, scalars) == _expected(group, [0, k, 0, (2 * k) % R], scalars)
    # all-zero scalars and an empty range give infinity
    assert _msm(group, [k, k], [0, 0]) == inf
    assert _msm(group, [k], []) == inf


@pytest.mark.parametrize("group", [1, 2])
def test_msm_offset(group: int) -> None:
    rnd = random.Random(21 + group)
    mults = [rnd.randrange(1, R) for _ in range(10)]
    scalars = [rnd.randrange(R) for _ in range(4)]
    assert _msm(group, mults, scalars, offset=5) == _expected(group, mults, scalars, offset=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(1, R - 1),
            st.one_of(
                st.integers(0, 3), st.integers(0, (1 << 40) - 1), st.integers(R - 1000, R - 1), st.integers(0, R - 1)
            ),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_msm_g1_hypothesis(pairs: list[tuple[int, int]]) -> None:
    mults = [m for m, _ in pairs]
    scalars = [s for _, s in pairs]
    assert _msm(1, mults, scalars) == _expected(1, mults, scalars)


# ---------------------------------------------------------------------------------------------- circom_h


def _root(order: int) -> int:
    return pow(5, (R - 1) // order, R)


def _ntt(vals: list[int], w: int) -> list[int]:
    n = len(vals)
    powers = [pow(w, k, R) for k in range(n)]
    return [sum(v * powers[i * j % n] for j, v in enumerate(vals)) % R for i in range(n)]


def _circom_h_ref(a: list[int], b: list[int]) -> list[int]:
    n = len(a)
    w = _root(n)
    w_inv = pow(w, R - 2, R)
    n_inv = pow(n, R - 2, R)
    g = _root(2 * n)
    c = [x * y % R for x, y in zip(a, b, strict=True)]

    def coset(evals: list[int]) -> list[int]:
        coeffs = [v * n_inv % R for v in _ntt(evals, w_inv)]
        return _ntt([v * pow(g, j, R) % R for j, v in enumerate(coeffs)], w)

    a2, b2, c2 = coset(a), coset(b), coset(c)
    return [(x * y - z) % R for x, y, z in zip(a2, b2, c2, strict=True)]


def _reduce(a: list[int], b: list[int], kernel: str = "g16_circom_h") -> list[int]:
    n = len(a)
    out = (ctypes.c_uint64 * (4 * n))()
    abuf, bbuf = _u64s(a), _u64s(b)
    before = (list(abuf), list(bbuf))
    getattr(_lib(), kernel)(abuf, bbuf, n, out)
    assert (list(abuf), list(bbuf)) == before  # inputs untouched
    return _ints(out, n)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 128])
def test_circom_h_matches_reference(n: int) -> None:
    rnd = random.Random(n)
    a = [rnd.randrange(R) for _ in range(n)]
    b = [rnd.choice([0, 1, R - 1, rnd.randrange(R)]) for _ in range(n)]
    assert _reduce(a, b) == _circom_h_ref(a, b)


def test_circom_h_is_quotient_on_coset() -> None:
    # Polynomial view, independent of the transforms: with A, B, C interpolating a, b, c = a.b on the domain,
    # A.B - C = H.(x^n - 1) exactly, and h_i = H(g w^i) (g^n - 1), g the 2n-th root (so g^n - 1 = -2).
    n = 16
    rnd = random.Random(3)
    a = [rnd.randrange(R) for _ in range(n)]
    b = [rnd.randrange(R) for _ in range(n)]
    c = [x * y % R for x, y in zip(a, b, strict=True)]
    w, g = _root(n), _root(2 * n)
    n_inv = pow(n, R - 2, R)

    def interpolate(evals: list[int]) -> list[int]:
        return [v * n_inv % R for v in _ntt(evals, pow(w, R - 2, R))]

    pa, pb, pc = interpolate(a), interpolate(b), interpolate(c)
    prod = [0] * (2 * n - 1)
    for i, x in enumerate(pa):
        for j, y in enumerate(pb):
            prod[i + j] = (prod[i + j] + x * y) % R
    num = [(v - (pc[k] if k < n else 0)) % R for k, v in enumerate(prod)]
    # divide by x^n - 1: num_m = H_{m-n} - H_m, so H_k = num_{k+n} (deg H <= n-2); the remainder must vanish
    quo = [num[k + n] for k in range(n - 1)]
    rem = [(num[k] + (quo[k] if k < n - 1 else 0)) % R for k in range(n)]
    assert rem == [0] * n
    zg = (pow(g, n, R) - 1) % R
    assert zg == R - 2
    expected = [sum(q * pow(g * pow(w, i, R), k, R) for k, q in enumerate(quo)) * zg % R for i in range(n)]
    assert _reduce(a, b) == expected
    # the libsnark reduction (groth16py's own keys) returns the quotient itself, as n coefficients
    assert _reduce(a, b, "g16_libsnark_h") == [*quo, 0]


def _barycentric(vals: list[int], shift: int, z: int) -> int:
    """P(z) for the P of degree < n with P(shift * w^i) = vals[i], w the n-th root of unity."""
    n = len(vals)
    w, sn = _root(n), pow(shift, n, R)
    x, total = shift, 0
    for v in vals:
        total += v * x * pow(z - x, R - 2, R)
        x = x * w % R
    return (pow(z, n, R) - sn) * pow(n * sn, R - 2, R) * total % R


def test_circom_h_large_domain_at_random_point() -> None:
    # n = 4096, too large for the quadratic reference: check A(z)B(z) - C(z) = H(z)(z^n - 1) at a random z,
    # with H read off h on the coset (h_i = H(g w^i)(g^n - 1)) by barycentric interpolation
    n = 4096
    rnd = random.Random(4096)
    a = [rnd.randrange(R) for _ in range(n)]
    b = [rnd.choice([0, 1, rnd.randrange(1 << 34), rnd.randrange(R)]) for _ in range(n)]
    c = [x * y % R for x, y in zip(a, b, strict=True)]
    h = _reduce(a, b)
    z = rnd.randrange(R)
    g = _root(2 * n)
    lhs = (_barycentric(a, 1, z) * _barycentric(b, 1, z) - _barycentric(c, 1, z)) % R
    h_z = _barycentric(h, g, z) * pow(pow(g, n, R) - 1, R - 2, R) % R
    assert lhs == h_z * (pow(z, n, R) - 1) % R
    assert lhs != 0


# ---------------------------------------------------------------------------------------------- matvec


def test_sparse_matvec_matches_python() -> None:
    rnd = random.Random(9)
    rows, ncols = 50, 37
    row_ptr = [0]
    cols: list[int] = []
    coeffs: list[int] = []
    for i in range(rows):
        k = 0 if i % 7 == 0 else rnd.randrange(1, 9)
        for c in rnd.sample(range(ncols), k):
            cols.append(c)
            coeffs.append(rnd.choice([1, 2, R - 1, rnd.randrange(R)]))
        row_ptr.append(len(cols))
    w = [rnd.choice([0, 1, rnd.randrange(R)]) for _ in range(ncols)]
    out = (ctypes.c_uint64 * (4 * rows))()
    rp = (ctypes.c_uint32 * len(row_ptr))(*row_ptr)
    cs = (ctypes.c_uint32 * max(len(cols), 1))(*cols)
    _lib().g16_sparse_matvec(rp, cs, _u64s(coeffs), rows, _u64s(w), out)
    expected = [sum(coeffs[k] * w[cols[k]] for k in range(row_ptr[i], row_ptr[i + 1])) % R for i in range(rows)]
    assert _ints(out, rows) == expected


# ---------------------------------------------------------------------------------------------- build


def test_build_reuses_a_library_newer_than_the_source() -> None:
    lib = Path(library()._name)
    stamp = lib.stat().st_mtime_ns
    assert build(lib.parent) == lib
    assert lib.stat().st_mtime_ns == stamp


def test_build_without_gxx_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedledger.zk.native.build as native_build

    monkeypatch.setattr(native_build.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"g\+\+ is not installed"):
        native_build.build(tmp_path)
    assert not (tmp_path / "libfedg16.so").exists()
