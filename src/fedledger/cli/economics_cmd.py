"""`fedledger economics --rounds R --members N --out DIR`: does honest, useful work pay? (docs/incentives.md)

    fedledger economics --out runs/econ                      # 60 rounds, 20 trainers, 20% adversarial
    fedledger economics --rounds 30 --members 12 --out runs/econ-small

Runs many rounds of real federated training (digits, logistic regression) with honest members of graded
data quality, free riders, poisoners, lazy and dishonest validators and a malicious aggregator; scores
members only from what secure aggregation releases (group sums), pays by score, updates reputation, and
writes DIR/economics.json and DIR/economics.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "economics",
        help="simulate rewards and reputation with honest and adversarial members; write DIR/economics.json",
        description="Many rounds of real federated training (digits / logreg) with honest members of different "
                    "data quality, free riders, poisoners, lazy and dishonest validators and a malicious "
                    "aggregator, scored under secure aggregation from group sums only (docs/incentives.md). "
                    "Writes DIR/economics.json (reputation-quality correlation, honest share of rewards, net "
                    "tokens per kind, flag precision and recall) and DIR/economics.png.",
    )
    p.add_argument("--rounds", type=int, default=60, help="rounds to run")
    p.add_argument("--members", type=int, default=20, help="trainers")
    p.add_argument("--validators", type=int, default=10, help="validators (all on the committee every round)")
    p.add_argument("--aggregators", type=int, default=5, help="aggregators (one drawn per round)")
    p.add_argument("--adversarial", type=float, default=0.2,
                   help="share of each role that is adversarial (trainers: half free riders, half poisoners)")
    p.add_argument("--seed", type=int, default=0, help="fixes every choice of the simulation")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no per-round lines or summary")
    p.set_defaults(func=cmd_economics)


def cmd_economics(args: argparse.Namespace) -> int:
    from fedledger.cli.main import check_out_dir
    from fedledger.sim.economics import EconomicsConfig, run_economics, summary_lines, write_economics

    cfg = EconomicsConfig(rounds=args.rounds, members=args.members, validators=args.validators,
                          aggregators=args.aggregators, adversarial=args.adversarial, seed=args.seed)
    check_out_dir(args.out)

    def progress(r: int, record: dict) -> None:
        if not args.quiet:
            print(f"round {r + 1:>4}/{cfg.rounds}  accuracy {record['accuracy']:.3f}  groups {record['groups']}"
                  + (f"  faulty {','.join(record['faulty'])}" if record["faulty"] else ""), flush=True)

    result = run_economics(cfg, on_round=progress)
    path, plot = write_economics(args.out, result)
    if not args.quiet:
        print("\n".join(summary_lines(result)))
        print(f"results: {path}   plot: {plot}")
    return 0
