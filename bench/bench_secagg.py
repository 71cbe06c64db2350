"""SecAgg+ benchmarks (issue 5): Shamir split/combine and mask expansion beside Flower 1.42's
primitives measured in the same run, and whole rounds (client and server time) at n = 100 and
1,000 members with d = 10^5 and 10% / 38% dropout.

Flower is optional (`pip install flwr==1.42.0`, a bench-only extra). Importing `flwr` pulls its
whole runtime (protobuf, grpc), so only the two primitive modules are loaded, from their files,
inside `_flower()`; without flwr the Flower figures are reported as skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.secagg import Kind, SecAggParams, run_round, shamir, simulated_identities
from fedledger.secagg.entropy import CryptoRng
from fedledger.secagg.prg import expand_mask


def _time(fn: Callable[..., object], repeat: int, *args: object) -> float:
    """Median seconds of `repeat` calls fn(*args) (after one warm-up)."""
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _flower() -> dict[str, types.ModuleType] | None:
    """Flower's shamir and secaggplus_utils modules, loaded without importing the flwr runtime."""
    spec = importlib.util.find_spec("flwr")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "common" / "secure_aggregation"
    saved = {k: sys.modules.get(k) for k in ("flwr", "flwr.common")}
    stub_root, stub_common = types.ModuleType("flwr"), types.ModuleType("flwr.common")
    stub_common.NDArrayInt = np.ndarray  # type: ignore[attr-defined]  # the only name the utils need
    sys.modules["flwr"], sys.modules["flwr.common"] = stub_root, stub_common
    try:
        out = {}
        for name, rel in (("shamir", "crypto/shamir.py"), ("utils", "secaggplus_utils.py")):
            s = importlib.util.spec_from_file_location(f"_flwr_bench_{name}", root / rel)
            assert s is not None and s.loader is not None
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)
            out[name] = mod
        return out
    except Exception as e:  # missing pycryptodome, moved files: report, don't fail the bench
        print(f"[secagg] Flower primitives unavailable: {e}", file=sys.stderr)
        return None
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def shamir_figures(flwr: dict[str, types.ModuleType] | None, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = CryptoRng(os.urandom(32))
    secret = os.urandom(32)
    for k in (7, 101):
        t = k // 2 + 1
        xs = list(range(1, k + 1))
        shares = shamir.split(secret, xs, t, rng)
        ours_split = _time(shamir.split, 5 if quick else 20, secret, xs, t, rng)
        ours_combine = _time(shamir.combine, 5 if quick else 20, xs[:t], shares[:t])
        # the server's real workload: many secrets per call (one per member of the round)
        batch = 1000
        secrets = np.frombuffer(os.urandom(32 * batch), dtype=np.uint8).reshape(batch, 32)
        bx = np.tile(np.arange(1, k + 1), (batch, 1))
        bsh = shamir.split_many(secrets, bx, t, rng)
        ours_batched = _time(shamir.combine_many, 3, bx[:, :t], bsh[:, :t]) / batch
        row: dict[str, Any] = {"threshold": t, "ours_split_s": ours_split, "ours_combine_s": ours_combine,
                               "ours_combine_batched_per_secret_s": ours_batched}
        if flwr is not None:
            fs = flwr["shamir"]
            fshares = fs.create_shares(secret, t, k)
            assert fs.combine_shares(fshares[:t]) == secret
            row["flower_split_s"] = _time(fs.create_shares, 3 if quick else 10, secret, t, k)
            row["flower_combine_s"] = _time(fs.combine_shares, 3 if quick else 10, fshares[:t])
            row["combine_speedup"] = row["flower_combine_s"] / ours_combine
            row["combine_speedup_batched"] = row["flower_combine_s"] / ours_batched
            row["split_speedup"] = row["flower_split_s"] / ours_split
        out[f"shares_{k}"] = row
    return out


def mask_figures(flwr: dict[str, types.ModuleType] | None, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seed = os.urandom(32)
    for d in (10**5, 10**6):
        row: dict[str, Any] = {}
        for bits in (16, 32):
            row[f"ours_{bits}bit_s"] = _time(expand_mask, 3 if quick else 10, seed, d, bits)
        if flwr is not None:
            pg = flwr["utils"].pseudo_rand_gen
            row["flower_s"] = _time(pg, 3 if quick else 10, seed, 1 << 32, [(d,)])
            row["speedup_32bit"] = row["flower_s"] / row["ours_32bit_s"]
        out[f"d_{d}"] = row
    if flwr is not None:
        # Flower folds the 256-bit seed into 32 bits by XOR of its words: distinct seeds collide
        pg = flwr["utils"].pseudo_rand_gen
        a = bytes(32)
        b = (1).to_bytes(4, "little") * 2 + bytes(24)  # words 1 ^ 1 = 0, same folded seed as `a`
        same_flower = bool(np.array_equal(pg(a, 1 << 16, [(1000,)])[0], pg(b, 1 << 16, [(1000,)])[0]))
        same_ours = bool(np.array_equal(expand_mask(a, 1000, 16), expand_mask(b, 1000, 16)))
        top = int(max(pg(os.urandom(32), 256, [(200_000,)])[0]))
        out["seed_folding"] = {"flower_distinct_seeds_give_identical_masks": same_flower,
                               "ours_distinct_seeds_give_identical_masks": same_ours,
                               "flower_largest_mask_value_for_range_256": top}
    return out


def round_figures(quick: bool) -> dict[str, Any]:
    cases = [(100, 10**5, 0.10), (100, 10**5, 0.38), (1000, 10**5, 0.10), (1000, 10**4, 0.38)]
    if quick:
        cases = [(100, 10**4, 0.10), (100, 10**4, 0.38), (300, 10**4, 0.10)]
    out: dict[str, Any] = {}
    for n, d, drop in cases:
        params = SecAggParams.for_cohort(n, d, 16, dropout=drop)
        members = list(range(n))
        ids, pki = simulated_identities(members, 0)
        rng = np.random.default_rng(n)
        x = rng.integers(0, 1 << 16, (n, d), dtype=np.uint64).astype(np.uint32)
        dropped = rng.choice(n, size=round(drop * n), replace=False)
        drops = {int(m): Kind.MASKED_INPUT for m in dropped}  # the costly case: pairwise masks to remove
        t0 = time.perf_counter()
        res = run_round(x, members, ids, pki, params, b"B" * 32, 0, drops, os.urandom)
        wall = time.perf_counter() - t0
        keep = [m for m in members if m not in drops]
        exact = bool(np.array_equal(res.total, (x[keep].astype(np.uint64).sum(0) % (1 << 16)).astype(np.uint32)))
        live = [m for m in keep]
        out[f"n{n}_d{d}_drop{int(drop * 100)}"] = {
            "n": n, "d": d, "dropout": drop, "degree": params.degree, "threshold": params.threshold,
            "bits": 16, "exact": exact,
            "server_s": res.server_seconds,
            "client_s_mean": statistics.mean(res.client_seconds[m] for m in live),
            "client_s_max": max(res.client_seconds[m] for m in live),
            "bytes_up_per_member": statistics.mean(res.bytes_up[m] for m in live),
            "bytes_down_per_member": statistics.mean(res.bytes_down[m] for m in live),
            "input_bytes": d * 2,
            "wall_s": wall,
        }
    return out


def run(quick: bool = False) -> dict[str, Any]:
    flwr = _flower()
    figures: dict[str, Any] = {"flower": "flwr 1.42.0 primitives" if flwr else "skipped: flwr not installed"}
    figures["shamir"] = shamir_figures(flwr, quick)
    figures["mask_expansion"] = mask_figures(flwr, quick)
    figures["rounds"] = round_figures(quick)
    r = figures["rounds"]
    a, b = ("n100_d100000_drop10", "n1000_d100000_drop10") if not quick else ("n100_d10000_drop10",
                                                                          "n300_d10000_drop10")
    if a in r and b in r:
        figures["server_scaling"] = {
            "members_ratio": r[b]["n"] / r[a]["n"],
            "server_time_ratio": r[b]["server_s"] / r[a]["server_s"],
            "degree_ratio": r[b]["degree"] / r[a]["degree"],
        }
    return figures


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(json.dumps(run(quick=quick), indent=2))
