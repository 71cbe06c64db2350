"""Run the Flower example in one process (no Ray), then audit and report it with fedledger.

    python examples/flower/run.py --out runs/flower --nodes 4 --rounds 3
    fedledger audit runs/flower && fedledger report runs/flower
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the apps import task.py as Flower apps do

from client_app import app as client_app
from server_app import app as server_app

from fedledger.flower import run_local


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/flower")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fraction-train", type=float, default=1.0)
    p.add_argument("--chain", default="auto", help="auto (a managed anvil node, auditable later) or memory")
    a = p.parse_args(argv)
    run_local(server_app, client_app, a.nodes, run_config={
        "out": a.out, "num-rounds": a.rounds, "fraction-train": a.fraction_train, "chain": a.chain, "lr": 0.1})
    print(f"{a.out}/results.json")


if __name__ == "__main__":
    main()
