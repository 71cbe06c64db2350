"""A Groth16 prover in our own native code, over groth16py's proving key.

groth16py 0.2.0 proves on one thread with a generic x86-64 build of arkworks, and nothing faster can be
installed here (crates.io is not reachable, so arkworks cannot be rebuilt; no rapidsnark on PyPI or npm). The
prover's work is five multi-scalar multiplications and seven FFTs over the proving key; `native/g16.cpp` does
them (Montgomery arithmetic with mulx/adx, Pippenger with the witness's zeros, bits and small values
handled apart), built once per machine with g++. This module reads the key groth16py wrote (`pk.bin`), runs
the reduction arkworks' prover runs for that key, and assembles the proof in the Ethereum layout, so a proof
from here verifies under the same verifying key, on chain included. Randomness (r, s) comes from the OS.

Key file (groth16py's `ProvingKey.save`, arkworks `CanonicalSerialize`, uncompressed, little-endian): the
magic `g16pk1`; the verifying key (alpha_g1, beta_g2, gamma_g2, delta_g2, gamma_abc_g1); beta_g1, delta_g1;
the a, b_g1, b_g2, h and l queries (each a u64 length, then points); an optional `.wasm`; then the circuit,
in one of two forms after a flag byte. 0 (groth16py's own setup): the number of wires, of public inputs and
of constraints, then per constraint the A, B and C rows (a u64 count, then (u64 wire, 32-byte coefficient)
terms). 1 (a `.zkey` import): the number of instance variables, of witness variables and of constraints,
then arkworks' A, B and C matrices (a u64 row count, then per row a u64 count and (32-byte coefficient,
u64 wire) terms; C is empty). A point's last coordinate carries arkworks' flags in its two
top bits (bit 254: infinity). The h query has domain size − 1 points for arkworks' libsnark reduction
(groth16py's own setup) and domain size points for the circom reduction (keys imported from a snarkjs
`.zkey`); the prover follows the key.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedledger.core.errors import ConfigError
from fedledger.zk.field import P

MAGIC = b"g16pk1"
CSR = tuple[np.ndarray, np.ndarray, np.ndarray]  # row_ptr (u32), cols (u32), coeffs (nnz, 4) u64
_FLAG_BITS = np.uint64(3 << 62)
_INFINITY_BIT = np.uint64(1 << 62)


@dataclass(frozen=True)
class ProvingKeyFile:
    """The arrays of one proving key, as the native prover takes them (standard form, little-endian limbs)."""

    alpha_g1: np.ndarray  # (8,) u64: x, y
    beta_g1: np.ndarray
    delta_g1: np.ndarray
    beta_g2: np.ndarray  # (16,) u64: x.c0, x.c1, y.c0, y.c1
    delta_g2: np.ndarray
    a_query: np.ndarray  # (wires, 8)
    b_g1_query: np.ndarray
    b_g2_query: np.ndarray  # (wires, 16)
    h_query: np.ndarray
    l_query: np.ndarray  # (private wires, 8)
    n_wires: int
    n_public: int
    n_constraints: int
    a_rows: CSR
    b_rows: CSR

    @property
    def domain_size(self) -> int:
        need = self.n_constraints + self.n_public + 1
        return 1 << (need - 1).bit_length()

    @property
    def circom_reduction(self) -> bool:
        """Whether the key's h query is the circom (snarkjs) one: domain-size points on the odd coset."""
        return len(self.h_query) == self.domain_size


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> int:
        start = self.pos
        self.pos += n
        if self.pos > len(self.data):
            raise ConfigError(f"{self.path}: proving key file is truncated")
        return start

    def u64(self) -> int:
        return int(struct.unpack_from("<Q", self.data, self.take(8))[0])

    def points(self, count: int, limbs: int) -> np.ndarray:
        start = self.take(count * limbs * 8)
        arr = np.frombuffer(self.data, dtype="<u8", count=count * limbs, offset=start).reshape(count, limbs).copy()
        infinity = (arr[:, -1] & _INFINITY_BIT) != 0
        arr[:, -1] &= ~_FLAG_BITS
        arr[infinity] = 0
        return arr

    def vector(self, limbs: int) -> np.ndarray:
        return self.points(self.u64(), limbs)


def read_proving_key(path: Path) -> ProvingKeyFile:
    """Parse groth16py's `pk.bin`; ConfigError if it is not one."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ConfigError(f"{path}: not a groth16py proving key")
    rd = _Reader(data, Path(path))
    rd.take(len(MAGIC))
    alpha_g1 = rd.points(1, 8)[0]
    beta_g2 = rd.points(1, 16)[0]
    rd.points(1, 16)  # gamma_g2: the verifier's
    delta_g2 = rd.points(1, 16)[0]
    rd.vector(8)  # gamma_abc_g1: the verifier's
    beta_g1, delta_g1 = rd.points(1, 8)[0], rd.points(1, 8)[0]
    a_query, b_g1_query, b_g2_query = rd.vector(8), rd.vector(8), rd.vector(16)
    h_query, l_query = rd.vector(8), rd.vector(8)
    if data[rd.take(1)] == 1:  # the circuit's .wasm, for groth16py's own witness generation
        rd.take(rd.u64())
    form = data[rd.take(1)]
    if form not in (0, 1):
        raise ConfigError(f"{path}: unknown constraint form {form} in the proving key")
    if form == 0:  # groth16py's own setup: the circuit's R1CS
        n_wires, n_public, n_constraints = rd.u64(), rd.u64(), rd.u64()
        a_rows, b_rows = _read_r1cs(rd, n_constraints)
    else:  # imported from a .zkey: arkworks' constraint matrices (A and B; C is left empty)
        n_public, _, n_constraints = rd.u64() - 1, rd.u64(), rd.u64()
        n_wires = len(a_query)
        a_rows, b_rows = _read_matrix(rd, n_constraints), _read_matrix(rd, n_constraints)
        _read_matrix(rd, None)
    if rd.pos != len(data):
        raise ConfigError(f"{path}: {len(data) - rd.pos} unexpected bytes after the constraints")
    if len(a_query) != n_wires or len(l_query) != n_wires - n_public - 1:
        raise ConfigError(f"{path}: query lengths do not match {n_wires} wires")
    return ProvingKeyFile(
        alpha_g1, beta_g1, delta_g1, beta_g2, delta_g2, a_query, b_g1_query, b_g2_query, h_query, l_query,
        n_wires, n_public, n_constraints, a_rows, b_rows,
    )  # fmt: skip


_R1CS_TERM = (0, 8)  # a term is (u64 wire, 32-byte coefficient) in groth16py's R1CS form
_MATRIX_TERM = (32, 0)  # and (32-byte coefficient, u64 wire) in arkworks' matrices


def _read_r1cs(rd: _Reader, n_constraints: int) -> tuple[CSR, CSR]:
    """The A and B rows of groth16py's R1CS form: per constraint the A, B and C rows, each a u64 count and
    its terms. C is not needed: on a satisfying witness C·w = A·w ∘ B·w."""
    rows: list[tuple[list[int], list[int]]] = [([], []), ([], [])]
    with _truncation_is_an_error(rd):
        for _ in range(n_constraints):
            for m in range(3):
                nnz = struct.unpack_from("<Q", rd.data, rd.pos)[0]
                if m < 2:
                    rows[m][0].append(rd.pos + 8)
                    rows[m][1].append(nnz)
                rd.take(8 + 40 * nnz)
    return _csr(rd.data, *rows[0], _R1CS_TERM), _csr(rd.data, *rows[1], _R1CS_TERM)


def _read_matrix(rd: _Reader, n_rows: int | None) -> CSR:
    """One of arkworks' matrices: a u64 row count (n_rows, when given, must match), then per row a u64 count and
    its terms."""
    starts: list[int] = []
    counts: list[int] = []
    count = rd.u64()
    if n_rows is not None and count != n_rows:
        raise ConfigError(f"{rd.path}: a constraint matrix has {count} rows, the key {n_rows} constraints")
    with _truncation_is_an_error(rd):
        for _ in range(count):
            nnz = rd.u64()
            starts.append(rd.pos)
            counts.append(nnz)
            rd.take(40 * nnz)
    return _csr(rd.data, starts, counts, _MATRIX_TERM)


@contextlib.contextmanager
def _truncation_is_an_error(rd: _Reader) -> Iterator[None]:
    try:
        yield
    except struct.error:
        raise ConfigError(f"{rd.path}: proving key file is truncated") from None


def _csr(data: bytes, starts: list[int], counts: list[int], layout: tuple[int, int]) -> CSR:
    """Rows of 40-byte terms at `starts` as CSR arrays; `layout` gives the wire's and the coefficient's offsets."""
    wire_at, coeff_at = layout
    cnt = np.asarray(counts, dtype=np.int64)
    row_ptr = np.zeros(len(cnt) + 1, dtype=np.uint32)
    np.cumsum(cnt, out=row_ptr[1:])
    term_starts = np.repeat(np.asarray(starts, dtype=np.int64), cnt) + 40 * (
        np.arange(int(row_ptr[-1]), dtype=np.int64) - np.repeat(row_ptr[:-1].astype(np.int64), cnt)
    )
    raw = np.frombuffer(data, dtype=np.uint8)
    cols = raw[term_starts[:, None] + wire_at + np.arange(8)].copy().view("<u8").ravel().astype(np.uint32)
    coeffs = raw[term_starts[:, None] + coeff_at + np.arange(32)].copy().view("<u8").reshape(-1, 4)
    return row_ptr, cols, np.ascontiguousarray(coeffs)


# -- the native library ----------------------------------------------------------------------------

_LIB: ctypes.CDLL | None = None
_LIB_LOCK = threading.Lock()


def library() -> ctypes.CDLL:
    """Build (once per machine, under a file lock) and load `native/g16.cpp`; ConfigError without g++."""
    global _LIB
    with _LIB_LOCK:
        if _LIB is None:
            from fedledger.zk.backend import cache_root
            from fedledger.zk.native.build import build

            out = cache_root() / "native"
            out.mkdir(parents=True, exist_ok=True)
            with open(out / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    so = build(out)
                except RuntimeError as e:
                    raise ConfigError(f"native Groth16 prover unavailable: {e}") from None
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            _LIB = _declare(ctypes.CDLL(str(so)))
        return _LIB


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, sz, u64p, u32p = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p
    for name in ("g16_g1_bases", "g16_g2_bases"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [u64p, sz], vp
    lib.g16_free_bases.argtypes, lib.g16_free_bases.restype = [vp], None
    for name in ("g16_msm_g1", "g16_msm_g2"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [vp, u64p, sz, sz, u64p], None
    lib.g16_sparse_matvec.argtypes, lib.g16_sparse_matvec.restype = [u32p, u32p, u64p, sz, u64p, u64p], None
    for name in ("g16_circom_h", "g16_libsnark_h"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [u64p, u64p, sz, u64p], None
    return lib


def _ptr(arr: np.ndarray) -> int:
    assert arr.flags["C_CONTIGUOUS"]
    return int(arr.ctypes.data)


def to_limbs(values: Sequence[int]) -> np.ndarray:
    """Field elements (ints in [0, P)) as (n, 4) little-endian u64 limbs."""
    return np.frombuffer(b"".join(int(v).to_bytes(32, "little") for v in values), dtype="<u8").reshape(-1, 4).copy()


def from_limbs(arr: np.ndarray) -> list[int]:
    return [int.from_bytes(row.tobytes(), "little") for row in np.asarray(arr, dtype="<u8").reshape(-1, 4)]


class _Bases:
    """Points converted once to the native library's form; freed with the prover."""

    def __init__(self, lib: ctypes.CDLL, points: np.ndarray):
        self.lib, self.limbs, self.count = lib, points.shape[1], len(points)
        pts = np.ascontiguousarray(points, dtype="<u8")
        make = lib.g16_g1_bases if self.limbs == 8 else lib.g16_g2_bases
        self.handle = make(_ptr(pts), len(pts)) if len(pts) else None

    def msm(self, scalars: np.ndarray, offset: int = 0) -> np.ndarray:
        out = np.zeros(self.limbs, dtype="<u8")
        n = len(scalars)
        if n == 0 or self.handle is None:
            return out
        if offset + n > self.count:
            raise ConfigError(f"multi-scalar multiplication over {n} scalars but {self.count - offset} points")
        sc = np.ascontiguousarray(scalars, dtype="<u8")
        msm = self.lib.g16_msm_g1 if self.limbs == 8 else self.lib.g16_msm_g2
        msm(self.handle, _ptr(sc), offset, n, _ptr(out))
        return out

    def free(self) -> None:
        if self.handle is not None:
            self.lib.g16_free_bases(self.handle)
            self.handle = None


def _combine(lib: ctypes.CDLL, points: list[np.ndarray], scalars: list[int]) -> np.ndarray:
    """Σ scalars_i · points_i for a handful of points (the proof's final assembly)."""
    bases = _Bases(lib, np.stack(points))
    try:
        return bases.msm(to_limbs([s % P for s in scalars]))
    finally:
        bases.free()


class NativeGroth16:
    """One circuit's proving key held by the native library; `prove` is thread-safe and releases the GIL."""

    def __init__(self, key: ProvingKeyFile):
        self.key = key
        self.lib = library()
        self._a = _Bases(self.lib, key.a_query)
        self._b1 = _Bases(self.lib, key.b_g1_query)
        self._b2 = _Bases(self.lib, key.b_g2_query)
        self._h = _Bases(self.lib, key.h_query)
        self._l = _Bases(self.lib, key.l_query)

    @classmethod
    def load(cls, pk_path: Path) -> NativeGroth16:
        return cls(read_proving_key(pk_path))

    def close(self) -> None:
        for b in (self._a, self._b1, self._b2, self._h, self._l):
            b.free()

    def _matvec(self, rows: CSR, w: np.ndarray, out: np.ndarray) -> None:
        row_ptr, cols, coeffs = rows
        self.lib.g16_sparse_matvec(_ptr(row_ptr), _ptr(cols), _ptr(coeffs), len(row_ptr) - 1, _ptr(w), _ptr(out))

    def h_coefficients(self, w: np.ndarray) -> np.ndarray:
        """The quotient's scalars for the h query: A·w and B·w over the domain (the public inputs' rows
        after the constraints), then arkworks' witness map for the key's reduction."""
        k = self.key
        n = k.domain_size
        a = np.zeros((n, 4), dtype="<u8")
        b = np.zeros((n, 4), dtype="<u8")
        self._matvec(k.a_rows, w, a)
        self._matvec(k.b_rows, w, b)
        a[k.n_constraints : k.n_constraints + k.n_public + 1] = w[: k.n_public + 1]
        h = np.zeros((n, 4), dtype="<u8")
        reduce = self.lib.g16_circom_h if k.circom_reduction else self.lib.g16_libsnark_h
        reduce(_ptr(a), _ptr(b), n, _ptr(h))
        return h[: len(k.h_query)]

    def prove(self, wires: Sequence[int], *, r: int | None = None, s: int | None = None) -> bytes:
        """A 256-byte proof for the full wire assignment (wire 0 is 1). r, s default to the OS CSPRNG;
        a proof is zero-knowledge only with fresh uniform r and s, so pass them only to test."""
        k = self.key
        if len(wires) != k.n_wires or wires[0] != 1:
            raise ConfigError(f"a witness of {k.n_wires} wires starting with 1 expected, got {len(wires)}")
        if min(wires) < 0 or max(wires) >= P:
            raise ConfigError("a witness holds field elements in [0, P) only")
        r = secrets.randbelow(P) if r is None else r
        s = secrets.randbelow(P) if s is None else s
        w = to_limbs(wires)
        h = self.h_coefficients(w)
        a_acc = self._a.msm(w)
        b1_acc = self._b1.msm(w)
        b2_acc = self._b2.msm(w)
        c_acc = _combine(self.lib, [self._l.msm(w[k.n_public + 1 :]), self._h.msm(h)], [1, 1])
        pi_a = _combine(self.lib, [a_acc, k.alpha_g1, k.delta_g1], [1, 1, r])
        pi_b1 = _combine(self.lib, [b1_acc, k.beta_g1, k.delta_g1], [1, 1, s])
        pi_b2 = _combine(self.lib, [b2_acc, k.beta_g2, k.delta_g2], [1, 1, s])
        pi_c = _combine(self.lib, [c_acc, pi_a, pi_b1, k.delta_g1], [1, s, r, -r * s])
        return _ethereum_layout(pi_a, pi_b2, pi_c)


def _ethereum_layout(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bytes:
    """A.x A.y | B.x.c1 B.x.c0 B.y.c1 B.y.c0 | C.x C.y as 32-byte big-endian words."""
    coords = from_limbs(a) + [from_limbs(b)[i] for i in (1, 0, 3, 2)] + from_limbs(c)
    return b"".join(v.to_bytes(32, "big") for v in coords)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fedledger.zk.native_groth16 build`: build the native library now (make setup does)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["build"]:
        print("usage: python -m fedledger.zk.native_groth16 build", file=sys.stderr)
        return 2
    try:
        lib = library()
    except ConfigError as e:
        print(f"note: {e}; proofs fall back to groth16py's prover", file=sys.stderr)
        return 0
    print(f"native Groth16 prover: {lib._name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
