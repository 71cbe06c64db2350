"""`make bench`: run every benchmark module and write its figures as JSON under bench/results/.

Each module bench/bench_<area>.py exposes `run(quick: bool = False) -> dict`. `--only AREA` runs one;
`--quick` uses small sizes (a smoke run, not the figures quoted in the README).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

AREAS = ["learning", "data", "privacy", "secagg", "zk", "ledger", "protocol", "economics", "testnet"]
RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, object]:
    import os

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=AREAS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for area in args.only or AREAS:
        try:
            module = importlib.import_module(f"bench.bench_{area}")
        except ModuleNotFoundError as e:
            if e.name == f"bench.bench_{area}":
                print(f"[{area}] no benchmark module yet, skipped", flush=True)
                continue
            raise
        print(f"[{area}] running ...", flush=True)
        start = time.perf_counter()
        try:
            figures = module.run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(area)
            continue
        payload = {"area": area, "quick": args.quick, "machine": machine(),
                   "seconds": round(time.perf_counter() - start, 2), "figures": figures}
        path = RESULTS / f"{area}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(payload, indent=2))
        print(f"[{area}] {path} ({payload['seconds']} s)", flush=True)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
