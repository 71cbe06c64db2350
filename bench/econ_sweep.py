"""Economics targets over several seeds (issue 14): `fedledger economics` at its defaults, one run per seed.

    PYTHONPATH=src python bench/econ_sweep.py                       # seeds 0-7
    PYTHONPATH=src python bench/econ_sweep.py --seeds 100-107       # held-out seeds
    PYTHONPATH=src python bench/econ_sweep.py --set rounds=100      # an EconomicsConfig override

Per seed: Spearman (final reputation and final estimate against true quality), honest share of rewards, whether
every free rider and every poisoner ends below its stake, flag precision and recall. Then the mean and minimum
over the seeds, the number of seeds where the free riders all end below stake, and wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
from scipy.stats import spearmanr

from fedledger.sim.economics import EconomicsConfig, run_economics


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def sweep(seeds: list[int], overrides: dict) -> dict:
    rows = []
    wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    for seed in seeds:
        r = run_economics(EconomicsConfig(seed=seed, **overrides))
        trainers = [m for m in r["members"] if m["role"] == "trainer"]
        q = np.array([m["quality"] for m in trainers])
        est = np.array([m["estimate"] for m in trainers])
        row = {"seed": seed, "spearman": r["reputation_quality_spearman"],
               "spearman_estimate": float(spearmanr(est, q).statistic),
               "honest_share": r["honest_reward_share"],
               "free_riders_below": r["net_by_kind"]["free_rider"]["all_below_stake"],
               "poisoners_below": r["net_by_kind"]["poisoner"]["all_below_stake"],
               "precision": r["flag_precision"], "recall": r["flag_recall"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    a = {k: np.array([row[k] for row in rows], dtype=float)
         for k in ("spearman", "spearman_estimate", "honest_share", "precision", "recall")}
    summary = {
        "seeds": seeds, "overrides": overrides,
        "spearman_mean": a["spearman"].mean(), "spearman_min": a["spearman"].min(),
        "spearman_seeds_at_0.95": int((a["spearman"] >= 0.95).sum()),
        "spearman_estimate_mean": a["spearman_estimate"].mean(),
        "honest_share_min": a["honest_share"].min(),
        "precision_mean": a["precision"].mean(), "precision_min": a["precision"].min(),
        "recall_mean": a["recall"].mean(), "recall_min": a["recall"].min(),
        "free_riders_below_seeds": sum(row["free_riders_below"] for row in rows),
        "poisoners_below_seeds": sum(row["poisoners_below"] for row in rows),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu,
    }
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 100-107 or 1,5,9")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override an EconomicsConfig field (value parsed as JSON)")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    print(json.dumps(sweep(seeds_of(args.seeds), overrides)["summary"], indent=1))
