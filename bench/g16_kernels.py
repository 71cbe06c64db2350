"""Timing of the native Groth16 kernels (libfedg16.so from fedledger/zk/native/g16.cpp), single-threaded.

    python -m bench.g16_kernels [--n 65536] [--reps 5]      # prints JSON

Cases: G1 MSM of n full (uniform < r) scalars; G1 MSM of n witness-like scalars (60% bits 0/1, 20% below
2^34, 20% full); G2 MSM of n witness-like scalars; circom_h (CircomReduction, 6 NTTs) at domain size n.
Figures are the median of --reps wall-clock seconds of the bare C call (ctypes), inputs prepared before.
Bases are distinct points P_i = a.G + i.d.G, built by affine additions in Python (not timed). For scale:
groth16py 0.2.0 (arkworks, one thread) proves a whole 61k-constraint circuit on a 2^16 domain in about 1.7 s
of CPU (4 G1 MSMs, 1 G2 MSM, 7 NTTs). Skips (prints a note, exits 0) while /tmp/b40/QUIET exists.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from py_ecc import optimized_bn128 as bn

from fedledger.zk.native.build import build

Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
MASK = (1 << 64) - 1
ROOT = Path(__file__).resolve().parents[1]


def _u64s(values: list[int]) -> ctypes.Array:
    return (ctypes.c_uint64 * (4 * len(values)))(*[(v >> (64 * k)) & MASK for v in values for k in range(4)])


# --- affine chains, so the bench does not pay one scalar multiplication per base


def _g1_chain(n: int, rnd: random.Random) -> list[int]:
    p = bn.normalize(bn.multiply(bn.G1, rnd.randrange(1, R)))
    d = bn.normalize(bn.multiply(bn.G1, rnd.randrange(1, R)))
    x, y = int(p[0]), int(p[1])
    dx, dy = int(d[0]), int(d[1])
    out: list[int] = []
    for _ in range(n):
        out += [x, y]
        lam = (dy - y) * pow(dx - x, Q - 2, Q) % Q
        x3 = (lam * lam - x - dx) % Q
        x, y = x3, (lam * (x - x3) - y) % Q
    return out


def _f2mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return ((a[0] * b[0] - a[1] * b[1]) % Q, (a[0] * b[1] + a[1] * b[0]) % Q)


def _f2sub(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return ((a[0] - b[0]) % Q, (a[1] - b[1]) % Q)


def _f2inv(a: tuple[int, int]) -> tuple[int, int]:
    ni = pow(a[0] * a[0] + a[1] * a[1], Q - 2, Q)
    return (a[0] * ni % Q, -a[1] * ni % Q)


def _g2_chain(n: int, rnd: random.Random) -> list[int]:
    def aff(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
        px, py = bn.normalize(bn.multiply(bn.G2, k))
        return (int(px.coeffs[0]), int(px.coeffs[1])), (int(py.coeffs[0]), int(py.coeffs[1]))

    (x, y), (dx, dy) = aff(rnd.randrange(1, R)), aff(rnd.randrange(1, R))
    out: list[int] = []
    for _ in range(n):
        out += [*x, *y]
        lam = _f2mul(_f2sub(dy, y), _f2inv(_f2sub(dx, x)))
        x3 = _f2sub(_f2sub(_f2mul(lam, lam), x), dx)
        x, y = x3, _f2sub(_f2mul(lam, _f2sub(x, x3)), y)
    return out


def _witness_like(n: int, rnd: random.Random) -> list[int]:
    out = []
    for _ in range(n):
        u = rnd.random()
        if u < 0.6:
            out.append(rnd.randrange(2))
        elif u < 0.8:
            out.append(rnd.randrange(1 << 34))
        else:
            out.append(rnd.randrange(R))
    return out


def _median(fn: Callable[[], None], reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [round(t, 4) for t in times]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65_536)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    if os.path.exists("/tmp/b40/QUIET"):
        print(json.dumps({"skipped": "/tmp/b40/QUIET exists"}))
        return 0
    cache = Path(os.environ.get("FEDLEDGER_CACHE") or ROOT / ".cache" / "fedledger") / "native"
    lib = ctypes.CDLL(str(build(cache)))
    vp, u64p, sz = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t
    for name in ("g16_g1_bases", "g16_g2_bases"):
        getattr(lib, name).restype = vp
        getattr(lib, name).argtypes = [u64p, sz]
    lib.g16_free_bases.argtypes = [vp]
    lib.g16_msm_g1.argtypes = [vp, u64p, sz, sz, u64p]
    lib.g16_msm_g2.argtypes = [vp, u64p, sz, sz, u64p]
    lib.g16_circom_h.argtypes = [u64p, u64p, sz, u64p]

    n, rnd = args.n, random.Random(20261207)
    t0 = time.perf_counter()
    g1 = lib.g16_g1_bases(_u64s(_g1_chain(n, rnd)), n)
    g2 = lib.g16_g2_bases(_u64s(_g2_chain(n, rnd)), n)
    setup = time.perf_counter() - t0
    full = _u64s([rnd.randrange(R) for _ in range(n)])
    mixed = _u64s(_witness_like(n, rnd))
    a = _u64s([rnd.randrange(R) for _ in range(n)])
    b = _u64s([rnd.randrange(R) for _ in range(n)])
    out16 = (ctypes.c_uint64 * 16)()
    h = (ctypes.c_uint64 * (4 * n))()
    cases = {
        "msm_g1_full": lambda: lib.g16_msm_g1(g1, full, 0, n, out16),
        "msm_g1_witness_mix": lambda: lib.g16_msm_g1(g1, mixed, 0, n, out16),
        "msm_g2_witness_mix": lambda: lib.g16_msm_g2(g2, mixed, 0, n, out16),
        "msm_g2_full": lambda: lib.g16_msm_g2(g2, full, 0, n, out16),
        "circom_h": lambda: lib.g16_circom_h(a, b, n, h),
    }
    result: dict[str, object] = {
        "n": n,
        "reps": args.reps,
        "unit": "seconds, median",
        "machine": platform.machine(),
        "loadavg_before": os.getloadavg()[0],
        "base_setup_s": round(setup, 2),
    }
    for name, fn in cases.items():
        med, times = _median(fn, args.reps)
        result[name] = round(med, 4)
        result[name + "_all"] = times
    result["loadavg_after"] = os.getloadavg()[0]
    lib.g16_free_bases(g1)
    lib.g16_free_bases(g2)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
